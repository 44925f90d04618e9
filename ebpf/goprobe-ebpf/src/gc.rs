//! GC and stop-the-world probes.
//!
//! NB: every stop-the-world, GC or not, ends in `runtime.startTheWorldWithSema`, which runs on
//! the system stack (g0) of the thread that stopped the world (src/runtime/proc.go, Go 1.21–1.27).
//! Per-STW state is therefore keyed by thread id between its entry probe and its RET probes.
//! No uretprobes: RET instructions are probed instead (see goprobe/src/analysis/binary/disasm.rs).

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user_buf},
    macros::{map, uprobe},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::ProbeContext,
};
use goprobe_common::{
    GoroutineKey, MAX_PENDING_STW, MAX_PENDING_TRIGGERS, STW_FLAG_NOW_FROM_TMARK,
    STW_FLAG_READ_FAILED, STW_FLAG_START_SEEN, STW_FLAG_STOP_SEEN, STW_REASON_IN_TEXT,
    STW_REASON_TEXT_LEN, STW_RING_BYTES, StwEvent, TRIGGER_UNKNOWN, TargetConfig, counter, stw_abi,
    stw_exit,
};

use crate::{
    goabi::{ReadError, current_g, int_reg, read_user},
    maps::{STW_PENDING, TARGETS, bump},
    pidns::ids,
};

/// `gcTrigger.kind` of the last `gcStart` call of each goroutine, consumed by the sweep-termination
/// STW it leads to. LRU: `gcStart` often returns early without stopping the world.
#[map]
static GC_TRIGGERS: LruHashMap<GoroutineKey, u8> =
    LruHashMap::with_max_entries(MAX_PENDING_TRIGGERS, 0);

/// One per-CPU slot to build an `StwEvent` in (see `try_stw_start_entry`).
#[map]
static STW_SCRATCH: PerCpuArray<StwEvent> = PerCpuArray::with_max_entries(1, 0);

/// The `startedStopping` of the last STW each thread sent at `startTheWorldWithSema` entry
/// ([`stw_exit::CALLERS`]), so that a duplicate uprobe on the site does not send it twice. LRU:
/// threads come and go.
#[map]
static STW_SENT: LruHashMap<u32, i64> = LruHashMap::with_max_entries(MAX_PENDING_STW, 0);

/// Finished STWs for user space.
#[map]
static STW_EVENTS: RingBuf = RingBuf::with_byte_size(STW_RING_BYTES, 0);

/// NB: `stwReason` values, identical in Go 1.21–1.27 (src/runtime/proc.go `stwGCMarkTerm`,
/// `stwGCSweepTerm`); Go 1.19 events are given the same numbers.
const STW_GC_MARK_TERM: u8 = 1;
const STW_GC_SWEEP_TERM: u8 = 2;
/// NB: Go 1.19 src/runtime/mgc.go:851 `getg().m.preemptoff = "gcing"` before the mark
/// termination's `systemstack(stopTheWorldWithSema)`; every stopTheWorld(reason) caller passes
/// another, non-empty string (proc.go:1089), and gcStart stops the world with an empty one.
const GO119_MARK_TERM_TEXT: &[u8] = b"gcing";

/// Records that an STW's state could not be kept; the pause will be missing from the report.
#[inline(always)]
fn pending_full(ctx: &ProbeContext, tid: u32) {
    bump(counter::PENDING_FULL);
    aya_log_ebpf::warn!(
        ctx,
        "STW_PENDING full: dropped the stop-the-world of tid {}",
        tid
    );
}

/// Consumes the trigger recorded by `gcStart` for the goroutine on whose behalf this g0 runs.
#[inline(always)]
fn take_trigger(ctx: &ProbeContext, tgid: u32, cfg: &TargetConfig) -> u8 {
    let lookup = || -> Result<u8, ReadError> {
        // NB: on g0, R14 is g0 (asm_amd64.s `systemstack` sets R14); g0.m.curg is the
        // goroutine that called gcStart (src/runtime/mgc.go: gcStart keeps its M with acquirem).
        let g0 = current_g(ctx)?;
        let m: u64 = read_user(g0 + cfg.off_g_m as u64)?;
        let curg: u64 = read_user(m + cfg.off_m_curg as u64)?;
        let key = GoroutineKey {
            tgid,
            _pad0: 0,
            g: curg,
        };
        // SAFETY: the value is copied out before any other map operation.
        let kind = unsafe { GC_TRIGGERS.get(key) }.copied().ok_or(ReadError)?;
        let _ = GC_TRIGGERS.remove(key);
        Ok(kind)
    };
    lookup().unwrap_or(TRIGGER_UNKNOWN)
}

/// `runtime.gcStart(trigger gcTrigger)` entry: remember why a GC may be about to start.
#[uprobe]
pub fn gc_start_entry(ctx: ProbeContext) -> u32 {
    match try_gc_start_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_gc_start_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    let (tgid, _) = ids();
    // NB: gcTrigger{kind int; now int64; n uint32} is split into RAX, RBX, RCX (Go 1.21–1.27,
    // src/runtime/mgc.go). gcStart runs on the calling goroutine, R14 = that g.
    let kind = int_reg(ctx, 0)?;
    crate::stacks::remember_gc_start(ctx, kind);
    let g = current_g(ctx)?;
    let key = GoroutineKey { tgid, _pad0: 0, g };
    GC_TRIGGERS
        .insert(key, kind as u8, 0)
        .map_err(|_| ReadError)
}

/// Go 1.19: the reason of the stop-the-world being entered, from `g0.m.preemptoff`.
///
/// NB: Go 1.19 `stopTheWorldWithSema()` has no argument (src/runtime/proc.go:1179). Its three
/// callers run it on g0 (R14) of the M whose `preemptoff` they set: `stopTheWorld(reason)` puts
/// the reason there (proc.go:1089), gcMarkDone `"gcing"` (mgc.go:851), and gcStart leaves it
/// empty (mgc.go:585 returns early unless it is; nothing sets it before mgc.go:665).
#[inline(always)]
fn go119_reason(
    ctx: &ProbeContext,
    cfg: &TargetConfig,
    ev: &mut StwEvent,
) -> Result<u8, ReadError> {
    let g0 = current_g(ctx)?;
    let m: u64 = read_user(g0 + cfg.off_g_m as u64)?;
    let text = m + cfg.off_m_preemptoff as u64;
    // NB: a Go string is {ptr *byte; len int} (src/runtime/string.go stringStruct).
    let ptr: u64 = read_user(text)?;
    let len: u64 = read_user(text + 8)?;
    if len == 0 {
        return Ok(STW_GC_SWEEP_TERM);
    }
    ev.reason_len = len as u32;
    // NB: the verifier needs a constant upper bound on the read size: `n` ≤ STW_REASON_TEXT_LEN.
    let n = if len < STW_REASON_TEXT_LEN as u64 {
        len as usize
    } else {
        STW_REASON_TEXT_LEN
    };
    let dst = ev.reason_text.get_mut(..n).ok_or(ReadError)?;
    // SAFETY: bpf_probe_read_user checks the address; a bad one yields an error, never a fault.
    unsafe { bpf_probe_read_user_buf(ptr as *const u8, dst) }.map_err(|_| ReadError)?;
    if len == GO119_MARK_TERM_TEXT.len() as u64
        && ev.reason_text[..GO119_MARK_TERM_TEXT.len()] == *GO119_MARK_TERM_TEXT
    {
        return Ok(STW_GC_MARK_TERM);
    }
    Ok(STW_REASON_IN_TEXT)
}

/// Go 1.19 and 1.21 `runtime.stopTheWorldWithSema` entry: the reason is only known here.
#[uprobe]
pub fn stw_stop_entry(ctx: ProbeContext) -> u32 {
    match try_stw_stop_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_stw_stop_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    let (tgid, tid) = ids();
    // SAFETY: copied out immediately.
    let cfg = unsafe { TARGETS.get(tgid) }.copied().ok_or(ReadError)?;
    let mut ev = StwEvent {
        tgid,
        tid,
        trigger: TRIGGER_UNKNOWN,
        flags: STW_FLAG_STOP_SEEN,
        stop_ktime: unsafe { bpf_ktime_get_ns() } as i64,
        ..StwEvent::default()
    };
    ev.reason = if cfg.stw_abi == stw_abi::GO119 {
        match go119_reason(ctx, &cfg, &mut ev) {
            Ok(reason) => reason,
            Err(ReadError) => {
                // Not known whether this is a GC pause: with no text (reason_len 0), user space
                // counts it as unreadable.
                ev.flags |= STW_FLAG_READ_FAILED;
                ev.reason_len = 0;
                STW_REASON_IN_TEXT
            }
        }
    } else {
        int_reg(ctx, 0)? as u8 // NB: AL = reason (Go 1.21 proc.go `stopTheWorldWithSema(reason)`)
    };
    match read_user::<i64>(cfg.work_addr + cfg.off_work_pause_ns as u64) {
        Ok(v) => ev.pause_ns_at_stop = v,
        Err(_) => ev.flags |= STW_FLAG_READ_FAILED,
    }
    if ev.reason == STW_GC_SWEEP_TERM {
        ev.trigger = take_trigger(ctx, tgid, &cfg);
    }
    // NB: by reference: a by-value insert copies the 208-byte event once more into this frame,
    // which with set_stw_caller's frames passed the verifier's 512-byte combined stack limit
    // ("combined stack size of 2 calls is 528", Linux 6.18, kernel/bpf/verifier.c
    // check_max_stack_depth) and failed every attach to Go 1.19 and 1.21.
    #[allow(clippy::needless_borrows_for_generic_args)] // the borrow is the point (NB above)
    let inserted = STW_PENDING.insert(tid, &ev, 0);
    if inserted.is_err() {
        pending_full(ctx, tid);
    }
    crate::stacks::set_stw_caller(ctx, &cfg, tid);
    Ok(())
}

/// `runtime.startTheWorldWithSema` entry (placed after the stack-bound check).
#[uprobe]
pub fn stw_start_entry(ctx: ProbeContext) -> u32 {
    match try_stw_start_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_stw_start_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    let (tgid, tid) = ids();
    // SAFETY: copied out immediately.
    let cfg = unsafe { TARGETS.get(tgid) }.copied().ok_or(ReadError)?;
    if !stw_abi::probes_stop(cfg.stw_abi) {
        // NB: the event is built in a per-CPU slot, not on the stack: a StwEvent is too big
        // for the BPF stack (512 bytes) next to the map insert's copy. The slot is this CPU's
        // until the program ends.
        let ev = STW_SCRATCH.get_ptr_mut(0).ok_or(ReadError)?;
        // SAFETY: per-CPU slot, no other user while this program runs on this CPU.
        let ev = unsafe { &mut *ev };
        // NB: Go 1.22+ `startTheWorldWithSema(now int64, w worldStop) int64`: RAX = now,
        // BL = w.reason, RCX = w.startedStopping (1.22 `start`) (src/runtime/proc.go).
        *ev = StwEvent::default();
        ev.tgid = tgid;
        ev.tid = tid;
        ev.reason = int_reg(ctx, 1)? as u8;
        ev.trigger = TRIGGER_UNKNOWN;
        ev.now_arg = int_reg(ctx, 0)? as i64;
        ev.started = int_reg(ctx, 2)? as i64;
        // NB: a second uprobe on this site (a released one not detached yet, see
        // goprobe/src/probe/targets.rs `bury`, when a new process of the binary attaches
        // meanwhile) runs this STW again: one already sent at entry is not sent twice.
        // SAFETY: copied out immediately.
        if unsafe { STW_SENT.get(tid) }.copied() == Some(ev.started) {
            return Ok(());
        }
        if ev.reason == STW_GC_SWEEP_TERM {
            ev.trigger = take_trigger(ctx, tgid, &cfg);
        }
        if STW_PENDING.insert(tid, ev, 0).is_err() {
            pending_full(ctx, tid);
            return Ok(());
        }
        crate::stacks::set_stw_caller(ctx, &cfg, tid);
    }
    // The event is completed in place (no copy: a second StwEvent on this program's stack would
    // exceed the 512-byte BPF stack). Go 1.19/1.21: none pending means goprobe attached between
    // the stop and the start of this STW, so its reason is unknown.
    let Some(ev) = STW_PENDING.get_ptr_mut(tid) else {
        return Ok(());
    };
    // SAFETY: this thread's pending entry; only this thread's probes touch it.
    let ev = unsafe { &mut *ev };
    ev.flags |= STW_FLAG_START_SEEN;
    read_runtime_state(&cfg, ev);
    crate::cycle::read_cycle_state(ctx, &cfg, ev);
    if cfg.stw_exit == stw_exit::CALLERS && cfg.stw_abi == stw_abi::GO122 {
        // NB: Go 1.22+ callers of startTheWorldWithSema (src/runtime/mgc.go, proc.go):
        // gcMarkTermination passes the `now` it added to work.pauseNS, and `now` is returned
        // unchanged; gcStart passes 0 and stores the result in work.tMark; gcMarkDone (a
        // restart) and startTheWorld pass 0 and are probed right after their call (user space
        // checked that no other function calls it). A RET probe would be single-stepped out of
        // line at every STW (10-15 µs per hit on this VM; an entry on `push rbp` is emulated).
        if ev.now_arg != 0 {
            ev.now = ev.now_arg;
        } else if ev.reason == STW_GC_SWEEP_TERM {
            ev.flags |= STW_FLAG_NOW_FROM_TMARK;
        } else {
            return Ok(());
        }
        submit(ev);
        let _ = STW_SENT.insert(tid, ev.started, 0);
        let _ = STW_PENDING.remove(tid);
    }
    Ok(())
}

/// Sends a finished STW to user space.
#[inline(always)]
fn submit(ev: &StwEvent) {
    // NB: a wake-up of the reader (irq_work, then the epoll waiter) measured ~29 µs of BPF
    // time. The goroutine that stopped the world (a GC worker, a ReadMemStats caller) would
    // resume that much later at every STW. Submit without waking; user space drains every
    // 100 ms, and a ring a quarter full wakes it early.
    let flags = if STW_EVENTS.query(BPF_RB_AVAIL_DATA.into()) > STW_RING_BYTES as u64 / 4 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if STW_EVENTS.output::<StwEvent>(ev, flags.into()).is_err() {
        bump(counter::RINGBUF_FULL);
    }
}

/// Reads `runtime.work` and `runtime.memstats` fields into the event.
#[inline(always)]
fn read_runtime_state(cfg: &TargetConfig, ev: &mut StwEvent) {
    let work = cfg.work_addr;
    let mut read = || -> Result<(), ReadError> {
        ev.cycles = read_user(work + cfg.off_work_cycles as u64)?;
        ev.pause_ns_at_start = read_user(work + cfg.off_work_pause_ns as u64)?;
        ev.user_forced = read_user(work + cfg.off_work_user_forced as u64)?;
        ev.numgc = read_user(cfg.memstats_addr + cfg.off_memstats_numgc as u64)?;
        if stw_abi::probes_stop(cfg.stw_abi) {
            ev.pause_start = read_user(work + cfg.off_work_pause_start as u64)?;
        }
        Ok(())
    };
    if read().is_err() {
        ev.flags |= STW_FLAG_READ_FAILED;
    }
}

/// Each RET of `runtime.startTheWorldWithSema`, or ([`stw_exit::CALLERS`]) the instruction
/// after a call of it: RAX holds the `now` it returns (Go ABIInternal result register).
#[uprobe]
pub fn stw_start_ret(ctx: ProbeContext) -> u32 {
    match try_stw_start_ret(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_stw_start_ret(ctx: &ProbeContext) -> Result<(), ReadError> {
    let (_, tid) = ids();
    // SAFETY: copied out immediately.
    let Some(pending) = (unsafe { STW_PENDING.get(tid) }).copied() else {
        bump(counter::UNMATCHED_RET);
        return Ok(());
    };
    let _ = STW_PENDING.remove(tid);
    if pending.flags & STW_FLAG_START_SEEN == 0 {
        bump(counter::UNMATCHED_RET);
        return Ok(());
    }
    let mut ev = pending;
    ev.now = int_reg(ctx, 0)? as i64;
    submit(&ev);
    Ok(())
}
