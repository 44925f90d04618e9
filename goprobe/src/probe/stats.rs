//! What goprobe's BPF programs cost inside the target: the kernel's own run count and run time
//! per program (`bpf_prog_info.run_cnt` / `run_time_ns`).
//!
//! NB: the kernel counts only while BPF run-time statistics are on: `kernel.bpf_stats_enabled`
//! = 1, or any process holding a `BPF_ENABLE_STATS` file descriptor (Linux 5.8,
//! kernel/bpf/syscall.c `bpf_enable_runtime_stats`). Otherwise both numbers stay 0.

use std::os::fd::OwnedFd;

use aya::sys::{Stats, enable_stats};
use tracing::debug;

use super::Probes;

/// Why BPF run-time statistics could not be turned on.
#[derive(Debug, thiserror::Error)]
#[error(
    "turning on BPF run-time statistics (BPF_ENABLE_STATS needs Linux 5.8 and CAP_SYS_ADMIN; \
     `sysctl kernel.bpf_stats_enabled=1` is the other way)"
)]
pub struct StatsError(#[source] aya::sys::SyscallError);

/// BPF run-time statistics, on for every program on the host while this lives.
pub struct StatsGuard {
    _fd: OwnedFd,
}

impl StatsGuard {
    /// Turns BPF run-time statistics on until the guard is dropped (`goprobe attach
    /// --bpf-stats`), without changing the sysctl.
    pub fn enable() -> Result<Self, StatsError> {
        let fd = enable_stats(Stats::RunTime).map_err(StatsError)?;
        Ok(Self { _fd: fd })
    }
}

impl Probes {
    /// Counters of every program goprobe loaded into the kernel: (name, runs, run time ns),
    /// sorted by name; programs never loaded (signals turned off) are left out.
    pub fn program_stats(&self) -> impl Iterator<Item = (&str, u64, u64)> {
        let mut out: Vec<(&str, u64, u64)> = self
            .ebpf
            .programs()
            .filter(|(_, p)| p.fd().is_ok())
            .filter_map(|(name, p)| match p.info() {
                Ok(info) => Some((
                    name,
                    info.run_count(),
                    u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                )),
                Err(e) => {
                    debug!(program = name, "no program info: {e}");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter()
    }
}

/// Kernel memory of every BPF map this process holds, in bytes: the sum of each map's
/// `memlock:` in `/proc/self/fdinfo/<fd>`, each map (`map_id:`) once. Read at most once a
/// second (the agent's sessions all report it).
///
/// NB: since Linux 6.4 `memlock` is the map's own account of its memory (kernel/bpf/syscall.c
/// `bpf_map_show_fdinfo` → `bpf_map_memory_usage` → `map_mem_usage`): for a hash map without
/// preallocation it follows the entries in use (kernel/bpf/hashtab.c `htab_map_mem_usage`).
pub fn map_memory_bytes() -> u64 {
    static LAST: std::sync::Mutex<Option<(std::time::Instant, u64)>> = std::sync::Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((at, bytes)) = *last
        && at.elapsed() < std::time::Duration::from_secs(1)
    {
        return bytes;
    }
    let bytes = read_map_memory();
    *last = Some((std::time::Instant::now(), bytes));
    bytes
}

fn read_map_memory() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for e in dir.filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:"))
            && seen.insert(id)
        {
            total += memlock;
        }
    }
    total
}
