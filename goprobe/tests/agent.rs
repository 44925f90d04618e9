//! `goprobe agent` against real Go programs of five Go releases that start, exec, restart and
//! exit while it runs: it attaches within a second, exports each one's GC metrics under its
//! own resource, shares the probes of one binary, and leaves nothing attached behind.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use support::{
    Proc,
    agent::{Agent, field, sum},
    testprog,
};

const LONG: Duration = Duration::from_secs(60);

/// A config that selects the demo programs started by test `name` only (the tests of this file
/// run at the same time; each marks its programs with an argument the demo ignores and keeps
/// across its exec).
fn config(name: &str, extra: &str) -> PathBuf {
    let root = testprog("demo", "1.27.3");
    let root = root.parent().unwrap().parent().unwrap();
    let path = std::env::temp_dir().join(format!("goprobe-{name}-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "[select]\ninclude_exe = [\"{}/*/demo\"]\ninclude_cmdline = [\"{}\"]\n{extra}",
            root.display(),
            marker(name)
        ),
    )
    .unwrap();
    path
}

fn marker(test: &str) -> String {
    format!("--goprobe-test={test}-{}", std::process::id())
}

fn demo(test: &str, go: &str, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(testprog("demo", go));
    cmd.arg(marker(test));
    // One worker with a pause per request: ~15% of a CPU each, a few GC cycles a second.
    cmd.env("DEMO_PRINT_GC", "1")
        .env("DEMO_WORKERS", "1")
        .env("DEMO_SLEEP_US", "500")
        .envs(env.iter().copied());
    let p = Proc::spawn(cmd);
    p.wait_stdout("demo service running", LONG);
    // The programs start at different times, as services do.
    std::thread::sleep(Duration::from_millis(400));
    p
}

/// The runtime's own GC count: the last `numgc N` line the demo printed so far.
fn numgc(p: &Proc, last: &mut u64) -> u64 {
    for l in p.stdout_so_far() {
        if let Some(n) = l.strip_prefix("numgc ").and_then(|n| n.parse().ok()) {
            *last = n;
        }
    }
    *last
}

#[test]
fn follows_programs_through_start_exec_restart_and_exit() {
    let pprof_dir = std::env::temp_dir().join(format!("goprobe-pprof-{}", std::process::id()));
    let cfg = config(
        "lifecycle",
        &format!(
            "[signals]\ngoroutine_sites = true\n[export]\npprof_dir = \"{}\"\npprof_interval_s = 2\n",
            pprof_dir.display()
        ),
    );
    let mut agent = Agent::start(&cfg);
    let (status, _) = agent.get("/readyz");
    assert_eq!(status, 200);
    assert_eq!(agent.get("/healthz").0, 200);
    // The lifecycle tracepoints' own descriptors, with no process attached.
    let baseline = agent.probe_fds();
    assert!(baseline >= 2, "tracepoints not attached: {baseline}");

    let a = demo(
        "lifecycle",
        "1.19",
        &[
            ("POD_NAME", "api-7d9f"),
            ("POD_NAMESPACE", "shop"),
            ("OTEL_SERVICE_NAME", "orders"),
        ],
    );
    let mut b = demo("lifecycle", "1.21.13", &[]);
    let exec_into = testprog("demo", "1.25.5");
    let c = demo(
        "lifecycle",
        "1.23.9",
        &[
            ("DEMO_EXEC", exec_into.to_str().unwrap()),
            ("DEMO_EXEC_AFTER_MS", "1500"),
        ],
    );
    let short = demo("lifecycle", "1.27.3", &[("DEMO_EXIT_AFTER_MS", "300")]);
    let short_pid = short.pid();
    let e1 = demo("lifecycle", "1.27.3", &[]);
    let e2 = demo("lifecycle", "1.27.3", &[]);

    let mut latencies = Vec::new();
    for p in [&a, &b, &c, &e1, &e2] {
        let line = agent.attached(p.pid(), LONG);
        let ms = field(&line, "since_exec_ms").unwrap_or_else(|| panic!("{line}"));
        assert!(ms < 1000.0, "attached {ms} ms after exec: {line}");
        latencies.push(ms);
    }
    // Two processes of one binary share its uprobes: the second adds none.
    let uprobes = |l: &str| field(l, "uprobes").unwrap();
    let (l1, l2) = (
        agent.attached(e1.pid(), LONG),
        agent.attached(e2.pid(), LONG),
    );
    assert_eq!(uprobes(&l1), uprobes(&l2), "{l1}\n{l2}");

    // c exec'd into Go 1.25.5: same pid, a new program, attached again.
    let exec_line = agent.wait(LONG, |l| {
        l.contains(&format!("fleet: attached pid={} ", c.pid())) && l.contains("1.25.5/demo")
    });
    let ms = field(&exec_line, "since_exec_ms").unwrap();
    assert!(ms < 1000.0, "{exec_line}");
    latencies.push(ms);
    // The 300 ms program: profiled then detached, or skipped as gone; never left attached.
    let short_end = agent.wait(LONG, |l| {
        l.contains(&format!("fleet: detached pid={short_pid} "))
            || l.contains(&format!("not profiled pid={short_pid} "))
    });
    assert!(
        short_end.contains("detached") || short_end.contains("exited before attach"),
        "{short_end}"
    );

    // b restarts: the old pid goes, the new one comes.
    let old_b = b.pid();
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    agent.wait(LONG, |l| {
        l.contains(&format!("fleet: detached pid={old_b} "))
    });
    let b2 = demo("lifecycle", "1.21.13", &[]);
    let line = agent.attached(b2.pid(), LONG);
    latencies.push(field(&line, "since_exec_ms").unwrap());

    // Let every program run a few GC cycles under the probes.
    std::thread::sleep(Duration::from_secs(4));
    let (status, metrics) = agent.get("/metrics");
    assert_eq!(status, 200);
    let mut last = [0u64; 4];
    for (i, p) in [&a, &b2, &e1, &e2].into_iter().enumerate() {
        let pid = p.pid().to_string();
        let cycles = sum(
            &metrics,
            "go_memory_gc_cycles_total",
            &[("process_pid", &pid)],
        )
        .unwrap_or_else(|| panic!("no GC cycles for pid {pid}:\n{metrics}"));
        let pauses = sum(
            &metrics,
            "goprobe_gc_pause_duration_seconds_count",
            &[("process_pid", &pid)],
        )
        .unwrap_or(0.0);
        // The runtime counted at least these (it also counted those before the attach).
        std::thread::sleep(Duration::from_millis(1100));
        let runtime = numgc(p, &mut last[i]);
        assert!(
            cycles >= 1.0 && cycles <= runtime as f64,
            "pid {pid}: goprobe {cycles} cycles, runtime {runtime}"
        );
        assert!(
            pauses >= 2.0 * cycles - 2.0,
            "pid {pid}: {pauses} pauses, {cycles} cycles"
        );
    }
    // Profiles written for each process: gzipped pprof per signal.
    let files: Vec<String> = std::fs::read_dir(&pprof_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for signal in ["alloc", "goroutines"] {
        let name = format!("demo-{}-{signal}-", e1.pid());
        let file = files
            .iter()
            .find(|f| f.starts_with(&name) && f.ends_with(".pb.gz"))
            .unwrap_or_else(|| panic!("no {name}*.pb.gz in {files:?}"));
        let bytes = std::fs::read(pprof_dir.join(file)).unwrap();
        assert_eq!(bytes[..2], [0x1f, 0x8b], "{file} is not gzip");
    }
    let _ = std::fs::remove_dir_all(&pprof_dir);
    // Resource attributes: the pod's downward-API variables and the process' service name.
    let a_pid = a.pid().to_string();
    for (k, v) in [
        ("service_name", "orders"),
        ("k8s_pod_name", "api-7d9f"),
        ("k8s_namespace_name", "shop"),
    ] {
        assert!(
            sum(
                &metrics,
                "go_memory_gc_cycles_total",
                &[("process_pid", &a_pid), (k, v)]
            )
            .is_some(),
            "no {k}={v} on pid {a_pid}"
        );
    }
    // After the exec, c's resource is the new program's.
    let c_pid = c.pid().to_string();
    let info = metrics
        .lines()
        .find(|l| l.starts_with("target_info") && l.contains(&format!("process_pid=\"{c_pid}\"")))
        .unwrap_or_else(|| panic!("no target_info for {c_pid}"));
    assert!(
        info.contains("process_runtime_version=\"go1.25.5\""),
        "{info}"
    );
    // The old b is gone from the endpoint.
    assert!(!metrics.contains(&format!("process_pid=\"{old_b}\"")));

    // Everything exits: every process is detached and no probe is left.
    let pids: Vec<u32> = [&a, &b2, &c, &e1, &e2].iter().map(|p| p.pid()).collect();
    drop((a, b, b2, c, e1, e2, short));
    for pid in pids {
        agent.wait(LONG, |l| l.contains(&format!("fleet: detached pid={pid} ")));
    }
    let last_detach = agent
        .log
        .iter()
        .rev()
        .find(|l| l.contains("fleet: detached pid="))
        .unwrap()
        .clone();
    assert_eq!(field(&last_detach, "remaining"), Some(0.0), "{last_detach}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.probe_fds() != baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(agent.probe_fds(), baseline, "probes left behind");

    // GOPROBE_TEST_AGENT_LOG_FILE keeps the agent's log (with GOPROBE_TEST_AGENT_LOG=debug).
    if let Ok(path) = std::env::var("GOPROBE_TEST_AGENT_LOG_FILE") {
        std::fs::write(path, agent.log.join("\n")).unwrap();
    }
    // SIGTERM: a clean exit.
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(agent.proc.pid() as i32, libc::SIGTERM) };
    let (status, _, err) = agent.proc.finish(LONG);
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("everything detached"), "{err}");
    eprintln!("attach latency after exec (ms): {latencies:?}");
    let _ = std::fs::remove_file(cfg);
}

/// The pid in its own namespace of host process `pid` (the last `NSpid` of its status).
fn ns_pid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    line.split_whitespace().last().unwrap().parse().unwrap()
}

/// A sidecar sharing its pod's process namespace: the agent runs in a pid namespace of its own
/// (with `pid_namespace = "own"`), sees the programs started in it under their namespace pids,
/// and ignores a program of the same binary outside, whose probes fire all the same.
#[test]
fn sidecar_in_its_own_pid_namespace() {
    let cfg = config("pidns", "pid_namespace = \"own\"\n");
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_goprobe"));
    let mut agent = Agent::start_with(cmd, &cfg, &[]);
    // The goprobe process inside: the child of unshare.
    let unshare = agent.proc.pid();
    let inner: u32 = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .expect("goprobe under unshare")
        .parse()
        .unwrap();
    let outside = demo("pidns", "1.27.3", &[]);
    let mut enter = Command::new("nsenter");
    enter
        .args(["--target", &inner.to_string(), "--pid", "--mount", "--"])
        .arg(testprog("demo", "1.27.3"))
        .arg(marker("pidns"))
        .env("DEMO_PRINT_GC", "1")
        .env("DEMO_WORKERS", "1")
        .env("DEMO_SLEEP_US", "500");
    let inside = Proc::spawn(enter);
    inside.wait_stdout("demo service running", LONG);
    // nsenter forks the program into the namespace: its host pid is nsenter's child.
    let host_pid: u32 =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", inside.pid()))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
    let pid = ns_pid(host_pid);
    assert_ne!(pid, host_pid, "not in a pid namespace");
    agent.attached(pid, LONG);
    std::thread::sleep(Duration::from_secs(4));
    let (_, metrics) = agent.get("/metrics");
    let cycles = sum(
        &metrics,
        "go_memory_gc_cycles_total",
        &[("process_pid", &pid.to_string())],
    )
    .unwrap_or_else(|| panic!("no cycles for namespace pid {pid}:\n{metrics}"));
    std::thread::sleep(Duration::from_millis(1100));
    let runtime = numgc(&inside, &mut 0);
    // Only its own cycles: the program outside runs the same probes and is not counted.
    assert!(
        cycles >= 1.0 && cycles <= runtime as f64,
        "goprobe {cycles} cycles, runtime {runtime}"
    );
    assert!(!metrics.contains(&format!("process_pid=\"{}\"", outside.pid())));
    let attached = agent
        .log
        .iter()
        .filter(|l| l.contains("fleet: attached"))
        .count();
    assert_eq!(attached, 1, "{:#?}", agent.log);
    drop((inside, outside));
    let _ = std::fs::remove_file(cfg);
}

/// The capabilities the systemd unit grants (`AmbientCapabilities=`), lower case without
/// `CAP_`, as setpriv names them.
fn documented_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/goprobe-agent.service"),
    )
    .unwrap();
    unit.lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// Not root: user nobody with exactly the documented capabilities (ambient, bounding set
/// reduced to them), as the systemd unit runs it.
#[test]
fn runs_as_nobody_with_the_documented_capabilities() {
    let caps = documented_capabilities();
    assert_eq!(caps, ["sys_admin", "sys_ptrace", "dac_read_search"]);
    let list = caps
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let cfg = config("nobody", "");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps=-all,{list}"))
        .arg(format!("--ambient-caps=-all,{list}"))
        .arg(format!("--bounding-set=-all,{list}"))
        .arg("--")
        .arg(std::env::var_os("GOPROBE_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_goprobe")),
            PathBuf::from,
        ));
    let mut agent = Agent::start_with(cmd, &cfg, &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.proc.pid())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );
    let p = demo("nobody", "1.27.3", &[]);
    agent.attached(p.pid(), LONG);
    std::thread::sleep(Duration::from_secs(3));
    let (_, metrics) = agent.get("/metrics");
    assert!(
        sum(
            &metrics,
            "go_memory_gc_cycles_total",
            &[("process_pid", &p.pid().to_string())]
        )
        .is_some_and(|c| c >= 1.0),
        "{metrics}"
    );
    drop(p);
    agent.wait(LONG, |l| l.contains("remaining=0"));
    let _ = std::fs::remove_file(cfg);
}

/// `--check` says what the kernel and the process' capabilities allow, and fails without them.
#[test]
fn check_reports_features_and_missing_capabilities() {
    let out = support::goprobe_output(&["agent", "--check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "uprobe PMU",
        "raw tracepoints",
        "CAP_SYS_PTRACE",
        "BPF programs",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(line)),
            "{line}: {text}"
        );
    }
    assert!(text.contains("goprobe agent can run here"), "{text}");
    // No capabilities at all: the programs cannot load and it says which are missing.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(std::env::var_os("GOPROBE_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_goprobe")),
            PathBuf::from,
        ))
        .args(["agent", "--check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("MISSING") && l.contains("BPF programs")),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run here"));
}
