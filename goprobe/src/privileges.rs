//! Checking, before anything else, that goprobe has the capabilities it needs.

/// NB: capability numbers from include/uapi/linux/capability.h.
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Capabilities missing for `goprobe attach`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "missing capabilities: {}; run as root, or grant them: \
     sudo setcap cap_sys_admin,cap_sys_ptrace,cap_dac_read_search+ep $(which goprobe)",
    .missing.join(", ")
)]
pub struct MissingCapabilities {
    pub missing: Vec<&'static str>,
}

/// Each capability goprobe uses: (bit, name, what for).
pub const NEEDED: [(u32, &str, &str); 5] = [
    (CAP_BPF, "CAP_BPF", "load BPF programs, create maps"),
    (
        CAP_PERFMON,
        "CAP_PERFMON",
        "uprobe, tracepoint and perf events (or CAP_SYS_ADMIN)",
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
    (
        CAP_SYS_ADMIN,
        "CAP_SYS_ADMIN",
        "uprobe events: Linux 6.18 refuses them to CAP_BPF + CAP_PERFMON",
    ),
];

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

/// Which of the needed capabilities are missing from `caps`.
fn missing_from(caps: u64) -> Vec<&'static str> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    let admin = has(CAP_SYS_ADMIN);
    // NB: since Linux 5.8 CAP_BPF + CAP_PERFMON replace CAP_SYS_ADMIN for loading tracing programs
    // and opening uprobe perf events; CAP_SYS_PTRACE lets us read other users' /proc/<pid>/mem.
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(c, _)| !has(c) && !admin)
        .map(|(_, name)| name)
        .chain((!has(CAP_SYS_PTRACE)).then_some("CAP_SYS_PTRACE"))
        .collect()
}

/// Fails with the list of missing capabilities.
pub fn check() -> Result<(), MissingCapabilities> {
    let missing = missing_from(effective());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingCapabilities { missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_what_is_missing() {
        assert_eq!(
            missing_from(0),
            vec!["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"]
        );
        let admin_ptrace = (1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_PTRACE);
        assert!(missing_from(admin_ptrace).is_empty());
        let bpf_only = (1 << CAP_BPF) | (1 << CAP_SYS_PTRACE);
        assert_eq!(missing_from(bpf_only), vec!["CAP_PERFMON"]);
    }
}
