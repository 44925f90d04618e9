//! Shared by the root integration tests: Go test programs built by `cargo xtask test`, child
//! processes killed on drop, and running the real `goprobe` binary against them.
#![allow(dead_code)] // each test file uses a different part

pub mod agent;
pub mod cgroup;
pub mod grafana;
pub mod leaks;
pub mod otlp;
pub mod prometheus;
pub mod thirdparty;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

/// Path of a Go test program built with one Go release (`cargo xtask test` builds them).
pub fn testprog(name: &str, go: &str) -> PathBuf {
    let root = std::env::var_os("GOPROBE_TESTPROGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/testprogs"));
    let path = root.join(go).join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds the Go test programs",
        path.display()
    );
    path
}

/// Whether `raw`, a Go version as a binary carries it (`go1.19.8`), is the release a test program
/// directory is named after: `1.21.13` exactly, or `1.19`, Debian's Go 1.19 with the patch
/// release Debian picked.
pub fn is_release(raw: &str, go: &str) -> bool {
    let want = format!("go{go}");
    raw == want || (go.matches('.').count() == 1 && raw.starts_with(&format!("{want}.")))
}

/// The goprobe binary under test (`GOPROBE_BIN` to run another build, e.g. the release one).
pub fn goprobe() -> Command {
    let mut cmd = Command::new(std::env::var_os("GOPROBE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_goprobe")),
        PathBuf::from,
    ));
    cmd.env("RUST_LOG", "goprobe=info");
    cmd
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    stdout_lines: mpsc::Receiver<String>,
    stderr_lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Spawns `cmd` with piped stdio; stdout and stderr are read line by line in the background.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout_lines = lines(child.stdout.take().expect("stdout"));
        let stderr_lines = lines(child.stderr.take().expect("stderr"));
        Self {
            child,
            stdin,
            stdout_lines,
            stderr_lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for a stdout line containing `needle`.
    pub fn wait_stdout(&self, needle: &str, timeout: Duration) -> String {
        wait_line(&self.stdout_lines, needle, timeout, "stdout")
    }

    /// Waits up to `timeout` for a stderr line containing `needle`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> String {
        wait_line(&self.stderr_lines, needle, timeout, "stderr")
    }

    /// The stdout lines printed since the last read, without waiting.
    pub fn stdout_so_far(&self) -> Vec<String> {
        self.stdout_lines.try_iter().collect()
    }

    /// The stderr lines printed since the last read, without waiting.
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr_lines.try_iter().collect()
    }

    /// Writes one line to stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child stdin");
        stdin.flush().expect("flush child stdin");
    }

    /// Waits for exit (at most `timeout`), returning the status and all remaining output.
    pub fn finish(mut self, timeout: Duration) -> (std::process::ExitStatus, String, String) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pid {} did not exit in {timeout:?}",
                self.pid()
            );
            thread::sleep(Duration::from_millis(20));
        };
        let drain = |rx: &mpsc::Receiver<String>| {
            let mut s = String::new();
            while let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
                s.push_str(&l);
                s.push('\n');
            }
            s
        };
        (status, drain(&self.stdout_lines), drain(&self.stderr_lines))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, timeout: Duration, what: &str) -> String {
    let deadline = std::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no {what} line with {needle:?} within {timeout:?}; saw: {seen:#?}"),
        }
    }
}

/// The frame names of a report stack (a JSON array of strings), leaf first.
pub fn names(stack: &serde_json::Value) -> Vec<&str> {
    stack
        .as_array()
        .unwrap_or_else(|| panic!("not a stack: {stack}"))
        .iter()
        .map(|f| {
            f.as_str()
                .unwrap_or_else(|| panic!("not a frame name: {f}"))
        })
        .collect()
}

/// Runs goprobe to completion (for error cases).
pub fn goprobe_output(args: &[&str]) -> Output {
    goprobe().args(args).output().expect("run goprobe")
}

/// Starts a Go test program and waits for its "ready".
pub fn start_testprog(name: &str, go: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(testprog(name, go));
    cmd.args(args).envs(env.iter().copied());
    let p = Proc::spawn(cmd);
    p.wait_stdout("ready", Duration::from_secs(30));
    p
}

/// Starts `goprobe attach <pid> <extra>` and waits until its probes are attached.
pub fn attach(pid: u32, extra: &[&str]) -> Proc {
    let mut cmd = goprobe();
    cmd.arg("attach").arg(pid.to_string()).args(extra);
    let p = Proc::spawn(cmd);
    p.wait_stderr("attached to pid", Duration::from_secs(60));
    p
}

/// One run of a test program under `goprobe attach --json`: both outputs, checked to be whole.
pub struct Watched {
    /// The program's JSON: what the runtime (and the kernel) itself says.
    pub truth: serde_json::Value,
    /// goprobe's report.
    pub report: serde_json::Value,
    /// The program's stderr (e.g. GODEBUG=gctrace=1 lines).
    pub target_stderr: String,
    /// goprobe's stderr (its live lines and logs).
    pub goprobe_stderr: String,
}

/// Starts gcstress build `program` of Go `go` with `args` and `env`, attaches goprobe, lets the
/// program run to its end (goprobe ends with it), and checks both succeeded, the report is of
/// that Go release and nothing was lost.
pub fn watch_gcstress(
    program: &str,
    go: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Watched {
    watch(program, go, args, env, &[], timeout)
}

/// As [`watch_gcstress`], for any test program that follows the ready/start/JSON protocol
/// (gcstress, signals), with `goprobe_args` added to `goprobe attach <pid> --json`.
pub fn watch(
    program: &str,
    go: &str,
    args: &[&str],
    env: &[(&str, &str)],
    goprobe_args: &[&str],
    timeout: Duration,
) -> Watched {
    let mut prog = start_testprog(program, go, args, env);
    let mut extra = vec!["--json"];
    extra.extend_from_slice(goprobe_args);
    let probe = attach(prog.pid(), &extra);
    prog.send("start");
    let (status, out, target_stderr) = prog.finish(timeout);
    assert!(
        status.success(),
        "{program} {go} {args:?} failed: {target_stderr}"
    );
    let truth = serde_json::from_str(out.trim()).expect("test program JSON");
    let (gp_status, gp_out, goprobe_stderr) = probe.finish(Duration::from_secs(30));
    assert!(
        gp_status.success(),
        "goprobe failed on {go}: {goprobe_stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&gp_out).expect("goprobe --json output");
    assert_eq!(report["schema"], "goprobe.report.v2");
    let version = report["target"]["go_version"].as_str().unwrap_or_default();
    assert!(is_release(version, go), "{version} is not Go {go}");
    assert_eq!(report["goprobe"]["lost_events"], 0, "{goprobe_stderr}");
    Watched {
        truth,
        report,
        target_stderr,
        goprobe_stderr,
    }
}

/// Asserts goprobe failed with exactly one error line that contains every `needle`.
pub fn assert_clean_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got {:?}; stderr: {stderr}",
        out.status
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got: {stderr}");
    assert!(lines[0].starts_with("goprobe: error: "), "{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in: {stderr}");
    }
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Each GC cycle of a goprobe report: its number and the pause goprobe measured (ns).
pub fn cycle_pauses(report: &serde_json::Value) -> std::collections::BTreeMap<u64, i64> {
    report["gc"]["cycles"]
        .as_array()
        .expect("cycles")
        .iter()
        .map(|c| {
            (
                c["cycle"].as_u64().expect("cycle"),
                c["pause_ns"].as_i64().expect("pause_ns"),
            )
        })
        .collect()
}

/// A JSON count (an unsigned integer), or the test fails.
pub fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Objects of a report's `alloc` section counted under an empty stack (the stack was lost).
pub fn stackless_objects(alloc: &serde_json::Value) -> u64 {
    alloc["sites"]
        .as_array()
        .expect("alloc.sites")
        .iter()
        .filter(|s| s["stack"].as_array().is_some_and(Vec::is_empty))
        .map(|s| u(&s["objects"]))
        .sum()
}

/// The goroutines of a report's `goroutines` section summed over its creation sites.
pub fn creation_sites_total(g: &serde_json::Value) -> u64 {
    g["creation_sites"]
        .as_array()
        .expect("creation_sites")
        .iter()
        .map(|s| u(&s["count"]))
        .sum()
}
