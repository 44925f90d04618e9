//! Checking, before anything else, that goprobe has the capabilities it needs.

/// NB: capability numbers from include/uapi/linux/capability.h.
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Capabilities missing for `goprobe attach` and `goprobe agent`: the missing ones, then the
/// whole set this kernel needs (a file's capabilities are replaced by `setcap`, so it grants all).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "missing capabilities: {}; this kernel needs {} ({}); run as root, or grant them: \
     sudo setcap {}+ep $(which goprobe)",
    .missing.join(", "),
    .needed.join(", "),
    .why,
    .needed.iter().map(|c| c.to_lowercase()).collect::<Vec<_>>().join(","),
)]
pub struct MissingCapabilities {
    pub missing: Vec<&'static str>,
    pub needed: Vec<&'static str>,
    /// Why the kernel asks for the probe capability it asks for.
    pub why: &'static str,
}

/// Each capability goprobe may use: (bit, name, what for). Which of them this kernel needs is
/// [`needed`]'s answer.
pub const NEEDED: [(u32, &str, &str); 5] = [
    (
        CAP_SYS_ADMIN,
        "CAP_SYS_ADMIN",
        "uprobe perf events (Linux 6.16+ and its stable kernels: perf_uprobe_event_init); covers \
         CAP_BPF and CAP_PERFMON",
    ),
    (
        CAP_BPF,
        "CAP_BPF",
        "load BPF programs, create maps (only without CAP_SYS_ADMIN)",
    ),
    (
        CAP_PERFMON,
        "CAP_PERFMON",
        "uprobe (before Linux 6.16), tracepoint and perf events, bpf_probe_read_user and \
         bpf_get_stack (only without CAP_SYS_ADMIN)",
    ),
    (
        CAP_SYS_PTRACE,
        "CAP_SYS_PTRACE",
        "ptrace access to other processes' /proc/<pid>/exe, mem, environ",
    ),
    (
        CAP_DAC_READ_SEARCH,
        "CAP_DAC_READ_SEARCH",
        "open those files of other users' processes when not root",
    ),
];

/// Why uprobes need CAP_SYS_ADMIN on most kernels.
const WHY_ADMIN: &str =
    "uprobes need CAP_SYS_ADMIN since Linux 6.16; it covers CAP_BPF and CAP_PERFMON too";
/// Why CAP_BPF + CAP_PERFMON are enough on an older kernel.
const WHY_PERFMON: &str =
    "this kernel opens uprobe perf events to CAP_PERFMON; CAP_BPF loads the programs";

/// The effective capability set of this process.
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// What this kernel needs with `caps`, and why: CAP_SYS_ADMIN, unless `caps` has CAP_PERFMON
/// and CAP_BPF without it and the kernel opens a uprobe perf event to CAP_PERFMON
/// (`perfmon_uprobes`, asked only then), then those two; and CAP_SYS_PTRACE and
/// CAP_DAC_READ_SEARCH for other processes' `/proc/<pid>` files.
fn needed(caps: u64, perfmon_uprobes: impl FnOnce() -> bool) -> (Vec<&'static str>, &'static str) {
    let has = |c: u32| caps & (1u64 << c) != 0;
    // NB: Linux 5.8 (c9e0924e5c2b) let CAP_PERFMON open uprobe perf events; Linux 6.16
    // (ba677dbe, "perf: Revert to requiring CAP_SYS_ADMIN for uprobes", also in stable kernels)
    // asks for CAP_SYS_ADMIN again in kernel/events/core.c perf_uprobe_event_init. Every other
    // check goprobe meets (bpf_capable, perfmon_capable: BPF_PROG_LOAD of tracing programs with
    // bpf_probe_read_user/bpf_get_stack, per-CPU perf events at any perf_event_paranoid) accepts
    // CAP_SYS_ADMIN too. Reading /proc/<pid>/mem is a ptrace access check (CAP_SYS_PTRACE) and a
    // file open of a 0600 file of another user (CAP_DAC_READ_SEARCH, read only).
    let (probe, why) =
        if !has(CAP_SYS_ADMIN) && has(CAP_PERFMON) && has(CAP_BPF) && perfmon_uprobes() {
            (vec!["CAP_BPF", "CAP_PERFMON"], WHY_PERFMON)
        } else {
            (vec!["CAP_SYS_ADMIN"], WHY_ADMIN)
        };
    let needed = probe
        .into_iter()
        .chain(["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"])
        .collect();
    (needed, why)
}

/// Which of what this kernel needs is missing from `caps`.
fn missing_from(
    caps: u64,
    perfmon_uprobes: impl FnOnce() -> bool,
) -> Result<(), MissingCapabilities> {
    let (needed, why) = needed(caps, perfmon_uprobes);
    let bit = |name: &str| NEEDED.iter().find(|n| n.1 == name).map_or(0, |n| n.0);
    let missing: Vec<_> = needed
        .iter()
        .copied()
        .filter(|&name| caps & (1u64 << bit(name)) == 0)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingCapabilities {
            missing,
            needed,
            why,
        })
    }
}

/// Whether this kernel opens a uprobe perf event without CAP_SYS_ADMIN: one is opened,
/// disabled, on goprobe's own executable, and closed. Only EACCES says no.
fn perfmon_opens_uprobes() -> bool {
    let Some(ty) = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let path = c"/proc/self/exe";
    // NB: perf_event_attr as of PERF_ATTR_SIZE_VER1 (72 bytes, include/uapi/linux/perf_event.h):
    // type and size in word 0, the flags (bit 0 `disabled`) in word 5, config1 and config2 in
    // words 7 and 8; the uprobe PMU takes the path in config1 and the file offset in config2
    // (kernel/events/core.c perf_uprobe_init). Disabled, it inserts no breakpoint, and offset 0
    // (the ELF header) is never executed anyway.
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
    let mut attr = [0u64; 9];
    attr[0] = u64::from(ty) | (72u64 << 32);
    attr[5] = 1;
    attr[7] = path.as_ptr() as u64;
    // SAFETY: perf_event_open(2) with a VER1 attr for this process (pid 0, any CPU); `path`
    // outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd >= 0 {
        // SAFETY: fd was just opened here and is not used again.
        unsafe { libc::close(fd as libc::c_int) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::EACCES)
}

/// Fails with the capabilities missing for what this kernel needs.
pub fn check() -> Result<(), MissingCapabilities> {
    missing_from(effective(), perfmon_opens_uprobes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(caps: u64, perfmon_uprobes: bool) -> Vec<&'static str> {
        missing_from(caps, || perfmon_uprobes)
            .err()
            .map_or_else(Vec::new, |e| e.missing)
    }

    #[test]
    fn lists_what_is_missing() {
        let all = ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"];
        assert_eq!(missing(0, true), all);
        let admin = (1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_PTRACE) | (1 << CAP_DAC_READ_SEARCH);
        assert!(missing(admin, false).is_empty());
        let bpf = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_SYS_PTRACE);
        // A kernel that refuses uprobes to CAP_PERFMON: CAP_SYS_ADMIN it is.
        assert_eq!(
            missing(bpf, false),
            ["CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"]
        );
        // One that allows them (before Linux 6.16).
        assert_eq!(missing(bpf, true), ["CAP_DAC_READ_SEARCH"]);
        assert_eq!(
            missing(1 << CAP_BPF | 1 << CAP_PERFMON, true)[0],
            "CAP_SYS_PTRACE"
        );
    }

    #[test]
    fn both_halves_name_the_same_capabilities() {
        let e = missing_from(1 << CAP_BPF | 1 << CAP_PERFMON, || false).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "missing capabilities: CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH;"
            ),
            "{text}"
        );
        assert!(
            text.contains("setcap cap_sys_admin,cap_sys_ptrace,cap_dac_read_search+ep"),
            "{text}"
        );
        for name in &e.missing {
            assert!(e.needed.contains(name));
        }
    }
}
