//! Process ids as goprobe's user space sees them. In the initial pid namespace they are the
//! kernel's; when goprobe runs in another one (a sidecar sharing its pod's process namespace,
//! a container), user space writes that namespace into `PID_NS` and every program numbers
//! processes in it, so `TARGETS` and the other maps use the pids user space reads in /proc.

use aya_ebpf::{
    bindings::bpf_pidns_info,
    helpers::{bpf_get_current_pid_tgid, bpf_get_ns_current_pid_tgid},
    macros::map,
    maps::Array,
};
use goprobe_common::PidNs;

/// Slot 0: goprobe's pid namespace; all zero for the initial namespace.
#[map]
static PID_NS: Array<PidNs> = Array::with_max_entries(1, 0);

/// (tgid, tid) of the current task in goprobe's pid namespace; (0, 0) for a task outside it,
/// which matches no target.
#[inline(always)]
pub(crate) fn ids() -> (u32, u32) {
    match PID_NS.get(0) {
        Some(ns) if ns.ino != 0 => {
            let mut info = bpf_pidns_info { pid: 0, tgid: 0 };
            // NB: bpf_get_ns_current_pid_tgid (Linux 5.7+) fails with -ENOENT for a task not
            // visible in the namespace (kernel/bpf/helpers.c).
            // SAFETY: `info` is a valid, writable bpf_pidns_info of the size passed.
            let r = unsafe {
                bpf_get_ns_current_pid_tgid(
                    ns.dev,
                    ns.ino,
                    &raw mut info,
                    size_of::<bpf_pidns_info>() as u32,
                )
            };
            if r == 0 {
                (info.tgid, info.pid)
            } else {
                (0, 0)
            }
        }
        _ => {
            let id = bpf_get_current_pid_tgid();
            ((id >> 32) as u32, id as u32)
        }
    }
}

/// The current process' id in goprobe's pid namespace (0 outside it).
#[inline(always)]
pub(crate) fn tgid() -> u32 {
    ids().0
}
