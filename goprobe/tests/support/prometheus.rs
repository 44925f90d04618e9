//! A real Prometheus (Debian's `/usr/bin/prometheus`) scraping goprobe's `--prometheus` endpoint
//! every second, and its HTTP query API, for the tests that check what a user's Prometheus and
//! Grafana would see. HTTP is a few lines over `TcpStream`, as in `thirdparty.rs`.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use super::Proc;

const BINARY: &str = "/usr/bin/prometheus";

/// A running Prometheus with its own storage directory; killed (and the directory removed) on drop.
pub struct Prometheus {
    proc: Proc,
    addr: String,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `targets` (`host:port`, path
    /// `/metrics`) every second, and waits until it is ready. `name` keeps the storage
    /// directories of concurrent tests apart.
    pub fn start(name: &str, targets: &[&str]) -> Self {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: run `cargo xtask setup` (Debian package prometheus)"
        );
        let dir = std::env::temp_dir().join(format!("goprobe-prom-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("Prometheus temp dir");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        // scrape_timeout may not exceed scrape_interval; 1 s is plenty on loopback.
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n  - job_name: goprobe\n    static_configs: [{{targets: [{list}]}}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("Prometheus config");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(BINARY);
        cmd.current_dir(&dir)
            .arg("--config.file=prometheus.yml")
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.path=data")
            .arg("--log.level=warn");
        let prometheus = Self {
            proc: Proc::spawn(cmd),
            addr,
            dir,
        };
        prometheus.wait_ready(Duration::from_secs(60));
        prometheus
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, _)) = http_get(&self.addr, "/-/ready") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus on {} not ready within {timeout:?}",
                self.addr
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs an instant query and returns `data.result` (an array: one element per series). A
    /// query Prometheus rejects (400: bad PromQL; 422: cannot be evaluated) panics with
    /// Prometheus' error text, so that a broken dashboard query fails loudly.
    pub fn query(&self, expr: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (status, body) = http_get(&self.addr, &path)
            .unwrap_or_else(|| panic!("Prometheus on {} does not answer", self.addr));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "query {expr:?}: HTTP {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        assert!(
            status == 200 && json["status"] == "success",
            "query {expr:?}: HTTP {status}: {} {}",
            json["errorType"],
            json["error"]
        );
        json["data"]["result"].clone()
    }

    /// Polls `expr` until it returns at least one series (at most `timeout`), and returns them.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr);
            if result.as_array().is_some_and(|a| !a.is_empty()) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "no series for {expr:?} within {timeout:?}; scrape targets: {}",
                self.targets()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// The scrape targets' state (`/api/v1/targets`): health, last error; for failure messages.
    pub fn targets(&self) -> String {
        http_get(&self.addr, "/api/v1/targets")
            .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The one value of an instant-query series (`value: [time, "string"]`).
pub fn value(series: &serde_json::Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {series}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query string.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.0 GET: the status code and body, or `None` if nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = Vec::new();
    s.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]);
    // "HTTP/1.0 200 OK"
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response[split + 4..].to_vec()))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `host:port` of goprobe's Prometheus endpoint, from the line it prints on stderr:
/// `goprobe: serving Prometheus metrics on http://127.0.0.1:PORT/metrics`.
pub fn goprobe_endpoint(probe: &Proc) -> String {
    let line = probe.wait_stderr("serving Prometheus metrics on", Duration::from_secs(60));
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no http://ADDR/metrics in {line:?}"))
        .trim()
        .to_string()
}
