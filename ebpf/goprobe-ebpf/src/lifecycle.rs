//! Process lifecycle tracepoints for `goprobe agent` and `goprobe attach`: every exec on the
//! host, and the exit of attached processes, into `LIFECYCLE` (read by goprobe/src/cli/agent/mod.rs
//! and, for the target's exec, goprobe/src/session/window.rs).
//!
//! Both are raw tracepoints, attached by name with bpf_raw_tracepoint_open: no tracefs (often
//! absent in containers, root-only on hosts) and no CAP_DAC_READ_SEARCH. Their arguments are
//! not read: who execs or exits is the current task.

use aya_ebpf::{
    bindings::BPF_RB_FORCE_WAKEUP,
    helpers::bpf_ktime_get_ns,
    macros::{map, raw_tracepoint},
    maps::RingBuf,
    programs::RawTracePointContext,
};
use goprobe_common::{LIFECYCLE_RING_BYTES, LifecycleEvent, counter, lifecycle_kind};

use crate::{
    maps::{TARGETS, bump},
    pidns::ids,
};

#[map]
static LIFECYCLE: RingBuf = RingBuf::with_byte_size(LIFECYCLE_RING_BYTES, 0);

/// `sched:sched_process_exec`: a process now runs a new program.
///
/// NB: fired from exec_binprm() once the new image is loaded and mapped (fs/exec.c), so
/// /proc/<pid>/exe and /proc/<pid>/maps already show the new program; the task is the execing
/// thread, which exec made the thread group leader (de_thread), so pid == tgid.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn process_exec(_ctx: RawTracePointContext) -> i32 {
    let (tgid, _) = ids();
    // A process outside goprobe's pid namespace (0): not one it can see.
    if tgid != 0 {
        emit(lifecycle_kind::EXEC, tgid);
    }
    0
}

/// `sched:sched_process_exit`: a task exits; reported for thread group leaders of attached
/// processes only, which leave `TARGETS` here.
///
/// NB: fired from do_exit() for every task (kernel/exit.c). A Go program's main thread is its
/// thread group leader and lives until exit_group, so the leader's exit is the process'. Its
/// pid is freed only after this (release_task, once reaped), so removing the entry here means
/// the programs that select processes by pid (perf.rs: CPU samples, page faults) never count a
/// process that reuses it, however late user space detaches.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn process_exit(_ctx: RawTracePointContext) -> i32 {
    let (tgid, pid) = ids();
    // SAFETY: a map lookup; the value is only tested for presence.
    if tgid == pid && unsafe { TARGETS.get(tgid) }.is_some() {
        let _ = TARGETS.remove(tgid);
        emit(lifecycle_kind::EXIT, tgid);
    }
    0
}

#[inline(always)]
fn emit(kind: u32, tgid: u32) {
    let ev = LifecycleEvent {
        kind,
        tgid,
        // SAFETY: no preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
    };
    if LIFECYCLE
        .output::<LifecycleEvent>(&ev, BPF_RB_FORCE_WAKEUP.into())
        .is_err()
    {
        bump(counter::LIFECYCLE_FULL);
    }
}
