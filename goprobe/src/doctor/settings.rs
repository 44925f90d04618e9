//! What a Go process runs with: its Go version and build, its runtime settings (from the
//! environment and from the runtime itself), its cgroup limits and the host's memory knobs.

use std::collections::BTreeMap;

use crate::{
    analysis::{
        Target,
        process::{cgroup, kib_field},
    },
    report::Report,
};

/// The settings of one process; every field optional where the host or binary may not say.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Settings {
    pub go_version: String,
    /// Go minor release (27 for go1.27.3).
    pub go_minor: u32,
    /// GOMAXPROCS in effect, read from the runtime (`runtime.gomaxprocs`).
    pub gomaxprocs: Option<u32>,
    /// Online CPUs of the host.
    pub host_cpus: Option<u32>,
    /// The Go variables of the process' environment (`GOGC`, `GOMEMLIMIT`, `GOMAXPROCS`,
    /// `GODEBUG`), as set at exec.
    pub env: BTreeMap<String, String>,
    /// GOGC in effect (runtime `gcController.gcPercent`, read at the end of the window, else
    /// at the last GC cycle); -1 is off.
    pub gogc: Option<i32>,
    /// The memory limit in effect (runtime `gcController.memoryLimit`, read as `gogc`), `None`
    /// when unknown or unlimited (math.MaxInt64).
    pub gomemlimit_bytes: Option<i64>,
    pub build: Build,
    pub cgroup: Cgroup,
    pub memory: HostMemory,
}

/// Build settings from the binary's build info.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Build {
    /// `-gcflags` as given to `go build` (`all=-N -l`).
    pub gcflags: Option<String>,
    pub ldflags: Option<String>,
    pub cgo: Option<bool>,
    pub race: bool,
    pub trimpath: bool,
    pub goamd64: Option<String>,
    pub pie: bool,
    pub stripped: bool,
}

/// The process' cgroup limits.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Cgroup {
    /// CPU quota in CPUs (quota/period), the smallest along the cgroup's ancestors.
    pub cpu_quota: Option<f64>,
    /// The cgroup's CPU list and its length.
    pub cpuset: Option<String>,
    pub cpuset_cpus: Option<u32>,
    pub memory_limit_bytes: Option<u64>,
    /// Throttling counters since the cgroup was created.
    pub cpu_stat: Option<cgroup::CpuStat>,
    /// The cgroup that sets `cpu_quota` (`/gpanc`).
    pub cpu_quota_cgroup: Option<String>,
    /// Whether that is an ancestor of the process' own cgroup: Go ≥ 1.25 may not see it.
    pub cpu_quota_inherited: bool,
}

/// Swap and page settings of the host, and the process' swapped-out memory.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct HostMemory {
    pub swap_total_bytes: Option<u64>,
    pub swap_free_bytes: Option<u64>,
    /// `VmSwap` of the process.
    pub process_swap_bytes: Option<u64>,
    pub process_rss_bytes: Option<u64>,
    pub swappiness: Option<u32>,
    /// Transparent huge pages mode: the bracketed word of
    /// /sys/kernel/mm/transparent_hugepage/enabled (always, madvise, never).
    pub thp: Option<String>,
}

/// The environment variables of the Go runtime that doctor reports.
const ENV_VARS: &[&str] = &["GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG"];

impl Settings {
    /// Reads the settings of `target` (still running); `report`'s last cycle stands in for
    /// what cannot be read from it.
    pub fn read(target: &Target, report: &Report) -> Self {
        let pid = target.process.pid;
        let info = target.build_info.as_ref();
        let setting = |k: &str| info.and_then(|i| i.setting(k)).map(str::to_owned);
        let lines = cgroup::of_process(pid);
        let cpuset = cgroup::cpuset(&lines);
        let cpu_limit = cgroup::cpu_limit_where(&lines);
        let last = report.gc.cycles.iter().rev().find(|c| c.gogc.is_some());
        // NB: gcControllerState.gcPercent is an int32 and memoryLimit an int64, at offsets
        // from the target's DWARF or the per-release table (target/cycle_layout.rs).
        let controller = |offset: u32| target.vars.gc_controller.map(|a| a + u64::from(offset));
        let cycle = &target.layout.cycle;
        let gogc_now = controller(cycle.gcc_gc_percent)
            .and_then(|a| target.process.read_u32(a).ok())
            .map(|v| v as i32);
        let limit_now = controller(cycle.gcc_memory_limit).and_then(|a| {
            let mut b = [0u8; 8];
            target.process.read_memory(a, &mut b).ok()?;
            Some(i64::from_le_bytes(b))
        });
        Self {
            go_version: target.go_version.raw.clone(),
            go_minor: target.go_version.minor,
            // NB: `runtime.gomaxprocs` is an int32 (src/runtime/runtime2.go, Go 1.19–1.27).
            gomaxprocs: target
                .vars
                .gomaxprocs
                .and_then(|a| target.process.read_u32(a).ok()),
            // SAFETY: sysconf has no preconditions.
            host_cpus: u32::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).ok(),
            env: std::fs::read(format!("/proc/{pid}/environ"))
                .map(|b| go_env(&b))
                .unwrap_or_default(),
            gogc: gogc_now.or_else(|| last.and_then(|c| c.gogc)),
            gomemlimit_bytes: limit_now
                .or_else(|| last.and_then(|c| c.gomemlimit_bytes))
                .filter(|&l| l < i64::MAX),
            build: Build {
                gcflags: setting("-gcflags"),
                ldflags: setting("-ldflags"),
                cgo: info.and_then(|i| i.cgo()),
                race: setting("-race").is_some_and(|v| v == "true"),
                trimpath: setting("-trimpath").is_some_and(|v| v == "true"),
                goamd64: setting("GOAMD64"),
                pie: target.pie,
                stripped: target.stripped,
            },
            cgroup: Cgroup {
                cpu_quota: cpu_limit.as_ref().map(|l| l.cpus),
                cpuset_cpus: cpuset
                    .as_deref()
                    .and_then(|c| u32::try_from(cgroup::cpu_list_len(c)).ok()),
                cpuset,
                memory_limit_bytes: cgroup::memory_limit(&lines),
                cpu_stat: cgroup::cpu_stat(&lines),
                cpu_quota_inherited: cpu_limit.as_ref().is_some_and(|l| l.inherited),
                cpu_quota_cgroup: cpu_limit.map(|l| l.cgroup),
            },
            memory: HostMemory::read(pid),
        }
    }
}

/// The Go runtime's variables in a NUL-separated environment block.
fn go_env(block: &[u8]) -> BTreeMap<String, String> {
    block
        .split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
        .filter(|(k, _)| ENV_VARS.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl HostMemory {
    fn read(pid: u32) -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok();
        Self {
            swap_total_bytes: kib_field(&meminfo, "SwapTotal:"),
            swap_free_bytes: kib_field(&meminfo, "SwapFree:"),
            process_swap_bytes: kib_field(&status, "VmSwap:"),
            process_rss_bytes: kib_field(&status, "VmRSS:"),
            swappiness: std::fs::read_to_string("/proc/sys/vm/swappiness")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            thp: thp.as_deref().and_then(bracketed),
        }
    }
}

/// The selected word of a sysfs choice list (`always [madvise] never` → `madvise`).
fn bracketed(s: &str) -> Option<String> {
    let start = s.find('[')? + 1;
    let end = start + s[start..].find(']')?;
    Some(s[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_block() {
        let env = go_env(b"PATH=/bin\0GOGC=10\0GODEBUG=gctrace=1,madvdontneed=1\0GOGCX=1\0");
        assert_eq!(env.len(), 2);
        assert_eq!(env["GOGC"], "10");
        assert_eq!(env["GODEBUG"], "gctrace=1,madvdontneed=1");
    }

    #[test]
    fn sysfs_choices() {
        assert_eq!(
            bracketed("always [madvise] never\n").as_deref(),
            Some("madvise")
        );
        assert_eq!(bracketed("never"), None);
    }
}
