//! Process lifecycle tracepoints for `goprobe agent`: every exec on the host, and the exit of
//! attached processes, into `LIFECYCLE` (agent/src/agent/lifecycle.rs reads it).
//!
//! Both are raw `sched` tracepoints with stable names; their fields are not read: who execs or
//! exits is the current task.

use aya_ebpf::{
    bindings::BPF_RB_FORCE_WAKEUP,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::RingBuf,
    programs::TracePointContext,
};
use goprobe_common::{LIFECYCLE_RING_BYTES, LifecycleEvent, counter, lifecycle_kind};

use crate::gc::{TARGETS, bump};

#[map]
static LIFECYCLE: RingBuf = RingBuf::with_byte_size(LIFECYCLE_RING_BYTES, 0);

/// `sched:sched_process_exec`: a process now runs a new program.
///
/// NB: fired from exec_binprm() once the new image is loaded and mapped (fs/exec.c), so
/// /proc/<pid>/exe and /proc/<pid>/maps already show the new program; the task is the execing
/// thread, which exec made the thread group leader (de_thread), so pid == tgid.
#[tracepoint]
pub fn process_exec(_ctx: TracePointContext) -> u32 {
    emit(lifecycle_kind::EXEC, tgid());
    0
}

/// `sched:sched_process_exit`: a task exits; reported for thread group leaders of attached
/// processes only.
///
/// NB: fired from do_exit() for every task (kernel/exit.c). A Go program's main thread is its
/// thread group leader and lives until exit_group, so the leader's exit is the process'.
#[tracepoint]
pub fn process_exit(_ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((id >> 32) as u32, id as u32);
    // SAFETY: a map lookup; the value is only tested for presence.
    if tgid == pid && unsafe { TARGETS.get(&tgid) }.is_some() {
        emit(lifecycle_kind::EXIT, tgid);
    }
    0
}

#[inline(always)]
fn tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
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
