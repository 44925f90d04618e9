//! `goprobe ps` finds Go processes and describes their binaries as the Go toolchain does:
//! checked against `go version -m` (Go version, CGO_ENABLED) and `readelf` (symbol table, ELF
//! type) on our test programs and on real third-party programs.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{path::Path, process::Command};

use support::{goprobe_output, start_testprog, thirdparty};

/// What the Go toolchain and binutils say about a binary.
#[derive(Debug)]
struct Truth {
    go_version: Option<String>,
    cgo: Option<bool>,
    stripped: bool,
    pie: bool,
}

fn truth(exe: &Path) -> Truth {
    let go = support::testprog("gcstress", "1.27.3")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("../go/1.27.3/bin/go");
    let out = Command::new(&go)
        .arg("version")
        .arg("-m")
        .arg(exe)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let go_version = out.status.success().then(|| {
        text.lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    });
    let cgo = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("build\tCGO_ENABLED="))
        .map(|v| v == "1");
    let readelf = |flag: &str| {
        let o = Command::new("readelf")
            .arg(flag)
            .arg("-W")
            .arg(exe)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    Truth {
        go_version,
        cgo,
        stripped: !readelf("-S").contains(".symtab"),
        pie: readelf("-h").contains("DYN ("),
    }
}

fn ps() -> Vec<serde_json::Value> {
    let out = goprobe_output(&["ps", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check(listed: &[serde_json::Value], pid: u32, exe: &Path) -> serde_json::Value {
    let entry = listed
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} ({}) not listed: {listed:#?}", exe.display()))
        .clone();
    let t = truth(exe);
    eprintln!("{}: goprobe {entry} / truth {t:?}", exe.display());
    assert_eq!(entry["stripped"], t.stripped, "{}", exe.display());
    assert_eq!(entry["pie"], t.pie, "{}", exe.display());
    match t.go_version {
        Some(v) => {
            assert_eq!(entry["go_version"], v.as_str(), "{}", exe.display());
            assert_eq!(entry["version_source"], "buildinfo");
            assert_eq!(entry["cgo"], serde_json::json!(t.cgo), "{}", exe.display());
        }
        // No build info (esbuild): the version is the runtime's own version string.
        None => {
            assert_eq!(entry["version_source"], "inferred", "{}", exe.display());
            let v = entry["go_version"].as_str().unwrap();
            assert!(v.starts_with("go1.") && v[4..].split('.').all(|n| n.parse::<u32>().is_ok()));
        }
    }
    entry
}

#[test]
fn lists_our_go_programs() {
    let progs: Vec<_> = ["1.19", "1.21.13", "1.27.3"]
        .iter()
        .map(|v| {
            (
                start_testprog("gcstress", v, &[], &[]),
                support::testprog("gcstress", v),
            )
        })
        .collect();
    let race = start_testprog("gcstress-race", "1.27.3", &[], &[]);
    let sleep = support::Proc::spawn({
        let mut c = Command::new("sleep");
        c.arg("60");
        c
    });
    let listed = ps();
    for (p, exe) in &progs {
        check(&listed, p.pid(), exe);
    }
    let r = check(
        &listed,
        race.pid(),
        &support::testprog("gcstress-race", "1.27.3"),
    );
    assert_eq!(r["cgo"], true);
    assert!(
        !listed.iter().any(|p| p["pid"] == sleep.pid()),
        "a non-Go process was listed"
    );
}

#[test]
fn identifies_real_third_party_programs() {
    let dir = std::env::temp_dir().join(format!("goprobe-ps-{}", std::process::id()));
    let running: Vec<_> = thirdparty::ALL
        .iter()
        .map(|p| (p.path(), p.start(&dir.join(format!("{p:?}")))))
        .collect();
    let listed = ps();
    for (exe, r) in &running {
        let e = check(&listed, r.proc.pid(), exe);
        assert_eq!(e["stripped"], true, "{}", exe.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
