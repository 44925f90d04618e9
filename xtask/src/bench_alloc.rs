//! `cargo xtask bench`, allocation case: what `goprobe attach --alloc` costs an allocation-bound
//! Go program. Two `signals` workloads (tests/testprogs/signals/alloc.go, one P): `alloc-flood`
//! (16-byte objects as fast as it can for 2 s) and `alloc` (the tests' mix of sizes), each
//! reporting its own rate, with no goprobe and under each sampler, the cases taken in turn; the
//! medians go to target/bench/results.md (`GOPROBE_BENCH_ONLY=alloc cargo xtask bench` runs
//! only this case).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{bench_support::json_number, cargo, exec, root, setup};

const RUNS: usize = 5;

/// (label, goprobe `--alloc` value or none, SIGNALS_MEMPROFILERATE).
const CASES: &[(&str, Option<&str>, Option<&str>)] = &[
    ("no goprobe", None, None),
    // goprobe's GC probes alone: the test mix runs a GC cycle every few milliseconds.
    ("goprobe --alloc off (MemProfileRate 0)", Some("off"), None),
    (
        "sampled: the runtime's sampler, turned on by goprobe (MemProfileRate 0 → 512 KiB)",
        Some("sampled"),
        None,
    ),
    ("spans: span-refill (MemProfileRate 0)", Some("spans"), None),
    ("no goprobe, MemProfileRate 512 KiB", None, Some("524288")),
    (
        "sampled, profilealloc (the program's MemProfileRate 512 KiB)",
        Some("sampled"),
        Some("524288"),
    ),
    ("exact", Some("exact"), None),
];

/// A workload: its `-mode`, what it does, and its rate from its JSON line.
struct Workload {
    mode: &'static str,
    what: &'static str,
    unit: &'static str,
    rate: fn(&str) -> Option<f64>,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        mode: "alloc-flood",
        what: "16-byte objects in a loop for 2 s (runtime.MemStats.Mallocs per second)",
        unit: "allocations/s",
        rate: |j| json_number(j, "allocs_per_sec"),
    },
    Workload {
        mode: "alloc",
        what: "the test mix: per iteration 512 B, 128 B, 48 B (pointers), 8 B (tiny), every \
               64th 40000 B; 300,000 iterations",
        unit: "iterations/s",
        rate: |j| Some(json_number(j, "iterations")? / json_number(j, "seconds")?),
    },
];

pub fn run(dir: &Path) -> Result<()> {
    exec(cargo().args(["build", "--release", "--locked", "-p", "goprobe"]))?;
    let newest = setup::GO_VERSIONS.last().copied().unwrap_or_default();
    let program = dir.join("signals");
    setup::go_build(
        newest,
        false,
        &["-o", &program.display().to_string(), "./signals"],
    )?;
    let goprobe = root().join("target/release/goprobe");
    let mut section = format!(
        "\n## `goprobe attach --alloc` on allocation-bound programs (Go {newest})\n\n\
         GOMAXPROCS=1; each program measures its own rate; median of {RUNS} runs, the cases \
         taken in turn.\n"
    );
    for w in WORKLOADS {
        section.push_str(&table(&program, &goprobe, w)?);
    }
    crate::bench_support::append_results(dir, &section)
}

/// One workload's table: every case, median and runs.
fn table(program: &Path, goprobe: &Path, w: &Workload) -> Result<String> {
    // Round-robin over the cases, so that a load change on the machine hits them alike.
    let mut by_case = vec![Vec::new(); CASES.len()];
    for _ in 0..RUNS {
        for (i, &(_, alloc, rate)) in CASES.iter().enumerate() {
            by_case[i].push(once(program, goprobe, w, alloc, rate)?);
        }
    }
    let mut rows = String::new();
    let mut base = None;
    for (&(label, _, _), mut rates) in CASES.iter().zip(by_case) {
        rates.sort_by(f64::total_cmp);
        let median = rates[RUNS / 2];
        let base = *base.get_or_insert(median);
        rows.push_str(&format!(
            "| {label} | {:.3} M | {:.2}× | {} |\n",
            median / 1e6,
            base / median,
            rates
                .iter()
                .map(|r| format!("{:.3}", r / 1e6))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(format!(
        "\n`signals -mode {}`: {}.\n\n| case | {} | slowdown vs no goprobe | runs (M) |\n\
         |---|---|---|---|\n{rows}",
        w.mode, w.what, w.unit
    ))
}

/// Kills the child when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One run: the workload's rate, under goprobe `--alloc alloc` when given.
fn once(
    program: &Path,
    goprobe: &Path,
    w: &Workload,
    alloc: Option<&str>,
    rate: Option<&str>,
) -> Result<f64> {
    let mut cmd = Command::new(program);
    cmd.args(["-mode", w.mode])
        .env("GOMAXPROCS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(rate) = rate {
        cmd.env("SIGNALS_MEMPROFILERATE", rate);
    }
    let mut target = Killed(cmd.spawn().context("starting signals")?);
    let mut out = BufReader::new(target.0.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("signals said {line:?}, not ready");
    }
    let probe = match alloc {
        Some(mode) => {
            let mut p = Killed(
                Command::new(goprobe)
                    .args([
                        "attach",
                        &target.0.id().to_string(),
                        "--json",
                        "--alloc",
                        mode,
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("starting goprobe")?,
            );
            crate::bench_support::wait_attached(BufReader::new(
                p.0.stderr.take().context("stderr")?,
            ))?;
            Some(p)
        }
        None => None,
    };
    writeln!(target.0.stdin.as_mut().context("stdin")?, "start")?;
    line.clear();
    out.read_line(&mut line)?;
    if let Some(mut p) = probe {
        p.0.wait()?;
    }
    (w.rate)(&line).with_context(|| format!("signals JSON {line:?}"))
}
