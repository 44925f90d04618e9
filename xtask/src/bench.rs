//! `cargo xtask bench`: builds an unstripped `cmd/go` with the newest Go release (a large Go
//! binary with DWARF, for blazesym), then runs goprobe-gopclntab's comparison bench
//! (gopclntab/benches/compare.rs), which writes target/bench/results.md; then goprobe's process
//! symbolizer on a live hugo server (goprobe/examples/symbolize_bench.rs), appended to it; then
//! the cost of goprobe's perf-event signals (page faults, CPU samples) to a Go program; the
//! allocation probes' cost; the target overhead of each goprobe mode on three Go workloads
//! together with goprobe's own CPU and memory (bench_overhead.rs); and what goprobe itself costs:
//! BPF time per probe hit, attach latency, agent CPU and RSS with 1 and 50 targets
//! (bench_cost.rs).

use std::process::Command;

use anyhow::Result;

use crate::{
    bench_support::{append_results, hugo_server},
    cargo, exec, root, setup, thirdparty,
};

pub fn run() -> Result<()> {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    // GOPROBE_BENCH_ONLY=perf: only the perf-event signals' case.
    if std::env::var("GOPROBE_BENCH_ONLY").as_deref() == Ok("perf") {
        return perf_signals(&dir);
    }
    // `GOPROBE_BENCH_ONLY=alloc`: only the allocation-probe case (xtask/src/bench_alloc.rs).
    if std::env::var("GOPROBE_BENCH_ONLY").as_deref() == Ok("alloc") {
        return crate::bench_alloc::run(&dir);
    }
    // `GOPROBE_BENCH_ONLY=overhead`: only the target-overhead case (xtask/src/bench_overhead.rs).
    if std::env::var("GOPROBE_BENCH_ONLY").as_deref() == Ok("overhead") {
        return crate::bench_overhead::run(&dir);
    }
    // `GOPROBE_BENCH_ONLY=cost`: only goprobe's own cost (xtask/src/bench_cost.rs).
    if std::env::var("GOPROBE_BENCH_ONLY").as_deref() == Ok("cost") {
        return crate::bench_cost::run(&dir);
    }
    let newest = setup::GO_VERSIONS.last().copied().unwrap_or_default();
    let unstripped = dir.join("go-unstripped");
    let t = root().join("target");
    // NB: cmd/go builds offline: its dependencies are vendored in GOROOT/src/cmd/vendor.
    exec(
        Command::new(setup::go_bin(newest))
            .current_dir(&dir)
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", t.join("go-cache"))
            .env("GOPATH", t.join("gopath"))
            .args(["build", "-o"])
            .arg(&unstripped)
            .arg("cmd/go"),
    )?;
    exec(
        cargo()
            .args([
                "bench",
                "--locked",
                "-p",
                "goprobe-gopclntab",
                "--bench",
                "compare",
            ])
            .env("GOPROBE_HUGO", thirdparty::hugo())
            .env("GOPROBE_BENCH_UNSTRIPPED", &unstripped)
            .env("GOPROBE_BENCH_GO", setup::go_bin(newest))
            .env("GOPROBE_BENCH_OUT", dir.join("results.md")),
    )?;
    process_symbolizer(&dir)?;
    crate::bench_goroutines::run(&dir)?;
    perf_signals(&dir)?;
    crate::bench_alloc::run(&dir)?;
    crate::bench_overhead::run(&dir)?;
    crate::bench_cost::run(&dir)
}

/// The agent's `Symbolizer` (memo over the gopclntab) on a live hugo: what every signal pays.
fn process_symbolizer(dir: &std::path::Path) -> Result<()> {
    exec(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "goprobe",
        "--example",
        "symbolize_bench",
    ]))?;
    let mut hugo = hugo_server(dir, 19399)?;
    let out = Command::new(root().join("target/release/examples/symbolize_bench"))
        .arg(hugo.id().to_string())
        .output();
    let _ = hugo.kill();
    let _ = hugo.wait();
    let out = out?;
    anyhow::ensure!(
        out.status.success(),
        "symbolize_bench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let section = format!(
        "\n## goprobe's process symbolizer on a live hugo server\n\n\
         Cold: a new `Symbolizer`, first address (maps, build id, table). Fill: 10,000 distinct \
         pcs, first time each. Warm: the same pcs again, 100 rounds (the memo every signal \
         hits).\n\n\
         | process | cold | fill | warm | frames per round |\n|---|---|---|---|---|\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    append_results(dir, &section)
}

/// What page-fault and CPU sampling cost the target: the `signals` program's `faultbench` (1 MiB
/// mapped, every page touched, unmapped, again) and `cpubench` (a hash loop) throughput without
/// goprobe and with goprobe watching only that signal; median of alternating runs.
fn perf_signals(dir: &std::path::Path) -> Result<()> {
    let newest = setup::GO_VERSIONS.last().copied().unwrap_or_default();
    let signals = dir.join("signals");
    exec(
        Command::new(setup::go_bin(newest))
            .current_dir(root().join("tests/testprogs"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", root().join("target/go-cache"))
            .args(["build", "-o"])
            .arg(&signals)
            .arg("./signals"),
    )?;
    exec(cargo().args(["build", "--release", "--locked", "-p", "goprobe"]))?;
    let only = ["--alloc", "off", "--no-goroutines"];
    let cases: [(&str, &str, Vec<&str>); 4] = [
        ("faultbench", "page faults", vec!["--cpu-hz", "0"]),
        ("faultbench", "page faults + CPU 97 Hz", vec![]),
        ("cpubench", "CPU 97 Hz", vec!["--no-page-faults"]),
        (
            "cpubench",
            "CPU 997 Hz",
            vec!["--no-page-faults", "--cpu-hz", "997"],
        ),
    ];
    let mut rows = String::new();
    for (mode, what, extra) in cases {
        let mut args: Vec<&str> = only.to_vec();
        args.extend(extra);
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            without.push(bench_once(&signals, mode, None)?);
            with.push(bench_once(&signals, mode, Some(&args))?);
        }
        let (a, b) = (median(&mut without), median(&mut with));
        rows.push_str(&format!(
            "| {mode} | {what} | {a:.0} | {b:.0} | {:+.1}% |\n",
            (b / a - 1.0) * 100.0
        ));
    }
    let section = format!(
        "\n## Perf-event signals: cost to the target\n\n\
         `signals -mode faultbench` (page faults/s: 1 MiB mapped, touched, unmapped) and \
         `-mode cpubench` (calls/s) built with Go {newest}, 3 s per run, median of 3, without \
         and with `goprobe attach --alloc off --no-goroutines` and the options shown.\n\n\
         | program | goprobe watches | ops/s without | ops/s with | change |\n\
         |---|---|---|---|---|\n{rows}"
    );
    append_results(dir, &section)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One run of `signals -mode <mode>`, under `goprobe attach <goprobe_args>` if given: its ops/s.
fn bench_once(signals: &std::path::Path, mode: &str, goprobe_args: Option<&[&str]>) -> Result<f64> {
    use std::{
        io::{BufRead as _, BufReader, Write as _},
        process::Stdio,
    };
    let mut prog = Command::new(signals)
        .args(["-mode", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(prog.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "ready", "signals said {line:?}");
    let probe = match goprobe_args {
        Some(args) => {
            let mut gp = Command::new(root().join("target/release/goprobe"))
                .arg("attach")
                .arg(prog.id().to_string())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let mut err = BufReader::new(gp.stderr.take().expect("piped"));
            let mut l = String::new();
            while !l.contains("attached to pid") {
                l.clear();
                anyhow::ensure!(
                    err.read_line(&mut l)? > 0,
                    "goprobe exited before attaching"
                );
            }
            // Keep reading goprobe's stderr so it never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
            Some(gp)
        }
        None => None,
    };
    writeln!(prog.stdin.as_mut().expect("piped"), "start")?;
    let mut json = String::new();
    out.read_line(&mut json)?;
    prog.wait()?;
    if let Some(mut gp) = probe {
        gp.wait()?;
    }
    // One flat JSON object with a numeric "ops_per_s" (tests/testprogs/signals/perfbench.go).
    json.split_once("\"ops_per_s\":")
        .and_then(|(_, rest)| rest.split([',', '}']).next())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no ops_per_s in {json}"))
}
