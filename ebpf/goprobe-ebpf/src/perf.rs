//! Perf-event programs: page faults (software events `PAGE_FAULTS_MIN` / `_MAJ`, sampled once
//! per `--page-fault-period` faults and weighted by period; the exact totals are the kernel's own per-process
//! counts, read by user space) and on-CPU samples (software `CPU_CLOCK`), counted per user stack
//! into `SITES`; each capped per second by budget.rs.
//!
//! The events are opened by user space (goprobe/src/probe/perf.rs) once per online CPU for all
//! processes; these programs keep only the threads of attached processes (`TARGETS`).
//!
//! A frame-pointer walk from a sample taken where the function has not (or no longer) pushed
//! RBP — inside a frameless assembly leaf such as `memmove` or `memclrNoHeapPointers`, or at a
//! function's entry — misses the immediate caller: its return address is at `[SP]`, not at
//! `[RBP+8]`. User space passes the pc ranges where that is so (`FRAMELESS`, computed from the
//! function table's pcsp, goprobe/src/analysis/binary/frameless.rs); when the sampled user IP is in one, the
//! word at the user SP is kept as `CallerStack::ret` and inserted as the second frame.
//!
//! `FRAMELESS` is one pool for every attached binary: each binary's ranges are one block of it
//! (goprobe/src/probe/frameless.rs), shared by its processes, as offsets from its Go text start;
//! `FRAMELESS_TARGETS` tells, per process, which block and where that text is loaded.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs},
    macros::{map, perf_event},
    maps::{Array, HashMap},
    programs::PerfEventContext,
};
use goprobe_common::{
    FRAMELESS_POOL, FRAMELESS_SEARCH_STEPS, FramelessRange, FramelessTarget, MAX_FRAMELESS,
    MAX_TARGETS, X86_RET, budget_signal, counter, frameless_state, site_kind,
};

use crate::{
    budget::admit,
    goabi::{ReadError, read_user},
    maps::{TARGETS, bump},
    sites::add_site,
    stacks::{stack_with, tgid},
};

/// The frameless pc ranges of every attached binary, a block per binary, each sorted and
/// disjoint. User space writes it through a memory mapping (BPF_F_MMAPABLE) and may size it
/// at load.
#[map]
static FRAMELESS: Array<FramelessRange> =
    Array::with_max_entries(FRAMELESS_POOL, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// Per process (tgid): which block of `FRAMELESS` is its binary's, and where its Go text is.
#[map]
static FRAMELESS_TARGETS: HashMap<u32, FramelessTarget> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// A sampled minor page fault of any process (`PERF_COUNT_SW_PAGE_FAULTS_MIN`, one per
/// `--page-fault-period` faults of the CPU); weighted by the faults it stands for, its sample
/// period.
#[perf_event]
pub fn page_fault_min(ctx: PerfEventContext) -> u32 {
    let period = sample_period(&ctx);
    match try_sample(
        &ctx,
        site_kind::PAGE_FAULT,
        budget_signal::PAGE_FAULT,
        period,
        1,
    ) {
        Ok(()) | Err(ReadError) => 0,
    }
}

/// A sampled major page fault of any process (`PERF_COUNT_SW_PAGE_FAULTS_MAJ`, as above).
#[perf_event]
pub fn page_fault_maj(ctx: PerfEventContext) -> u32 {
    let period = sample_period(&ctx);
    let kind = site_kind::PAGE_FAULT_MAJOR;
    match try_sample(&ctx, kind, budget_signal::PAGE_FAULT, period, 1) {
        Ok(()) | Err(ReadError) => 0,
    }
}

/// A cpu-clock tick on a CPU (`PERF_COUNT_SW_CPU_CLOCK`, at `--cpu-hz`).
#[perf_event]
pub fn cpu_sample(ctx: PerfEventContext) -> u32 {
    match try_sample(&ctx, site_kind::CPU, budget_signal::CPU, 1, 0) {
        Ok(()) | Err(ReadError) => 0,
    }
}

/// The events this sample stands for: its period.
///
/// NB: `bpf_perf_event_data.sample_period` is the period of the overflow that ran the program
/// (kernel/trace/bpf_trace.c `pe_prog_convert_ctx_access` reads `perf_sample_data.period`,
/// which kernel/events/core.c `perf_swevent_event` sets to `hwc->last_period`: the period that
/// just ran out): the fixed period asked for, or, should the events be opened in frequency
/// mode, the one the kernel chose (`perf_adjust_period`), so each sample is weighted by its own.
#[inline(always)]
fn sample_period(ctx: &PerfEventContext) -> u64 {
    // SAFETY: `ctx` is the kernel's bpf_perf_event_data; its fields are readable in place.
    unsafe { (*ctx.ctx).sample_period }.max(1)
}

#[inline(always)]
fn try_sample(
    ctx: &PerfEventContext,
    kind: u32,
    signal: u32,
    a: u64,
    b: u64,
) -> Result<(), ReadError> {
    let tgid = tgid();
    // SAFETY: a map lookup; the value is only tested for presence.
    if unsafe { TARGETS.get(tgid) }.is_none() {
        return Ok(());
    }
    if !admit(signal) {
        return Ok(());
    }
    let ret = match user_ip_sp(ctx) {
        Ok((ip, sp)) => frameless_return(tgid, ip, sp)?,
        Err(ReadError) => 0,
    };
    // NB: with BPF_F_USER_STACK the kernel walks from the task's saved user registers when the
    // sample interrupted kernel code (kernel/bpf/stackmap.c, get_perf_callchain: `regs =
    // task_pt_regs(current)` when `!user_mode(regs)`), e.g. a fault in copy_to_user.
    add_site(tgid, kind, stack_with(ctx, ret), a, b);
    Ok(())
}

/// The user-mode IP and SP of the sampled thread.
#[inline(always)]
fn user_ip_sp(ctx: &PerfEventContext) -> Result<(u64, u64), ReadError> {
    #[cfg(bpf_target_arch = "x86_64")]
    {
        // SAFETY: `ctx` is the kernel's bpf_perf_event_data; its `regs` are readable in place.
        let regs = unsafe { &(*ctx.ctx).regs };
        // NB: x86 user_mode(): the privilege level in CS's low two bits is 3 in user mode
        // (arch/x86/include/asm/ptrace.h). A page fault taken in the kernel (copy_to_user) or a
        // cpu-clock tick during a syscall samples kernel registers: the user ones are then the
        // task's saved pt_regs (bpf_task_pt_regs, Linux 5.15+).
        if regs.cs & 3 == 3 {
            return Ok((regs.rip, regs.rsp));
        }
        // SAFETY: helpers with BTF-typed arguments; the verifier checks them. The pt_regs are
        // read with bpf_probe_read_kernel, which fails instead of faulting.
        let user = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs;
        // SAFETY: see above.
        let ip = unsafe { bpf_probe_read_kernel(&raw const (*user).rip) }.map_err(|_| ReadError)?;
        // SAFETY: see above.
        let sp = unsafe { bpf_probe_read_kernel(&raw const (*user).rsp) }.map_err(|_| ReadError)?;
        return Ok((ip, sp));
    }
    #[allow(unreachable_code)]
    {
        let _ = ctx;
        Err(ReadError)
    }
}

/// The return address at `[sp]` if `ip` is in one of `tgid`'s frameless ranges or at a `RET`,
/// else 0; an error (counted) when `tgid`'s ranges are not loaded: its stack could miss a caller.
#[inline(always)]
fn frameless_return(tgid: u32, ip: u64, sp: u64) -> Result<u64, ReadError> {
    // SAFETY: a map lookup; the value is read in place, and only this process' block is used.
    let Some(t) = (unsafe { FRAMELESS_TARGETS.get(tgid) }) else {
        bump(counter::STACK_FAILED);
        return Err(ReadError);
    };
    if t.state != frameless_state::LOADED {
        bump(counter::STACK_FAILED);
        return Err(ReadError);
    }
    let off = ip.wrapping_sub(t.text);
    if off >= u64::from(t.text_len) {
        // Not Go code (cgo, the vDSO): the ranges say nothing of it.
        return Ok(0);
    }
    let off = off as u32;
    if in_ranges(t, off) || read_user::<u8>(ip).is_ok_and(|op| op == X86_RET) {
        return Ok(read_user::<u64>(sp).unwrap_or(0));
    }
    Ok(0)
}

/// Whether text offset `off` is in one of the ranges `FRAMELESS[t.base..t.base + t.n_ranges]`.
#[inline(always)]
fn in_ranges(t: &FramelessTarget, off: u32) -> bool {
    // The last range starting at or below `off`.
    let (mut lo, mut hi) = (0u32, t.n_ranges.min(MAX_FRAMELESS));
    // NB: bounded for the verifier: at most FRAMELESS_SEARCH_STEPS iterations, and
    // 2^(steps-1) ≥ MAX_FRAMELESS ≥ n_ranges, so the search ends in time. Each index
    // `base + mid` is checked by the array lookup itself (a block past the pool's end finds
    // nothing), so `base` needs no bound of its own.
    for _ in 0..FRAMELESS_SEARCH_STEPS {
        // NB: the verifier explores both outcomes of every step; while it knows ranges for
        // `lo` and `hi` some comparisons become decided, which marks them precise and stops
        // it from merging paths (2^steps of them: "BPF program is too large"). ORing in a
        // value loaded from map memory (always 0) leaves it knowing nothing of them.
        // SAFETY: `t` points into the map value; a volatile load so it is redone every step.
        let zero = unsafe { core::ptr::read_volatile(&raw const t.zero) } as u32;
        lo |= zero;
        hi |= zero;
        if lo >= hi {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        let Some(r) = FRAMELESS.get(t.base.wrapping_add(mid)) else {
            return false;
        };
        if r.start <= off {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        return false;
    }
    match FRAMELESS.get(t.base.wrapping_add(lo - 1)) {
        Some(r) => off < r.end,
        None => false,
    }
}
