//! Goroutine creation and exit: who runs `go` statements (per stack, in the shared `SITES` map)
//! and how many goroutines were created and exited (per process, in `GOROUTINE_COUNTS`).
//!
//! The goroutine count over time is not probed: user space reads it from the runtime's own
//! variables (goprobe/src/signal/goroutines.rs), which costs the target nothing.

use aya_ebpf::{
    macros::{map, uprobe},
    maps::PerCpuHashMap,
    programs::ProbeContext,
};
use goprobe_common::{GoroutineCounts, MAX_TARGETS, budget_signal, site_kind};

use crate::{
    budget::admit,
    goabi::{ReadError, stack_check_fails},
    sites::add_site,
    stacks::{capture, tgid},
};

/// Goroutines created and exited per process (tgid), per CPU. Entries are made by user space
/// at attach, so nothing here can be dropped for lack of room.
/// NB: not preallocated, as `SITES` (sites.rs): creating it would cost every attach.
#[map]
static GOROUTINE_COUNTS: PerCpuHashMap<u32, GoroutineCounts> =
    PerCpuHashMap::with_max_entries(MAX_TARGETS, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Entry of `runtime.newproc` (a `go` statement) or `runtime.newcoro` (`iter.Pull`), on the
/// creating goroutine: count one creation for the caller's stack.
///
/// NB: `newproc(fn *funcval)` (src/runtime/proc.go, Go 1.19–1.27) is what the compiler calls
/// for every `go` statement, on the goroutine executing it, so the stack at its entry is the
/// `go` statement's; `newcoro` (src/runtime/coro.go, Go 1.23+) likewise for coroutines. Both then
/// create the goroutine with `newproc1`, on g0.
#[uprobe]
pub fn goroutine_create_entry(ctx: ProbeContext) -> u32 {
    match try_create(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_create(ctx: &ProbeContext) -> Result<(), ReadError> {
    // NB: `newproc`/`newcoro` have a stack-bound check (not NOSPLIT, src/runtime/proc.go,
    // coro.go), so the flags say whether this call is about to go through morestack and hit
    // the probe again (Go 1.19, where the site is the check's `jbe`).
    if stack_check_fails(ctx) {
        return Ok(());
    }
    let tgid = tgid();
    // The created count is kept over budget (the exits are counted too); the stack is not.
    if admit(budget_signal::GOROUTINE) {
        add_site(tgid, site_kind::GOROUTINE_CREATE, capture(ctx), 1, 0);
    }
    add(tgid, 1, 0)
}

/// Entry of `runtime.gdestroy` (Go 1.22+) or `runtime.goexit0` (Go 1.19, 1.21), on g0: one
/// goroutine exited.
///
/// NB: in Go 1.22+ `goexit0` calls `gdestroy`, and so does `coroexit` (src/runtime/proc.go,
/// coro.go); in 1.19 and 1.21 `goexit0` itself tears the goroutine down (proc.go). Either is
/// called once per exiting goroutine, before it is put on a free list.
#[uprobe]
pub fn goroutine_exit_entry(_ctx: ProbeContext) -> u32 {
    match add(tgid(), 0, 1) {
        Ok(()) | Err(ReadError) => 0,
    }
}

#[inline(always)]
fn add(tgid: u32, created: u64, exited: u64) -> Result<(), ReadError> {
    let counts = GOROUTINE_COUNTS.get_ptr_mut(tgid).ok_or(ReadError)?;
    // SAFETY: per-CPU value, no concurrent writer on this CPU while the program runs.
    unsafe {
        (*counts).created += created;
        (*counts).exited += exited;
    }
    Ok(())
}
