//! What a process' cgroups say about it: its CPU quota and its container id.
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

/// The CPU quota of a process with cgroups `lines`, in CPUs: the smallest quota/period of its
/// cgroup and the cgroup's ancestors (a child cannot use more than its parent allows); `None`
/// when unlimited or unknown.
pub fn cpu_limit(lines: &[CgroupLine]) -> Option<f64> {
    cpu_limit_under(Path::new(CGROUP_ROOT), lines)
}

fn cpu_limit_under(root: &Path, lines: &[CgroupLine]) -> Option<f64> {
    // cgroup v2: `cpu.max` is "max 100000" or "<quota> <period>".
    if let Some(v2) = lines.iter().find(|l| l.controllers.is_empty()) {
        let limit = min_over_ancestors(&root.join(rel(&v2.path)), root, |dir| {
            let text = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
            let mut it = text.split_whitespace();
            let quota = it.next()?.parse::<f64>().ok()?; // "max" fails: unlimited here
            let period = it.next()?.parse::<f64>().ok()?;
            (period > 0.0).then_some(quota / period)
        });
        if limit.is_some() {
            return limit;
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
    min_over_ancestors(&mount.join(rel(&v1.path)), &mount, |dir| {
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
    })
}

fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// The smallest `limit` of `dir` and its ancestors up to `root`.
fn min_over_ancestors(
    dir: &Path,
    root: &Path,
    limit: impl Fn(&Path) -> Option<f64>,
) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut cur: Option<PathBuf> = Some(dir.to_path_buf());
    while let Some(d) = cur {
        if let Some(l) = limit(&d) {
            best = Some(best.map_or(l, |b| b.min(l)));
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
        assert_eq!(cpu_limit_under(&root, &lines), Some(1.5));
        write(&leaf.join("cpu.max"), "50000 100000\n");
        assert_eq!(cpu_limit_under(&root, &lines), Some(0.5));
        write(&leaf.join("cpu.max"), "max 100000\n");
        write(&root.join("a/cpu.max"), "max 100000\n");
        assert_eq!(cpu_limit_under(&root, &lines), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
