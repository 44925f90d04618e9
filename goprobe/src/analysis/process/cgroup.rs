//! What a process' cgroups say about it: its CPU quota, throttling, cpuset and memory limit,
//! and its container id.
//!
//! Paths in `/proc/<pid>/cgroup` are relative to the reader's cgroup namespace root; goprobe runs
//! in the host's (it needs CAP_SYS_ADMIN or CAP_BPF + CAP_PERFMON there), so they are found under
//! `/sys/fs/cgroup`.

use std::path::{Path, PathBuf};

/// Where cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    /// Comma-separated v1 controllers; empty for the v2 unified hierarchy (`0::/path`).
    pub controllers: String,
    pub path: String,
}

/// The lines of a `/proc/<pid>/cgroup` file.
pub fn parse(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?.to_owned();
            let path = parts.next()?.to_owned();
            Some(CgroupLine { controllers, path })
        })
        .collect()
}

/// The cgroups of process `pid`; empty when they cannot be read.
pub fn of_process(pid: u32) -> Vec<CgroupLine> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The tightest CPU quota on a process' cgroup path.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuLimit {
    /// quota/period, in CPUs.
    pub cpus: f64,
    /// The cgroup that sets it, as `/proc/<pid>/cgroup` names cgroups (`/gpanc`).
    pub cgroup: String,
    /// Whether that is an ancestor of the process' own cgroup, not the cgroup itself.
    pub inherited: bool,
}

/// The CPU quota of a process with cgroups `lines`, in CPUs: the smallest quota/period of its
/// cgroup and the cgroup's ancestors (a child cannot use more than its parent allows); `None`
/// when unlimited or unknown.
pub fn cpu_limit(lines: &[CgroupLine]) -> Option<f64> {
    cpu_limit_where(lines).map(|l| l.cpus)
}

/// [`cpu_limit`] and the cgroup that sets it.
pub fn cpu_limit_where(lines: &[CgroupLine]) -> Option<CpuLimit> {
    cpu_limit_under(Path::new(CGROUP_ROOT), lines)
}

fn cpu_limit_under(root: &Path, lines: &[CgroupLine]) -> Option<CpuLimit> {
    // cgroup v2: `cpu.max` is "max 100000" or "<quota> <period>".
    if let Some(v2) = lines.iter().find(|l| l.controllers.is_empty()) {
        let limit = min_over_ancestors(&root.join(rel(&v2.path)), root, |dir| {
            let text = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
            let mut it = text.split_whitespace();
            let quota = it.next()?.parse::<f64>().ok()?; // "max" fails: unlimited here
            let period = it.next()?.parse::<f64>().ok()?;
            (period > 0.0).then_some(quota / period)
        });
        if let Some((cpus, dir)) = limit {
            return Some(limit_at(cpus, &dir, root, &v2.path));
        }
    }
    // cgroup v1: `cpu.cfs_quota_us` (-1 when unlimited) / `cpu.cfs_period_us` in the `cpu`
    // controller's hierarchy, mounted as `cpu,cpuacct` or `cpu`.
    let v1 = lines
        .iter()
        .find(|l| l.controllers.split(',').any(|c| c == "cpu"))?;
    let mount = ["cpu,cpuacct", "cpu", "cpuacct,cpu"]
        .iter()
        .map(|m| root.join(m))
        .find(|p| p.is_dir())?;
    let (cpus, dir) = min_over_ancestors(&mount.join(rel(&v1.path)), &mount, |dir| {
        let read = |f: &str| -> Option<f64> {
            std::fs::read_to_string(dir.join(f))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let quota = read("cpu.cfs_quota_us")?;
        let period = read("cpu.cfs_period_us")?;
        (quota > 0.0 && period > 0.0).then_some(quota / period)
    })?;
    Some(limit_at(cpus, &dir, &mount, &v1.path))
}

/// A [`CpuLimit`] of `cpus` set in directory `dir` of the hierarchy mounted at `root`, for a
/// process in cgroup `own`.
fn limit_at(cpus: f64, dir: &Path, root: &Path, own: &str) -> CpuLimit {
    let cgroup = format!(
        "/{}",
        dir.strip_prefix(root).unwrap_or(dir).to_string_lossy()
    );
    let inherited = cgroup.trim_end_matches('/') != own.trim_end_matches('/');
    CpuLimit {
        cpus,
        cgroup,
        inherited,
    }
}

/// CPU throttling counters of a cgroup (`cpu.stat`): how many CFS periods it was runnable in and
/// in how many of them it used up its quota and was stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CpuStat {
    pub nr_periods: u64,
    pub nr_throttled: u64,
    /// Total time throttled, ns.
    pub throttled_ns: u64,
}

/// The `cpu.stat` of the process' own cgroup (v2 unified, else the v1 `cpu` controller's).
pub fn cpu_stat(lines: &[CgroupLine]) -> Option<CpuStat> {
    cpu_stat_under(Path::new(CGROUP_ROOT), lines)
}

fn cpu_stat_under(root: &Path, lines: &[CgroupLine]) -> Option<CpuStat> {
    let text = read_own(root, lines, "cpu", "cpu.stat", "cpu.stat")?;
    let mut stat = CpuStat::default();
    let mut seen = false;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) else {
            continue;
        };
        match k {
            "nr_periods" => (stat.nr_periods, seen) = (v, true),
            "nr_throttled" => stat.nr_throttled = v,
            // NB: v1 reports ns (kernel/sched/core.c cpu_cfs_stat_show), v2 µs
            // (cpu_extra_stat_show).
            "throttled_time" => stat.throttled_ns = v,
            "throttled_usec" => stat.throttled_ns = v.saturating_mul(1000),
            _ => {}
        }
    }
    seen.then_some(stat)
}

/// The CPUs the process' cgroup may run on (`cpuset.cpus.effective` in v2,
/// `cpuset.effective_cpus` in v1), as the kernel writes the list (`0-3,6`).
pub fn cpuset(lines: &[CgroupLine]) -> Option<String> {
    let root = Path::new(CGROUP_ROOT);
    read_own(
        root,
        lines,
        "cpuset",
        "cpuset.cpus.effective",
        "cpuset.effective_cpus",
    )
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
}

/// The number of CPUs in a kernel CPU list (`0-3,6` → 5).
pub fn cpu_list_len(list: &str) -> usize {
    list.split(',')
        .filter_map(|r| match r.trim().split_once('-') {
            Some((a, b)) => Some(b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?),
            None => r.trim().parse::<usize>().ok().map(|_| 1),
        })
        .sum()
}

/// The memory limit of the process' cgroup in bytes (`memory.max` in v2,
/// `memory.limit_in_bytes` in v1); `None` when unlimited or unknown.
pub fn memory_limit(lines: &[CgroupLine]) -> Option<u64> {
    memory_limit_under(Path::new(CGROUP_ROOT), lines)
}

fn memory_limit_under(root: &Path, lines: &[CgroupLine]) -> Option<u64> {
    let text = read_own(root, lines, "memory", "memory.max", "memory.limit_in_bytes")?;
    // NB: v1 writes "unlimited" as PAGE_COUNTER_MAX pages (0x7ffffffffffff000 on x86-64,
    // mm/memcontrol.c); v2 writes "max".
    text.trim().parse::<u64>().ok().filter(|&v| v < 1 << 62)
}

/// Reads `v2_file` in the process' v2 cgroup, else `v1_file` in its cgroup of v1 `controller`.
fn read_own(
    root: &Path,
    lines: &[CgroupLine],
    controller: &str,
    v2_file: &str,
    v1_file: &str,
) -> Option<String> {
    if let Some(v2) = lines.iter().find(|l| l.controllers.is_empty())
        && let Ok(text) = std::fs::read_to_string(root.join(rel(&v2.path)).join(v2_file))
    {
        return Some(text);
    }
    let v1 = lines
        .iter()
        .find(|l| l.controllers.split(',').any(|c| c == controller))?;
    let mount = [v1.controllers.as_str(), controller]
        .iter()
        .map(|m| root.join(m))
        .find(|p| p.is_dir())?;
    std::fs::read_to_string(mount.join(rel(&v1.path)).join(v1_file)).ok()
}

fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// The smallest `limit` of `dir` and its ancestors up to `root`, and the directory it is set in
/// (the deepest one on a tie: the process' own cgroup when it sets as tight a limit).
fn min_over_ancestors(
    dir: &Path,
    root: &Path,
    limit: impl Fn(&Path) -> Option<f64>,
) -> Option<(f64, PathBuf)> {
    let mut best: Option<(f64, PathBuf)> = None;
    let mut cur: Option<PathBuf> = Some(dir.to_path_buf());
    while let Some(d) = cur {
        if let Some(l) = limit(&d)
            && best.as_ref().is_none_or(|(b, _)| l < *b)
        {
            best = Some((l, d.clone()));
        }
        if d == root {
            break;
        }
        cur = d
            .parent()
            .filter(|p| p.starts_with(root))
            .map(Path::to_path_buf);
    }
    best
}

/// The container id in cgroups `lines`: a 64-hex-digit path component, as Docker, containerd,
/// CRI-O and Podman name their cgroups (`/docker/<id>`, `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`).
pub fn container_id(lines: &[CgroupLine]) -> Option<String> {
    lines
        .iter()
        .flat_map(|l| l.path.rsplit('/'))
        .find_map(|component| {
            let c = component.strip_suffix(".scope").unwrap_or(component);
            let id = c.rsplit(['-', ':']).next().unwrap_or(c);
            (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| id.to_ascii_lowercase())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1e6b7a9c0d2e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f";

    #[test]
    fn container_ids_of_common_runtimes() {
        for path in [
            format!("/docker/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/kubepods.slice/kubepods-burstable.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods/besteffort/pod1234/crio-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
        ] {
            let lines = parse(&format!("0::{path}\n"));
            assert_eq!(container_id(&lines).as_deref(), Some(ID), "{path}");
        }
        assert_eq!(
            container_id(&parse("0::/user.slice/session-3.scope\n")),
            None
        );
    }

    #[test]
    fn v2_quota_is_the_smallest_of_the_ancestors() {
        let root = std::env::temp_dir().join(format!("goprobe-cgroup-test-{}", std::process::id()));
        let leaf = root.join("a/b");
        std::fs::create_dir_all(&leaf).unwrap_or_else(|e| panic!("{e}"));
        let write = |p: &Path, s: &str| std::fs::write(p, s).unwrap_or_else(|e| panic!("{e}"));
        write(&root.join("a/cpu.max"), "150000 100000\n");
        write(&leaf.join("cpu.max"), "max 100000\n");
        let lines = parse("0::/a/b\n");
        let limit = |cpus: f64, cgroup: &str, inherited| CpuLimit {
            cpus,
            cgroup: cgroup.into(),
            inherited,
        };
        assert_eq!(cpu_limit_under(&root, &lines), Some(limit(1.5, "/a", true)));
        write(&leaf.join("cpu.max"), "50000 100000\n");
        assert_eq!(
            cpu_limit_under(&root, &lines),
            Some(limit(0.5, "/a/b", false))
        );
        // As tight as the parent's: the process' own cgroup sets it.
        write(&leaf.join("cpu.max"), "150000 100000\n");
        assert_eq!(
            cpu_limit_under(&root, &lines),
            Some(limit(1.5, "/a/b", false))
        );
        write(&leaf.join("cpu.max"), "max 100000\n");
        write(&root.join("a/cpu.max"), "max 100000\n");
        assert_eq!(cpu_limit_under(&root, &lines), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn throttling_cpuset_and_memory_in_v1_and_v2() {
        let root = std::env::temp_dir().join(format!("goprobe-cgroup-stat-{}", std::process::id()));
        let write = |p: PathBuf, s: &str| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(p, s).unwrap_or_else(|e| panic!("{e}"));
        };
        // v2: throttled in µs, memory.max.
        write(
            root.join("v2/app/cpu.stat"),
            "usage_usec 9\nnr_periods 40\nnr_throttled 10\nthrottled_usec 2500\n",
        );
        write(root.join("v2/app/memory.max"), "268435456\n");
        let v2 = parse("0::/app\n");
        let v2_root = root.join("v2");
        let want = CpuStat {
            nr_periods: 40,
            nr_throttled: 10,
            throttled_ns: 2_500_000,
        };
        assert_eq!(cpu_stat_under(&v2_root, &v2), Some(want));
        assert_eq!(memory_limit_under(&v2_root, &v2), Some(256 << 20));
        write(root.join("v2/app/memory.max"), "max\n");
        assert_eq!(memory_limit_under(&v2_root, &v2), None);
        // v1: cpu mounted alone, throttled in ns; "unlimited" memory is a huge number.
        write(
            root.join("v1/cpu/app/cpu.stat"),
            "nr_periods 7\nnr_throttled 3\nthrottled_time 123\n",
        );
        write(
            root.join("v1/memory/app/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        let v1 = parse("4:memory:/app\n1:cpu:/app\n0::/\n");
        let v1_root = root.join("v1");
        assert_eq!(
            cpu_stat_under(&v1_root, &v1),
            Some(CpuStat {
                nr_periods: 7,
                nr_throttled: 3,
                throttled_ns: 123
            })
        );
        assert_eq!(memory_limit_under(&v1_root, &v1), None);
        assert_eq!(cpu_stat_under(&v1_root, &parse("1:cpu:/other\n")), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list_len("0-3,6"), 5);
        assert_eq!(cpu_list_len("0"), 1);
        assert_eq!(cpu_list_len(""), 0);
    }
}
