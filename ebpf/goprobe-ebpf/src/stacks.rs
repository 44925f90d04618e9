//! Stacks for GC signals: who stopped the world, who forced a cycle, and who paid mark assists.
//!
//! Stacks are taken with `bpf_get_stack(BPF_F_USER_STACK)`, which walks frame pointers (Go
//! keeps them on amd64 since Go 1.7), at entry probes of functions that run on the user goroutine
//! (`stopTheWorld`, `gcStart`, `gcAssistAlloc`), and are handed over, keyed by goroutine, to the
//! g0 probes that know what the call led to.
//!
//! NB: `systemstack` (src/runtime/asm_amd64.s, Go 1.19–1.27) switches SP to g0's stack but
//! leaves BP pointing into the goroutine's frames, so a frame-pointer walk taken on g0 would also
//! reach them; the goroutine-side capture is still preferred because it needs no assumption
//! about the g0 frames in between.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, generated::bpf_get_stack},
    macros::{map, uprobe},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::ProbeContext,
};
use goprobe_common::{
    AssistKey, AssistPending, BPF_F_USER_STACK, CallerStack, CycleKey, GoroutineKey,
    MAX_ASSIST_CYCLES, MAX_ASSIST_SITES, MAX_PENDING_CALLERS, MAX_PENDING_STW, MAX_STACK_DEPTH,
    MAX_STACKS, StackFrames, TargetConfig, budget_signal, counter,
};

use crate::{
    budget::admit,
    goabi::{ReadError, current_g, int_reg, read_user},
    maps::{STW_PENDING, TARGETS, bump},
};

/// User stacks by id, the id being a hash of the frames (see [`MAX_STACKS`]).
#[map]
static STACKS: HashMap<u64, StackFrames> = HashMap::with_max_entries(MAX_STACKS, BPF_F_NO_PREALLOC);

/// Where a stack is walked before it is hashed, one per CPU.
///
/// NB: no BPF program interrupts another on the same CPU: perf-event programs do not run while
/// a uprobe program is active there (kernel/events/core.c `bpf_overflow_handler` checks
/// `bpf_prog_active`), so the buffer is never shared mid-use.
#[map]
static STACK_SCRATCH: PerCpuArray<StackFrames> = PerCpuArray::with_max_entries(1, 0);

/// Stack of each goroutine's last `runtime.stopTheWorld` call, consumed by its STW.
#[map]
static STW_CALLERS: LruHashMap<GoroutineKey, CallerStack> =
    LruHashMap::with_max_entries(MAX_PENDING_CALLERS, 0);

/// Stack of each goroutine's last forced `runtime.gcStart` call, consumed by its sweep
/// termination.
#[map]
static GC_START_CALLERS: LruHashMap<GoroutineKey, CallerStack> =
    LruHashMap::with_max_entries(MAX_PENDING_CALLERS, 0);

/// Stack of each goroutine's current `runtime.gcAssistAlloc` call.
#[map]
static ASSIST_CALLERS: LruHashMap<GoroutineKey, CallerStack> =
    LruHashMap::with_max_entries(MAX_PENDING_CALLERS, 0);

/// `gcAssistAlloc1` calls in progress, by thread id.
#[map]
static ASSIST_PENDING: HashMap<u32, AssistPending> = HashMap::with_max_entries(MAX_PENDING_STW, 0);

/// Assist nanoseconds per (process, stack), added to by every CPU (see `maps::row`).
/// NB: not preallocated, as `SITES` (sites.rs).
#[map]
static ASSIST_BY_STACK: HashMap<AssistKey, u64> =
    HashMap::with_max_entries(MAX_ASSIST_SITES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Assist nanoseconds per (process, `work.cycles`), added to by every CPU.
/// NB: preallocated (4,096 small entries, one allocation when created): it gets a new key every
/// GC cycle (130 a second on a small busy heap).
#[map]
static ASSIST_BY_CYCLE: HashMap<CycleKey, u64> = HashMap::with_max_entries(MAX_ASSIST_CYCLES, 0);

/// NB: `stwReason` values of GC pauses (src/runtime/proc.go, Go 1.21–1.27; Go 1.19 events get
/// the same numbers, see gc.rs).
const STW_GC_MARK_TERM: u8 = 1;
const STW_GC_SWEEP_TERM: u8 = 2;
/// NB: `gcTriggerCycle`, the kind of runtime.GC() and debug.FreeOSMemory()
/// (src/runtime/mgc.go gcTriggerKind, Go 1.19–1.27).
const TRIGGER_CYCLE: u64 = 2;

pub(crate) use crate::pidns::tgid;

/// The stack pointer at the probe.
#[inline(always)]
fn stack_pointer(ctx: &ProbeContext) -> Result<u64, ReadError> {
    #[cfg(bpf_target_arch = "x86_64")]
    {
        // SAFETY: `regs` points at the pt_regs the kernel passed to this program.
        return Ok(unsafe { (*ctx.regs).rsp });
    }
    #[allow(unreachable_code)]
    {
        let _ = ctx;
        Err(ReadError)
    }
}

/// [RSP] at an entry site: the return address into the caller, 0 when unreadable.
///
/// NB: at an entry site (before the callee's `push rbp` completes) [RSP] is the return
/// address into the caller (Go ABIInternal, amd64: CALL pushes it; the prologue's
/// `sub rsp`/`push rbp` come after the stack check the site follows).
#[inline(always)]
pub(crate) fn return_address(ctx: &ProbeContext) -> u64 {
    stack_pointer(ctx).and_then(read_user::<u64>).unwrap_or(0)
}

/// The user stack, with `ret` as the immediate caller's return address (see [`CallerStack`]).
pub(crate) fn stack_with<C: EbpfContext>(ctx: &C, ret: u64) -> CallerStack {
    match frames_id(ctx) {
        Some(id) => CallerStack { id, ret },
        None => {
            bump(counter::STACK_FAILED);
            CallerStack { id: -1, ret }
        }
    }
}

/// The user stack at a function's entry probe.
#[inline(always)]
pub(crate) fn capture(ctx: &ProbeContext) -> CallerStack {
    stack_with(ctx, return_address(ctx))
}

/// Walks the user stack (frame pointers, as `bpf_get_stackid` does), stores it in `STACKS`
/// unless there already, and returns its id: a 63-bit hash of the frames.
#[inline(always)]
fn frames_id<C: EbpfContext>(ctx: &C) -> Option<i64> {
    let buf = STACK_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the helper writes at most `size` bytes into the per-CPU buffer.
    let len = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            buf.cast(),
            size_of::<StackFrames>() as u32,
            BPF_F_USER_STACK,
        )
    };
    if len <= 0 {
        return None;
    }
    // SAFETY: per-CPU buffer, used by this program alone while it runs (see STACK_SCRATCH).
    let frames = unsafe { &*buf };
    // NB: the helper zeroes the buffer past the frames it wrote (kernel/bpf/stackmap.c
    // `__bpf_get_stack`: `memset(buf + copy_len, 0, size - copy_len)`, Linux 4.18+), so hashing
    // all of it is hashing the stack. Straight-line code, no branch on the stack's length: the
    // verifier's work (and so attach time) stays linear.
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for i in 0..MAX_STACK_DEPTH {
        h = (h ^ frames.ips[i]).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    let id = h & i64::MAX as u64;
    // Seen before: a lockless lookup, no copy.
    if STACKS.get_ptr(id).is_some() {
        return Some(id as i64);
    }
    // An existing entry (-EEXIST: another CPU stored it meanwhile) is the same stack; a full
    // map fails the capture.
    match STACKS.insert(id, frames, BPF_NOEXIST as u64) {
        Ok(()) => Some(id as i64),
        Err(-17) => Some(id as i64), // -EEXIST
        Err(_) => None,
    }
}

#[inline(always)]
fn goroutine_key(ctx: &ProbeContext) -> Result<GoroutineKey, ReadError> {
    Ok(GoroutineKey {
        tgid: tgid(),
        _pad0: 0,
        g: current_g(ctx)?,
    })
}

/// `runtime.stopTheWorld` entry, on the calling goroutine: remember who is stopping the world.
#[uprobe]
pub fn stw_caller_entry(ctx: ProbeContext) -> u32 {
    match try_stw_caller(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_stw_caller(ctx: &ProbeContext) -> Result<(), ReadError> {
    if !admit(budget_signal::STACK) {
        return Ok(());
    }
    try_remember(ctx, &STW_CALLERS)
}

fn try_remember(
    ctx: &ProbeContext,
    map: &LruHashMap<GoroutineKey, CallerStack>,
) -> Result<(), ReadError> {
    let key = goroutine_key(ctx)?;
    map.insert(key, capture(ctx), 0).map_err(|_| ReadError)
}

/// Called from `gcStart`'s entry probe with the trigger kind: keeps the stack of forced cycles.
#[inline(always)]
pub fn remember_gc_start(ctx: &ProbeContext, kind: u64) {
    if kind == TRIGGER_CYCLE && admit(budget_signal::STACK) {
        let _ = try_remember(ctx, &GC_START_CALLERS);
    }
}

/// The stack of whoever asked for the STW with `reason` that this thread (on g0) is in.
///
/// NB: on g0, R14 is g0 and `g0.m.curg` the goroutine that called `stopTheWorld` or `gcStart`
/// (both keep their M: `m.preemptoff`/`acquirem`, src/runtime/proc.go, mgc.go, Go 1.19–1.27).
/// Mark terminations are run by whichever goroutine finished marking: no caller is kept.
/// Sets the caller of the STW pending on thread `tid` (just stored by the gc.rs probes).
///
/// NB: not inlined, and writing into the map value rather than the caller's `StwEvent`: inlined
/// into `stw_start_entry`, whose frame holds two `StwEvent`s, the frame exceeds the 512-byte BPF
/// stack; a BPF-to-BPF call has a frame of its own.
#[inline(never)]
pub fn set_stw_caller(ctx: &ProbeContext, cfg: &TargetConfig, tid: u32) {
    let Some(ev) = STW_PENDING.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: the pending entry of this thread; only this thread's probes touch it.
    let reason = unsafe { (*ev).reason };
    let caller = take_stw_caller(ctx, cfg, reason);
    // SAFETY: as above.
    unsafe { (*ev).caller = caller };
}

#[inline(always)]
fn take_stw_caller(ctx: &ProbeContext, cfg: &TargetConfig, reason: u8) -> CallerStack {
    let map = match reason {
        STW_GC_MARK_TERM => return CallerStack::NONE,
        STW_GC_SWEEP_TERM => &GC_START_CALLERS,
        _ => &STW_CALLERS,
    };
    let lookup = || -> Result<CallerStack, ReadError> {
        let g0 = current_g(ctx)?;
        let m: u64 = read_user(g0 + cfg.off_g_m as u64)?;
        let curg: u64 = read_user(m + cfg.off_m_curg as u64)?;
        let key = GoroutineKey {
            tgid: tgid(),
            _pad0: 0,
            g: curg,
        };
        // SAFETY: copied out before any other map operation.
        let caller = unsafe { map.get(key) }.copied().ok_or(ReadError)?;
        let _ = map.remove(key);
        Ok(caller)
    };
    lookup().unwrap_or(CallerStack::NONE)
}

/// `runtime.gcAssistAlloc(gp *g)` entry, on the allocating goroutine: remember its stack.
#[uprobe]
pub fn assist_entry(ctx: ProbeContext) -> u32 {
    match try_assist_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_assist_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    if admit(budget_signal::ASSIST) {
        return try_remember(ctx, &ASSIST_CALLERS);
    }
    // Over budget: no stack walk; the assist's time is still counted, under no stack rather
    // than under this goroutine's previous one.
    let key = goroutine_key(ctx)?;
    ASSIST_CALLERS
        .insert(key, CallerStack::NONE, 0)
        .map_err(|_| ReadError)
}

/// `runtime.gcAssistAlloc1(gp *g, scanWork int64)` entry, on g0 (via systemstack).
#[uprobe]
pub fn assist1_entry(ctx: ProbeContext) -> u32 {
    match try_assist1_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_assist1_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    let (tgid, tid) = crate::pidns::ids();
    // NB: with uprobes shared by every process of a binary, others run this too.
    // SAFETY: a map lookup; the value is only tested for presence.
    if unsafe { TARGETS.get(tgid) }.is_none() {
        return Ok(());
    }
    // NB: RAX = gp, the assisting goroutine (Go ABIInternal; src/runtime/mgcmark.go
    // `gcAssistAlloc1(gp *g, scanWork int64)`, Go 1.19–1.27).
    let pending = AssistPending {
        // SAFETY: plain helper call.
        start_ktime: unsafe { bpf_ktime_get_ns() },
        g: int_reg(ctx, 0)?,
    };
    ASSIST_PENDING
        .insert(tid, pending, 0)
        .map_err(|_| ReadError)
}

/// Each RET of `runtime.gcAssistAlloc1`: add the assist's duration to its stack and its cycle.
#[uprobe]
pub fn assist1_ret(_ctx: ProbeContext) -> u32 {
    match try_assist1_ret() {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_assist1_ret() -> Result<(), ReadError> {
    let (tgid, tid) = crate::pidns::ids();
    // SAFETY: copied out immediately.
    let pending = unsafe { ASSIST_PENDING.get(tid) }
        .copied()
        .ok_or(ReadError)?;
    let _ = ASSIST_PENDING.remove(tid);
    // SAFETY: plain helper call.
    let ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(pending.start_ktime);
    let key = GoroutineKey {
        tgid,
        _pad0: 0,
        g: pending.g,
    };
    // SAFETY: copied out immediately.
    let stack = unsafe { ASSIST_CALLERS.get(key) }
        .copied()
        .unwrap_or(CallerStack::NONE);
    add(
        &ASSIST_BY_STACK,
        AssistKey {
            tgid,
            generation: crate::maps::generation(),
            stack,
        },
        ns,
    );
    // SAFETY: copied out immediately.
    let cfg = unsafe { TARGETS.get(tgid) }.copied().ok_or(ReadError)?;
    let cycle: u32 = read_user(cfg.work_addr + cfg.off_work_cycles as u64)?;
    add(&ASSIST_BY_CYCLE, CycleKey { tgid, cycle }, ns);
    Ok(())
}

#[inline(always)]
fn add<K>(map: &HashMap<K, u64>, key: K, ns: u64) {
    if let Some(v) = crate::maps::row(map, &key, &0) {
        crate::maps::add(v, ns);
    }
}
