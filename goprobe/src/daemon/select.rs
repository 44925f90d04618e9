//! Which processes `goprobe agent` profiles ([`Select`]), and what it knows of a process before
//! analysing its binary.

use std::{os::unix::fs::MetadataExt as _, path::PathBuf};

use super::config::{PidNamespace, Select};
use crate::analysis::process::cgroup;

/// What selection looks at.
#[derive(Clone, Debug, Default)]
pub struct Candidate {
    pub pid: u32,
    pub exe: PathBuf,
    /// Arguments joined by spaces.
    pub cmdline: String,
    /// The cgroup paths of `/proc/<pid>/cgroup`.
    pub cgroups: Vec<String>,
    /// Inode of `/proc/<pid>/ns/pid`.
    pub pid_ns: Option<u64>,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22): with the pid, names
    /// one process even when the pid is reused.
    pub start_ticks: u64,
}

impl Candidate {
    /// Reads process `pid`; `None` when it is gone or unreadable (a kernel thread has no exe).
    pub fn read(pid: u32) -> Option<Self> {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|a| !a.is_empty())
                    .map(String::from_utf8_lossy)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        Some(Self {
            pid,
            exe,
            cmdline,
            cgroups: cgroup::of_process(pid)
                .into_iter()
                .map(|l| l.path)
                .collect(),
            pid_ns: pid_ns(&format!("/proc/{pid}/ns/pid")),
            start_ticks: start_ticks(pid)?,
        })
    }
}

/// Inode of a pid namespace link.
pub fn pid_ns(path: &str) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Field 22 of `/proc/<pid>/stat`, the start time of a live process: `None` once it has
/// exited, zombie included.
///
/// NB: a zombie keeps its `/proc/<pid>/stat` (state `Z`, or `X` while it is reaped) until its
/// parent waits for it (fs/proc/array.c, `task_state_array`); it runs no code any more.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: count from the last ')'.
    let mut rest = stat[stat.rfind(')')? + 2..].split_whitespace();
    if matches!(rest.next()?, "Z" | "X") {
        return None;
    }
    rest.nth(18)?.parse().ok()
}

impl Select {
    /// Whether `c` is to be profiled; `own_ns` is goprobe's own pid namespace inode.
    pub fn matches(&self, c: &Candidate, own_ns: Option<u64>) -> bool {
        let exe = c.exe.to_string_lossy();
        let any_glob = |globs: &[String]| globs.iter().any(|g| glob(g, &exe));
        let any_sub = |subs: &[String], s: &str| subs.iter().any(|x| s.contains(x.as_str()));
        let any_cgroup = |subs: &[String]| c.cgroups.iter().any(|p| any_sub(subs, p.as_str()));
        (self.include_exe.is_empty() || any_glob(&self.include_exe))
            && !any_glob(&self.exclude_exe)
            && (self.include_cmdline.is_empty() || any_sub(&self.include_cmdline, &c.cmdline))
            && !any_sub(&self.exclude_cmdline, &c.cmdline)
            && (self.include_cgroup.is_empty() || any_cgroup(&self.include_cgroup))
            && !any_cgroup(&self.exclude_cgroup)
            && (self.pid_namespace == PidNamespace::Any || (own_ns.is_some() && c.pid_ns == own_ns))
    }
}

/// Shell-style glob: `*` any run of characters (`/` too), `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_of_live_and_exited_processes() {
        assert!(start_ticks(std::process::id()).is_some());
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not waited for yet: a zombie once it has run.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while start_ticks(pid).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(start_ticks(pid), None, "a zombie has no start time");
        child.wait().expect("wait");
    }

    #[test]
    fn globs() {
        assert!(glob("*", "/usr/bin/caddy"));
        assert!(glob("/usr/bin/*", "/usr/bin/caddy"));
        assert!(glob("*/caddy", "/usr/bin/caddy"));
        assert!(glob("/usr/bin/c?ddy", "/usr/bin/caddy"));
        assert!(glob("*bin*dd*", "/usr/bin/caddy"));
        assert!(!glob("/usr/bin/*", "/usr/local/bin/caddy"));
        assert!(!glob("*/etcd", "/usr/bin/etcdctl"));
        assert!(glob("", ""));
        assert!(!glob("", "x"));
    }

    fn candidate() -> Candidate {
        Candidate {
            pid: 7,
            exe: "/srv/app/api".into(),
            cmdline: "/srv/app/api --port 80".into(),
            cgroups: vec!["/kubepods.slice/kubepods-pod12.slice/cri-containerd-abc.scope".into()],
            pid_ns: Some(42),
            start_ticks: 1,
        }
    }

    #[test]
    fn selection() {
        let c = candidate();
        let all = Select::default();
        assert!(all.matches(&c, Some(1)));
        let s = |f: &dyn Fn(&mut Select)| {
            let mut s = Select::default();
            f(&mut s);
            s.matches(&c, Some(1))
        };
        assert!(s(&|s| s.include_exe = vec!["/srv/*".into()]));
        assert!(!s(&|s| s.include_exe = vec!["/usr/*".into()]));
        assert!(!s(&|s| s.exclude_exe = vec!["*/api".into()]));
        assert!(s(&|s| s.include_cmdline = vec!["--port 80".into()]));
        assert!(!s(&|s| s.exclude_cmdline = vec!["--port".into()]));
        assert!(s(&|s| s.include_cgroup = vec!["kubepods".into()]));
        assert!(!s(&|s| s.include_cgroup = vec!["docker".into()]));
        assert!(!s(&|s| s.exclude_cgroup = vec!["abc".into()]));
        assert!(!s(&|s| s.pid_namespace = PidNamespace::Own));
        let own = Select {
            pid_namespace: PidNamespace::Own,
            ..Select::default()
        };
        assert!(own.matches(&c, Some(42)));
        // Includes of different kinds must all match.
        assert!(!s(&|s| {
            s.include_exe = vec!["/srv/*".into()];
            s.include_cmdline = vec!["--debug".into()];
        }));
    }

    #[test]
    fn this_process() {
        let c = Candidate::read(std::process::id()).unwrap();
        assert_eq!(c.exe, std::env::current_exe().unwrap());
        assert!(c.start_ticks > 0);
        assert_eq!(c.pid_ns, pid_ns("/proc/self/ns/pid"));
    }
}
