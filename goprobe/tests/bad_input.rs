//! Bad input gets one clear line on stderr and a non-zero exit, never a panic.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::process::Command;

use support::{Proc, assert_clean_error, goprobe_output, start_testprog, testprog};

#[test]
fn pid_that_does_not_exist() {
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = (pid_max + 1).to_string();
    assert_clean_error(
        &goprobe_output(&["attach", &pid]),
        &[&format!("no process with pid {pid}")],
    );
}

#[test]
fn process_that_is_not_go() {
    let sleep = Proc::spawn({
        let mut c = Command::new("sleep");
        c.arg("60");
        c
    });
    let out = goprobe_output(&["attach", &sleep.pid().to_string()]);
    assert_clean_error(&out, &["is not a Go program", "sleep"]);
}

#[test]
fn kernel_thread() {
    // NB: pid 2 is kthreadd on every Linux since 2.6.
    assert_clean_error(
        &goprobe_output(&["attach", "2"]),
        &["pid 2 (kthreadd) is a kernel thread"],
    );
}

/// A copy of a real Go 1.27.3 program whose build info claims another Go version.
fn with_go_version(version: &str) -> std::path::PathBuf {
    let data = std::fs::read(testprog("gcstress", "1.27.3")).unwrap();
    let magic = data
        .windows(14)
        .position(|w| w == b"\xff Go buildinf:")
        .expect("buildinfo");
    let at = magic
        + data[magic..]
            .windows(8)
            .position(|w| w == b"go1.27.3")
            .expect("version");
    let mut patched = data.clone();
    patched[at..at + 8].copy_from_slice(version.as_bytes());
    let dir = std::env::temp_dir().join(format!("goprobe-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("gcstress-{version}"));
    let tmp = dir.join(format!("gcstress-{version}.tmp"));
    std::fs::write(&tmp, patched).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // NB: written by `cp`, not here: a child another test thread forks while this process has
    // the file open for writing inherits that descriptor until it execs, and executing the
    // file meanwhile fails with ETXTBSY (fs/exec.c deny_write_access). Only cp ever holds the
    // final file open for writing, and it has exited when this returns.
    let cp = Command::new("cp")
        .arg("-p")
        .arg(&tmp)
        .arg(&path)
        .status()
        .unwrap();
    assert!(cp.success(), "cp {} {}", tmp.display(), path.display());
    path
}

#[test]
fn go_versions_outside_the_supported_range() {
    // Go 1.20 is refused: no 1.20 runtime was available to verify goprobe's facts against.
    for version in ["go1.18.9", "go1.20.3", "go1.28.0"] {
        let bin = with_go_version(version);
        let prog = Proc::spawn(Command::new(&bin));
        prog.wait_stdout("ready", std::time::Duration::from_secs(30));
        let out = goprobe_output(&["attach", &prog.pid().to_string()]);
        assert_clean_error(&out, &[version, "supported: Go 1.19, 1.21 to 1.27"]);
    }
}

#[test]
fn missing_capabilities_are_named() {
    let prog = start_testprog("gcstress", "1.27.3", &[], &[]);
    let pid = prog.pid().to_string();
    let without = |caps: &str| {
        Command::new("setpriv")
            .arg(format!("--bounding-set={caps}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_goprobe"))
            .args(["attach", &pid])
            .output()
            .expect("setpriv (util-linux)")
    };
    assert_clean_error(
        &without("-bpf,-perfmon,-sys_admin"),
        &["missing capabilities: CAP_SYS_ADMIN;", "run as root"],
    );
    assert_clean_error(&without("-sys_ptrace"), &["CAP_SYS_PTRACE"]);
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = goprobe_output(&["attach", "1", "--duration", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a number of seconds"));
}

#[test]
fn upx_packed_binary_is_refused_with_the_reason() {
    let upx = std::env::var_os("GOPROBE_UPX").expect("GOPROBE_UPX: run via `cargo xtask test`");
    let dir = std::env::temp_dir().join(format!("goprobe-upx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let packed = dir.join("gcstress-upx");
    let _ = std::fs::remove_file(&packed);
    let status = Command::new(upx)
        .args(["-q", "-o"])
        .arg(&packed)
        .arg(testprog("gcstress", "1.27.3"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "upx failed");
    let prog = Proc::spawn(Command::new(&packed));
    prog.wait_stdout("ready", std::time::Duration::from_secs(30));
    let out = goprobe_output(&["attach", &prog.pid().to_string()]);
    assert_clean_error(&out, &["packed with UPX", "upx -d"]);
}
