//! `goprobe attach --out-dir`: every file is written, Go's own `go tool pprof` reads every
//! profile with the right sample types and symbolized Go names and agrees with report.json, and
//! headless Chromium opens index.html and every SVG without console errors, with the known hot
//! function in the flamegraph.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use support::{attach, start_testprog};

const GO: &str = "1.27.3";

/// Runs `program` with `args` under `goprobe attach --out-dir DIR` and returns the report.
fn record(dir: &Path, program: &str, args: &[&str]) -> serde_json::Value {
    let mut prog = start_testprog(program, GO, args, &[]);
    let out = dir.display().to_string();
    let probe = attach(prog.pid(), &["--out-dir", &out, "--goroutine-sites"]);
    prog.send("start");
    let (status, _, stderr) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "{program} failed: {stderr}");
    let (status, _, gp_err) = probe.finish(Duration::from_secs(60));
    assert!(status.success(), "goprobe failed: {gp_err}");
    assert!(gp_err.contains("index.html"), "{gp_err}");
    let json = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&json).expect("report.json parses")
}

fn go_bin() -> PathBuf {
    let bins = std::env::var("GOPROBE_GO_BINS")
        .expect("GOPROBE_GO_BINS is not set: run the tests via `cargo xtask test`");
    bins.split(':')
        .filter_map(|kv| kv.split_once('='))
        .find(|(v, _)| *v == GO)
        .map(|(_, p)| PathBuf::from(p))
        .expect("Go 1.27.3 in GOPROBE_GO_BINS")
}

fn pprof(file: &Path, mode: &str) -> String {
    let out = Command::new(go_bin())
        .args(["tool", "pprof", mode])
        .arg(file)
        .output()
        .expect("run go tool pprof");
    assert!(
        out.status.success(),
        "go tool pprof {mode} {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sum of the first value column of `go tool pprof -raw` samples.
fn raw_total(raw: &str) -> i64 {
    raw.lines()
        .skip_while(|l| !l.starts_with("Samples:"))
        .skip(2)
        .take_while(|l| !l.starts_with("Locations"))
        .filter_map(|l| {
            l.split(':')
                .next()?
                .split_whitespace()
                .next()?
                .parse::<i64>()
                .ok()
        })
        .sum()
}

/// `pb`'s first sample type total (`go tool pprof -raw`) equals `want`, the folded file (the
/// default sample type) sums to `folded_want`; `-top` and `-traces` name `hot`.
fn check_profile(dir: &Path, name: &str, kind: &str, want: i64, folded_want: i64, hot: &str) {
    let pb = dir.join(format!("{name}.pb.gz"));
    let top = pprof(&pb, "-top");
    assert!(top.contains(hot), "{name}: no {hot} in -top:\n{top}");
    let traces = pprof(&pb, "-traces");
    assert!(
        traces.contains(hot),
        "{name}: no {hot} in -traces:\n{traces}"
    );
    let raw = pprof(&pb, "-raw");
    assert!(raw.contains(kind), "{name}: no sample type {kind}:\n{raw}");
    assert_eq!(raw_total(&raw), want, "{name}: pprof total vs report.json");
    let folded = std::fs::read_to_string(dir.join(format!("{name}.folded"))).expect("folded");
    let sum: i64 = folded
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<i64>().ok())
        .sum();
    assert_eq!(sum, folded_want, "{name}: folded total vs report.json");
}

#[test]
fn pprof_reads_every_profile_and_agrees_with_the_report() {
    let dir = tempdir("pprof-assist");
    let report = record(&dir, "gcstress", &["-mode=assist", "-cycles=30"]);
    for f in [
        "report.json",
        "index.html",
        "gc-pauses.svg",
        "assist.svg",
        "assist.folded",
    ] {
        assert!(dir.join(f).exists(), "{f} was not written");
    }
    let want = report["gc"]["assist"]["total_ns"]
        .as_i64()
        .expect("assist total");
    assert!(want > 0, "no assist time recorded");
    check_profile(
        &dir,
        "assist",
        "assist/nanoseconds[dflt]",
        want,
        want,
        "main.allocHeavy",
    );
    let _ = std::fs::remove_dir_all(dir);

    let dir = tempdir("pprof-signals");
    let report = record(&dir, "signals", &["-mode", "cpu", "-cpu-budget", "2s"]);
    let samples = report["cpu"]["samples"].as_i64().expect("cpu samples");
    let period = 1_000_000_000 / report["cpu"]["hz"].as_i64().expect("hz");
    check_profile(
        &dir,
        "cpu",
        "samples/count",
        samples,
        samples * period,
        "main.busyA",
    );
    let pf = &report["page_faults"];
    let faults = pf["minor"].as_i64().unwrap_or(0) + pf["major"].as_i64().unwrap_or(0);
    check_profile(
        &dir,
        "pagefaults",
        "faults/count",
        faults,
        faults,
        "main.main",
    );
    let created: i64 = report["goroutines"]["creation_sites"]
        .as_array()
        .expect("creation sites")
        .iter()
        .filter_map(|s| s["count"].as_i64())
        .sum();
    // No goroutine is created in this mode: an empty profile still reads.
    for mode in ["-top", "-traces"] {
        pprof(&dir.join("goroutines.pb.gz"), mode);
    }
    let goroutines = pprof(&dir.join("goroutines.pb.gz"), "-raw");
    assert_eq!(
        raw_total(&goroutines),
        created,
        "goroutines: pprof total vs report.json"
    );
    let _ = std::fs::remove_dir_all(dir);

    // Allocations: objects first in pprof (as Go's heap profile), bytes in the flamegraph.
    let dir = tempdir("pprof-alloc");
    let report = record(&dir, "signals", &["-mode", "alloc"]);
    let (objects, bytes) = (
        report["alloc"]["objects"].as_i64().expect("alloc objects"),
        report["alloc"]["bytes"].as_i64().expect("alloc bytes"),
    );
    assert!(bytes > 0, "no allocation recorded");
    check_profile(
        &dir,
        "alloc",
        "alloc_objects/count",
        objects,
        bytes,
        "main.allocA",
    );
    assert!(dir.join("alloc-objects.svg").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn chromium_opens_every_page_without_errors() {
    let dir = tempdir("chromium");
    record(&dir, "gcstress", &["-mode=assist", "-cycles=30"]);
    let cpu = tempdir("chromium-cpu");
    record(&cpu, "signals", &["-mode", "cpu", "-cpu-budget", "2s"]);
    for (page, needle) in [
        (dir.join("index.html"), "Stop-the-world pauses"),
        (dir.join("gc-pauses.svg"), "GC cycle"),
        (dir.join("assist.svg"), "main.allocHeavy"),
        (cpu.join("index.html"), "on-CPU time"),
        (cpu.join("cpu.svg"), "main.busyA"),
    ] {
        let path = page;
        let page = format!(
            "{}-{}",
            path.parent()
                .and_then(Path::file_name)
                .map_or("".into(), |n| n.to_string_lossy()),
            path.file_name().map_or("".into(), |n| n.to_string_lossy())
        );
        let shot = dir.join(format!("{page}.png"));
        let out = chromium(&[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1250,1000",
            &file_url(&path),
        ]);
        assert_no_console_errors(&page, &out);
        let png = std::fs::read(&shot).expect("screenshot");
        assert!(
            png.len() > 10_000,
            "{page}: screenshot is nearly empty ({} bytes)",
            png.len()
        );
        // The rendered document (after the flamegraph's script ran) names the hot function.
        let dom = chromium(&["--dump-dom", &file_url(&path)]);
        assert_no_console_errors(&page, &dom);
        let text = String::from_utf8_lossy(&dom.stdout);
        assert!(text.contains(needle), "{page}: no {needle:?} in the DOM");
    }
    if let Some(keep) = std::env::var_os("GOPROBE_KEEP_SCREENSHOTS") {
        for f in std::fs::read_dir(&dir).expect("dir").flatten() {
            if f.path().extension().is_some_and(|e| e == "png") {
                let _ = std::fs::copy(f.path(), Path::new(&keep).join(f.file_name()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(cpu);
}

fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempdir("chromium-profile");
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium (`cargo xtask setup` installs it)");
    let _ = std::fs::remove_dir_all(profile);
    assert!(out.status.success(), "chromium {args:?} failed: {out:?}");
    out
}

/// Page errors reach Chromium's log as `CONSOLE` lines (uncaught exceptions, failed loads).
fn assert_no_console_errors(page: &str, out: &std::process::Output) {
    let log = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(errors.is_empty(), "{page}: console errors: {errors:#?}");
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn tempdir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("goprobe-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
