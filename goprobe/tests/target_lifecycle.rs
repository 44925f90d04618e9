//! `goprobe attach` and the life of its target: the target exits mid-run, exec()s, forks
//! children, its pid is reused, it runs in another mount or pid namespace. Each run compares
//! what goprobe measured with what the Go runtime reports (gcstress: MemStats.PauseNs of every
//! cycle), not just that nothing crashed.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use support::{Proc, attach, cycle_pauses, goprobe, leaks, start_testprog, testprog};

const GO: &str = "1.27.3";
/// The runtime may differ from goprobe by at most this much (as in gc_pauses.rs).
const TOLERANCE_NS: i64 = 1_000;

/// The report has exactly the cycles the program's JSON (`-mode pauses`) lists, with the
/// runtime's pauses, and as many ReadMemStats stops.
fn assert_cycles_match(report: &Value, truth: &Value, what: &str) {
    let got = cycle_pauses(report);
    let (start, end) = (
        truth["numgc_start"].as_u64().unwrap(),
        truth["numgc_end"].as_u64().unwrap(),
    );
    assert!(end - start >= 10, "{what}: too few cycles: {truth}");
    let want: Vec<u64> = (start + 1..=end).collect();
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        want,
        "{what}: goprobe's cycles are not the program's"
    );
    for (cycle, pause) in &got {
        let runtime = truth["pause_ns"][cycle.to_string()].as_i64().unwrap();
        assert!(
            (pause - runtime).abs() <= TOLERANCE_NS,
            "{what}: cycle {cycle}: goprobe {pause} ns, runtime {runtime} ns"
        );
    }
    let rms = report["gc"]["other_stw"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "ReadMemStats")
        .count();
    assert_eq!(
        rms as u64,
        truth["read_mem_stats"].as_u64().unwrap(),
        "{what}"
    );
}

/// Some ReadMemStats stop names the program's own function: the binary was read and its
/// stacks symbolized (through /proc/<pid>/exe and map_files, wherever the file lives).
fn assert_symbolized(report: &Value, what: &str) {
    let named = report["gc"]["other_stw"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| support::names(&s["stack"]).contains(&"main.runPauses"));
    assert!(named, "{what}: no stack names main.runPauses: {report}");
}

/// Starts the JSON watch of `prog` (`-mode pauses` protocol), lets it run to its end and
/// returns (program JSON, report, goprobe's stderr).
fn watch_to_end(mut prog: Proc, pid: u32, what: &str) -> (Value, Value, String) {
    let probe = attach(pid, &["--json"]);
    prog.send("start");
    let (status, out, err) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "{what}: the program failed: {err}");
    let truth: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(truth["failures"], 0, "{what}: {truth}");
    let (status, out, err) = probe.finish(Duration::from_secs(60));
    assert!(status.success(), "{what}: goprobe failed: {err}");
    let report: Value = serde_json::from_str(&out).expect("report JSON");
    assert_eq!(report["target"]["pid"], pid, "{what}");
    assert_eq!(report["goprobe"]["lost_events"], 0, "{what}: {err}");
    (truth, report, err)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("goprobe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The target ends while goprobe watches: goprobe says so, ends by itself with exit 0 and writes
/// a report of every cycle up to the end.
#[test]
fn target_exits_mid_run() {
    let out_dir = scratch("exits");
    let mut prog = start_testprog("gcstress", GO, &["-mode", "pauses", "-cycles", "40"], &[]);
    let pid = prog.pid();
    let probe = attach(pid, &["--out-dir", out_dir.to_str().unwrap()]);
    prog.send("start");
    let (status, out, err) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "{err}");
    let truth: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let (status, stdout, stderr) = probe.finish(Duration::from_secs(60));
    assert!(status.success(), "goprobe exited with {status}: {stderr}");
    assert!(
        stderr.contains(&format!("pid {pid} exited")),
        "goprobe does not say the target exited: {stderr}"
    );
    assert!(stdout.contains("GC cycles:"), "no summary: {stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["target"]["pid"], pid);
    assert_cycles_match(&report, &truth, "exit");
    assert!(out_dir.join("index.html").exists());
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The target exec()s its own binary again (a re-exec restart): the same pid and file, a new
/// program. goprobe ends there with a clear message and a report of the program before the
/// exec only; the new image runs without breakpoints and computes correctly.
#[test]
fn target_execs() {
    let mut prog = start_testprog("gcstress", GO, &["-mode", "exec", "-cycles", "30"], &[]);
    let pid = prog.pid();
    let probe = attach(pid, &["--json"]);
    let ids = leaks::BpfIds::of_process(probe.pid());
    prog.send("start");
    let before: Value =
        serde_json::from_str(&prog.wait_stdout("{", Duration::from_secs(120))).unwrap();
    prog.wait_stdout("ready", Duration::from_secs(30)); // the new image
    let (status, out, err) = probe.finish(Duration::from_secs(30));
    assert!(status.success(), "goprobe exited with {status}: {err}");
    assert!(
        err.contains(&format!("pid {pid} exec()ed")),
        "goprobe does not say the target exec()ed: {err}"
    );
    let said = err
        .lines()
        .find(|l| l.contains("exec()ed"))
        .unwrap()
        .to_owned();
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_cycles_match(&report, &before, "exec");
    leaks::assert_nothing_left(&ids, pid, "after the exec");
    prog.send("start");
    let (status, out, err) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "the exec()ed program failed: {err}");
    let after: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(after["failures"], 0, "{after}");
    assert_eq!(after["pid"], pid, "{after}");
    eprintln!("exec: {said}");
}

/// The target starts child processes of the same binary (os/exec: clone, then exec) that run
/// GC cycles of their own. goprobe watches the pid it was given only (children are not
/// followed): the report has exactly the parent's cycles, and the children are unharmed.
#[test]
fn target_forks_children() {
    let prog = start_testprog(
        "gcstress",
        GO,
        &["-mode", "fork", "-cycles", "30", "-children", "4"],
        &[],
    );
    let pid = prog.pid();
    let (truth, report, _) = watch_to_end(prog, pid, "fork");
    assert_cycles_match(&report, &truth, "fork");
    let children = truth["children"].as_array().unwrap();
    assert_eq!(children.len(), 4);
    for c in children {
        assert_eq!(c["exit_code"], 0, "{c}");
        assert!(c.get("err").is_none(), "{c}");
        let r = &c["result"];
        assert_eq!(r["failures"], 0, "{c}");
        assert!(r["numgc_end"].as_u64() >= Some(r["numgc_start"].as_u64().unwrap() + 10));
        assert_ne!(r["pid"], pid);
    }
}

/// The target's binary exists only in its own mount namespace (a tmpfs mounted there): goprobe,
/// outside, reads it through /proc/<pid>/exe and measures and names everything.
#[test]
fn target_in_another_mount_namespace() {
    let dir = scratch("mntns");
    let hidden = dir.join("gcstress-in-mntns");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-ec"])
        .arg(r#"mount -t tmpfs goprobe-test "$1"; cp "$2" "$3"; exec "$3" -mode pauses -cycles 40"#)
        .args(["sh", dir.to_str().unwrap()])
        .arg(testprog("gcstress", GO))
        .arg(&hidden);
    let prog = Proc::spawn(cmd);
    prog.wait_stdout("ready", Duration::from_secs(30));
    // unshare and sh exec()ed: the pid is the program's.
    let pid = prog.pid();
    assert!(
        !hidden.exists(),
        "the binary is visible outside its namespace"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        hidden
    );
    let (truth, report, _) = watch_to_end(prog, pid, "mount namespace");
    assert_cycles_match(&report, &truth, "mount namespace");
    assert_eq!(report["target"]["exe"], hidden.to_str().unwrap());
    assert_symbolized(&report, "mount namespace");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The target is pid 1 of its own pid namespace (with its own /proc); goprobe, outside,
/// attaches by the host pid.
#[test]
fn target_in_another_pid_namespace() {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc", "--"])
        .arg(testprog("gcstress", GO))
        .args(["-mode", "pauses", "-cycles", "40"]);
    let prog = Proc::spawn(cmd);
    prog.wait_stdout("ready", Duration::from_secs(30));
    let unshare = prog.pid();
    let pid: u32 = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .expect("the program under unshare")
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.ends_with("\t1"), "not pid 1 of a namespace: {nspid}");
    let (truth, report, _) = watch_to_end(prog, pid, "pid namespace");
    assert_cycles_match(&report, &truth, "pid namespace");
    assert_eq!(report["target"]["pid"], pid);
    assert_symbolized(&report, "pid namespace");
    assert_ne!(
        truth["pid"], pid,
        "the program sees its namespace pid: {truth}"
    );
}

/// Starts `T` and `goprobe attach T` in a fresh pid namespace, kills T once goprobe watches, and
/// at once starts another process (gcstress -mode mixed) under T's pid (`ns_last_pid`), while
/// goprobe finishes its report. Prints `target=T reused_by=R goprobe_status=S`.
const REUSE_SCRIPT: &str = r#"
bin=$1 goprobe=$2 out=$3
mkfifo "$out/stdin"
"$bin" -mode churn < "$out/stdin" > /dev/null &
t=$!
exec 3> "$out/stdin"
echo start >&3
# $t is the forked shell until it has opened the fifo and exec'd the program.
for i in $(seq 200); do [ "$(readlink /proc/$t/exe)" = "$(readlink -f "$bin")" ] && break; sleep 0.05; done
"$goprobe" attach "$t" --out-dir "$out" --format json > "$out/stdout" 2> "$out/stderr" &
g=$!
for i in $(seq 600); do grep -q 'attached to pid' "$out/stderr" && break; sleep 0.1; done
sleep 1
kill -KILL "$t"
wait "$t"
echo $((t - 1)) > /proc/sys/kernel/ns_last_pid
"$bin" -mode mixed < /dev/null > /dev/null &
r=$!
wait "$g"
status=$?
wait "$r"
echo "target=$t reused_by=$r goprobe_status=$status"
"#;

/// A pid reused while goprobe still has its probes in (goprobe numbers processes in its own pid
/// namespace here, as a sidecar does, where pids are small and come back soon): goprobe ends
/// with the target, and nothing the new process does enters the report. The new process is
/// the same binary, so its startup (`runtime.schedinit`, package init), which the old target
/// left long behind before goprobe attached, would be named correctly if it were counted.
#[test]
fn reused_pid_is_not_reported_as_the_target() {
    let out_dir = scratch("reuse");
    let output = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", "--"])
        .args(["bash", "-c", REUSE_SCRIPT, "bash"])
        .arg(testprog("gcstress", GO))
        .arg(goprobe().get_program())
        .arg(&out_dir)
        .env("RUST_LOG", "goprobe=info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = std::fs::read_to_string(out_dir.join("stderr")).unwrap_or_default();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("target="))
        .unwrap_or_else(|| panic!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    let field = |name: &str| -> u32 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let pid = field("target");
    assert_eq!(field("reused_by"), pid, "the pid was not reused: {line}");
    assert_eq!(field("goprobe_status"), 0, "{stderr}");
    assert!(stderr.contains(&format!("pid {pid} exited")), "{stderr}");
    let report = std::fs::read_to_string(out_dir.join("report.json")).unwrap();
    let parsed: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(parsed["target"]["pid"], pid);
    assert!(
        parsed["page_faults"]["minor"].as_u64() > Some(0),
        "the target's own page faults are missing: {}",
        parsed["page_faults"]
    );
    for startup in ["runtime.schedinit", "runtime.mallocinit", "runtime.doInit"] {
        assert!(
            !report.contains(startup),
            "the process that reused pid {pid} is in the report ({startup}): {report}"
        );
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}
