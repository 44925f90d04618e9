//! Running `goprobe agent` in tests: its log lines, its Prometheus endpoint, its file
//! descriptors.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use super::{Proc, goprobe};

/// A running agent and everything it logged so far.
pub struct Agent {
    pub proc: Proc,
    pub log: Vec<String>,
    /// host:port of its HTTP listener.
    pub addr: String,
}

impl Agent {
    /// Starts `goprobe agent --config <config> --prometheus 127.0.0.1:0` (with `extra` args) as
    /// `cmd` would run it, and waits until it is ready.
    pub fn start_with(mut cmd: Command, config: &Path, extra: &[&str]) -> Self {
        let level = std::env::var("GOPROBE_TEST_AGENT_LOG").unwrap_or_else(|_| "info".into());
        cmd.env("RUST_LOG", format!("goprobe={level}"))
            .arg("agent")
            .arg("--config")
            .arg(config)
            .args(["--prometheus", "127.0.0.1:0"])
            .args(extra);
        let mut a = Self {
            proc: Proc::spawn(cmd),
            log: Vec::new(),
            addr: String::new(),
        };
        let serving = a.wait(Duration::from_secs(60), |l| l.contains("serving http://"));
        a.addr = serving
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .expect("address")
            .to_owned();
        a.wait(Duration::from_secs(60), |l| l.contains("agent ready"));
        a
    }

    pub fn start(config: &Path) -> Self {
        Self::start_with(goprobe(), config, &[])
    }

    /// Reads log lines until one satisfies `f` (returned), failing after `timeout`.
    pub fn wait(&mut self, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            self.log.extend(self.proc.stderr_so_far());
            if let Some(l) = self.log[checked..].iter().find(|l| f(l)) {
                return l.clone();
            }
            checked = self.log.len();
            assert!(
                Instant::now() < deadline,
                "no such agent log line within {timeout:?}; the log's end:\n{}",
                self.log[self.log.len().saturating_sub(30)..].join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The "attached" log line of `pid` (the last one), waiting for it.
    pub fn attached(&mut self, pid: u32, timeout: Duration) -> String {
        let needle = format!("fleet: attached pid={pid} ");
        self.wait(timeout, |l| l.contains(&needle));
        self.log
            .iter()
            .rev()
            .find(|l| l.contains(&needle))
            .cloned()
            .expect("found")
    }

    /// `GET path` on the agent's listener: (status code, body).
    pub fn get(&self, path: &str) -> (u32, String) {
        http_get(&self.addr, path)
    }

    /// The agent's open perf event and BPF link file descriptors.
    pub fn probe_fds(&self) -> usize {
        probe_fds(self.proc.pid())
    }
}

/// A numeric field `name=value` of a log line.
pub fn field(line: &str, name: &str) -> Option<f64> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..]
        .split(|c: char| c.is_whitespace())
        .next()?
        .parse()
        .ok()
}

/// Minimal HTTP/1.0 GET.
pub fn http_get(addr: &str, path: &str) -> (u32, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read response");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Open `[perf_event]` and `bpf_link` file descriptors of process `pid`: one per attached
/// uprobe, tracepoint or perf event (aya attaches each through a perf event, and a BPF link
/// where the kernel has them).
pub fn probe_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| {
                    let t = t.to_string_lossy();
                    t.contains("[perf_event]") || t.contains("bpf_link")
                })
                .count()
        })
        .unwrap_or(0)
}

/// The value of the series of Prometheus text `metrics` named `name` whose labels contain every
/// `label="value"` of `labels`, summed.
pub fn sum(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') && !rest.starts_with(' ') {
            continue;
        }
        let (series, value) = rest.rsplit_once(' ').expect("value");
        if labels
            .iter()
            .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        {
            *total.get_or_insert(0.0) += value.parse::<f64>().expect("number");
        }
    }
    total
}
