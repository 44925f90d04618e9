//! A CPU-limited cgroup made for one test and removed when dropped: with the v1 `cpu`
//! controller where it is mounted on its own (this CI machine), else in the v2 hierarchy.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

pub struct CpuCgroup {
    dir: PathBuf,
    v2: bool,
}

impl CpuCgroup {
    /// A new cgroup allowed `cpus` CPUs per 100 ms period.
    pub fn new(name: &str, cpus: f64) -> Self {
        let period = 100_000u64;
        let quota = (cpus * period as f64) as u64;
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let (dir, v2) = if v1.join("cpu.cfs_quota_us").exists() {
            (v1.join(name), false)
        } else {
            let root = Path::new("/sys/fs/cgroup");
            let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
                .expect("no v1 cpu controller and no cgroup v2 hierarchy");
            assert!(
                controllers.split_whitespace().any(|c| c == "cpu"),
                "cgroup v2 without the cpu controller"
            );
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu");
            (root.join(name), true)
        };
        let _ = std::fs::remove_dir(&dir); // left over by a killed run
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let g = Self { dir, v2 };
        if v2 {
            g.write("cpu.max", &format!("{quota} {period}"));
        } else {
            g.write("cpu.cfs_period_us", &period.to_string());
            g.write("cpu.cfs_quota_us", &quota.to_string());
        }
        g
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// A command that runs `program` inside this cgroup from its first instruction: a shell
    /// moves itself in, then execs the program.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(self.dir.join("cgroup.procs"))
            .arg(program);
        cmd
    }

    /// (periods, throttled periods) of the cgroup so far, as the kernel counts them.
    pub fn throttling(&self) -> (u64, u64) {
        let text = std::fs::read_to_string(self.dir.join("cpu.stat")).expect("cpu.stat");
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {k} in cpu.stat: {text}"))
        };
        (field("nr_periods "), field("nr_throttled "))
    }

    /// A cgroup inside this one with no quota of its own (removed when dropped: drop it first).
    pub fn child(&self, name: &str) -> Self {
        let dir = self.dir.join(name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Self { dir, v2: self.v2 }
    }

    /// Whether this is a v2 cgroup.
    pub fn is_v2(&self) -> bool {
        self.v2
    }
}

impl Drop for CpuCgroup {
    fn drop(&mut self) {
        // The processes are killed by their Proc guards first (declared after this one); an
        // exiting process leaves the cgroup a moment later.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}
