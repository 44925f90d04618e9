//! The goroutine signal's cost, for `cargo xtask bench`: the `signals` program creating short
//! goroutines as fast as it can (`-mode goroutine-churn`), bare, under goprobe without the
//! goroutine signal, with its default (the count, read by goprobe: nothing runs in the target)
//! and with `--goroutine-sites` (other signals off in all). The difference is what the
//! `runtime.newproc` and `runtime.gdestroy` probes cost per goroutine. Appended to
//! target/bench/results.md.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{cargo, exec, root, setup};

/// Runs per configuration; the median is reported.
const RUNS: usize = 3;

pub fn run(dir: &Path) -> Result<()> {
    let newest = setup::GO_VERSIONS.last().copied().unwrap_or_default();
    let signals = dir.join("signals");
    setup::go_build(
        newest,
        false,
        &["-o", &signals.display().to_string(), "./signals"],
    )?;
    exec(cargo().args(["build", "--release", "--locked", "-p", "goprobe"]))?;
    let goprobe = root().join("target/release/goprobe");
    let off = ["--alloc", "off", "--cpu-hz", "0", "--no-page-faults"];
    let mut rows = String::new();
    let mut bare_rate = 0.0;
    for (name, goprobe_args) in [
        ("bare", None),
        ("goprobe --no-goroutines", Some(vec!["--no-goroutines"])),
        ("goprobe (defaults: the count only)", Some(vec![])),
        ("goprobe --goroutine-sites", Some(vec!["--goroutine-sites"])),
    ] {
        let mut results: Vec<(f64, String)> = (0..RUNS)
            .map(|_| {
                let args = goprobe_args.as_ref().map(|a| {
                    let mut v: Vec<&str> = off.to_vec();
                    v.extend(a.iter().copied());
                    v
                });
                churn(&signals, &goprobe, args.as_deref())
            })
            .collect::<Result<_>>()?;
        results.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (rate, agent) = results.swap_remove(RUNS / 2);
        if goprobe_args.is_none() {
            bare_rate = rate;
        }
        let per_goroutine_ns = if bare_rate > 0.0 && rate > 0.0 {
            format!("{:+.0}", (1.0 / rate - 1.0 / bare_rate) * 1e9)
        } else {
            "-".into()
        };
        rows.push_str(&format!(
            "| {name} | {rate:.0} | {per_goroutine_ns} | {agent} |\n"
        ));
    }
    let section = format!(
        "\n## Goroutine creation under goprobe (Go {newest}, `signals -mode goroutine-churn`)\n\n\
         Short goroutines created and joined 100 at a time for 3 s; median of {RUNS} runs. Other \
         signals off (`{}`). ns/goroutine: extra time per goroutine against bare.\n\n\
         | run | goroutines/s | ns/goroutine | goprobe: cpu ms, created |\n|---|---|---|---|\n{rows}",
        off.join(" ")
    );
    crate::bench_support::append_results(dir, &section)
}

/// One churn run, under `goprobe attach <pid> --json <args>` when `args` is given: the
/// program's goroutines/s, and goprobe's CPU ms and created count.
fn churn(signals: &Path, goprobe: &Path, args: Option<&[&str]>) -> Result<(f64, String)> {
    let mut prog = Command::new(signals)
        .args(["-mode", "goroutine-churn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting signals")?;
    let mut out = BufReader::new(prog.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("signals said {line:?}");
    }
    let probe = match args {
        Some(args) => Some(crate::bench_support::attach_goprobe(
            goprobe,
            prog.id(),
            args,
        )?),
        None => None,
    };
    writeln!(prog.stdin.as_mut().context("stdin")?, "start")?;
    let mut json = String::new();
    out.read_to_string(&mut json)?;
    prog.wait()?;
    let rate = crate::bench_support::json_number(&json, "per_sec")
        .context("no per_sec in the program's output")?;
    let agent = match probe {
        Some(p) => {
            let report = p.wait_with_output()?;
            let report = String::from_utf8_lossy(&report.stdout);
            format!(
                "{}, {}",
                crate::bench_support::json_number(&report, "cpu_ms").unwrap_or(-1.0),
                crate::bench_support::json_number(&report, "created")
                    .map_or("-".into(), |c| c.to_string())
            )
        }
        None => "-".into(),
    };
    Ok((rate, agent))
}
