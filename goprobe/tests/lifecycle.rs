//! How `goprobe attach` ends: on SIGINT and SIGTERM it detaches and still writes its report.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{attach, start_testprog};

fn stops_on(signal: libc::c_int, name: &str) {
    let mut prog = start_testprog("gcstress", "1.27.3", &["-mode", "churn"], &[]);
    prog.send("start");
    let out_dir = std::env::temp_dir().join(format!("goprobe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let probe = attach(prog.pid(), &["--out-dir", out_dir.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(probe.pid() as libc::pid_t, signal) }, 0);
    let (status, stdout, stderr) = probe.finish(Duration::from_secs(30));
    assert!(
        status.success(),
        "{name}: goprobe exited with {status}: {stderr}"
    );
    assert!(
        stdout.contains("GC cycles:"),
        "{name}: no summary on stdout: {stdout}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["schema"], "goprobe.report.v2");
    assert_eq!(report["target"]["pid"], prog.pid());
    let window = &report["window"];
    let secs = (window["end_unix_ns"].as_i64().unwrap() - window["start_unix_ns"].as_i64().unwrap())
        as f64
        / 1e9;
    assert!((0.4..10.0).contains(&secs), "{name}: window of {secs} s");
    assert!(
        prog.child.try_wait().unwrap().is_none(),
        "{name}: the target died"
    );
    prog.send("stop");
    let (status, _, err) = prog.finish(Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn sigint_ends_the_watch_and_writes_the_report() {
    stops_on(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_ends_the_watch_and_writes_the_report() {
    stops_on(libc::SIGTERM, "SIGTERM");
}
