//! What goprobe itself costs (`GOPROBE_BENCH_ONLY=cost`), with the release build: BPF time per
//! probe hit and per program (`goprobe attach --bpf-stats`, the report's `agent.programs`);
//! attach latency on a small Go binary and on hugo (95 MB, stripped); and `goprobe agent`'s CPU
//! and peak RSS with 1 and 50 targets, next to `goprobe attach`'s peak RSS. Appended to
//! target/bench/results.md, one section per table.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::{
    bench_support::{Killed, append_results},
    cargo, exec, root, setup, thirdparty,
};

/// How long gcstress -mode mixed runs for the event-cost table.
const EVENT_RUN: Duration = Duration::from_secs(5);
/// Attach-latency runs per binary; the first is the cold one.
const ATTACHES: usize = 5;
/// Targets of the agent-mode case.
const FLEET: usize = 50;
/// Agent CPU is measured over this long, once everything is attached.
const AGENT_WINDOW: Duration = Duration::from_secs(30);
/// A demo request every 20 ms on one worker: some allocation, a GC every few seconds,
/// a ReadMemStats each second, about 1-2% of a core per process.
const DEMO_ENV: [(&str, &str); 2] = [("DEMO_WORKERS", "1"), ("DEMO_SLEEP_US", "20000")];

pub fn run(dir: &Path) -> Result<()> {
    let newest = setup::GO_VERSIONS.last().copied().unwrap_or_default();
    let progs = dir.join("cost");
    std::fs::create_dir_all(&progs)?;
    for name in ["gcstress", "demo"] {
        let out = progs.join(name).display().to_string();
        setup::go_build(newest, false, &["-o", &out, &format!("./{name}")])?;
    }
    exec(cargo().args(["build", "--release", "--locked", "-p", "goprobe"]))?;
    let goprobe = root().join("target/release/goprobe");
    event_cost(dir, &goprobe, &progs.join("gcstress"), newest)?;
    attach_latency(dir, &goprobe, &progs.join("gcstress"), newest)?;
    agent_cost(dir, &goprobe, &progs.join("demo"), newest)
}

/// Waits for goprobe to end and parses its report.
fn report(child: Child) -> Result<Value> {
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "goprobe failed: {:?}", out.status);
    serde_json::from_slice(&out.stdout).context("goprobe's report")
}

/// gcstress -mode mixed for [`EVENT_RUN`] under `goprobe attach --bpf-stats <args>`: the report.
fn mixed_report(goprobe: &Path, gcstress: &Path, args: &[&str]) -> Result<Value> {
    let mut prog = Command::new(gcstress)
        .args(["-mode", "mixed"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting gcstress")?;
    let mut out = BufReader::new(prog.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    ensure!(line.trim() == "ready", "gcstress said {line:?}");
    let mut all = vec!["--bpf-stats"];
    all.extend_from_slice(args);
    let probe = crate::bench_support::attach_goprobe(goprobe, prog.id(), &all)?;
    let mut stdin = prog.stdin.take().context("stdin")?;
    writeln!(stdin, "start")?;
    std::thread::sleep(EVENT_RUN);
    writeln!(stdin, "stop")?;
    drop(stdin);
    ensure!(prog.wait()?.success(), "gcstress failed");
    report(probe)
}

/// Table a: hits and ns/hit per BPF program.
fn event_cost(dir: &Path, goprobe: &Path, gcstress: &Path, go: &str) -> Result<()> {
    let mut rows = String::new();
    for (label, args) in [
        ("--goroutine-sites", vec!["--goroutine-sites"]),
        (
            "--goroutine-sites --alloc exact",
            vec!["--goroutine-sites", "--alloc", "exact"],
        ),
    ] {
        let r = mixed_report(goprobe, gcstress, &args)?;
        let programs = r["goprobe"]["programs"]
            .as_array()
            .context("agent.programs")?;
        ensure!(
            programs.iter().any(|p| p["hits"].as_u64() > Some(0)),
            "agent.programs counted nothing (BPF_ENABLE_STATS failed?): {programs:?}"
        );
        let cycles = r["gc"]["cycles"].as_array().map_or(0, Vec::len);
        for p in programs {
            let hits = p["hits"].as_u64().unwrap_or(0);
            let ns = p["run_ns"].as_u64().unwrap_or(0);
            let per_hit = if hits > 0 {
                format!("{:.0}", ns as f64 / hits as f64)
            } else {
                "-".into()
            };
            rows.push_str(&format!(
                "| {label} ({cycles} GC cycles) | {} | {hits} | {per_hit} | {:.2} |\n",
                p["name"].as_str().unwrap_or("?"),
                ns as f64 / 1e6
            ));
        }
    }
    append_results(
        dir,
        &format!(
            "\n## BPF time per probe hit, per program\n\n\
             `gcstress -mode mixed` (Go {go}: heap-triggered and forced GC cycles, mark assists, \
             ReadMemStats every 250 ms, 50 goroutines every 100 ms, 256 page faults every 100 ms) \
             for {} s under the release `goprobe attach --json --bpf-stats` (run-time statistics \
             on through BPF_ENABLE_STATS for the window), with the default signals and again with \
             `--alloc exact`. From the report's `agent.programs`: the kernel's `run_cnt` and \
             `run_time_ns` of each program (BPF time only; the uprobe trap and the perf-event \
             overflow around it are not included). `cpu_sample` and `page_fault_*` run for every \
             process on the CPU and return early for the others.\n\n\
             | run | program | hits | ns/hit | total ms |\n|---|---|---|---|---|\n{rows}",
            EVENT_RUN.as_secs()
        ),
    )
}

/// hugo as `hugo server` (bench_support::hugo_server), killed when dropped.
fn hugo_server(dir: &Path) -> Result<Killed> {
    Ok(Killed(crate::bench_support::hugo_server(dir, 19398)?))
}

/// One attach: (ms from spawn to the "attached" line, the report's attach_ms).
fn attach_once(goprobe: &Path, pid: u32) -> Result<(u64, u64)> {
    let t = Instant::now();
    let child = crate::bench_support::attach_goprobe(goprobe, pid, &["--duration", "0.2"])?;
    let wall = t.elapsed().as_millis() as u64;
    let r = report(child)?;
    Ok((wall, r["goprobe"]["attach_ms"].as_u64().unwrap_or(0)))
}

/// Table b: attach latency, cold (first) and warm (median / max of the rest).
fn attach_latency(dir: &Path, goprobe: &Path, gcstress: &Path, go: &str) -> Result<()> {
    let mut rows = String::new();
    let small = Command::new(gcstress)
        .args(["-mode", "churn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting gcstress")?;
    let small = Killed(small);
    std::thread::sleep(Duration::from_millis(500));
    let hugo = hugo_server(dir)?;
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len() >> 20);
    for (what, pid, exe) in [
        (
            format!("gcstress (Go {go}, {} MiB, with symbols)", size(gcstress)),
            small.0.id(),
            gcstress.to_path_buf(),
        ),
        (
            format!(
                "hugo server ({} MiB, stripped, cgo)",
                size(&thirdparty::hugo())
            ),
            hugo.0.id(),
            thirdparty::hugo(),
        ),
    ] {
        ensure!(exe.exists(), "{} is missing", exe.display());
        let runs: Vec<(u64, u64)> = (0..ATTACHES)
            .map(|_| attach_once(goprobe, pid))
            .collect::<Result<_>>()?;
        let (mut walls, mut reported): (Vec<u64>, Vec<u64>) = runs[1..].iter().copied().unzip();
        walls.sort_unstable();
        reported.sort_unstable();
        let mid = walls.len() / 2;
        rows.push_str(&format!(
            "| {what} | {} | {} | {} / {} | {} / {} |\n",
            runs[0].0,
            runs[0].1,
            walls[mid],
            walls[walls.len() - 1],
            reported[mid],
            reported[reported.len() - 1],
        ));
    }
    drop(hugo);
    drop(small);
    append_results(
        dir,
        &format!(
            "\n## Attach latency\n\n\
             The release `goprobe attach PID --json --duration 0.2` (default signals), {ATTACHES} \
             times in a row on one running process of each binary. Wall: from spawning goprobe \
             to its `attached to pid` line on stderr (process start, capability check, target \
             analysis, BPF load and verification, every probe attached). Reported: the report's \
             `agent.attach_ms` (the same span without process start-up). Cold is the first run \
             after the target started (the binary's pages may still be in the page cache: \
             caches were not dropped); warm is median / max of the other {}. Target: < 1 s for \
             hugo.\n\n\
             | binary | cold wall ms | cold reported ms | warm wall ms (median / max) | warm \
             reported ms (median / max) |\n|---|---|---|---|---|\n{rows}",
            ATTACHES - 1
        ),
    )
}

/// (utime + stime in seconds, VmHWM KiB) of `pid`.
fn usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rfind(')').context("stat")? + 2;
    let f: Vec<&str> = stat[after..].split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("VmHWM")?;
    Ok((ticks as f64 / USER_HZ, hwm))
}

/// Clock ticks per second in /proc/PID/stat.
// NB: USER_HZ is 100 on every Linux/amd64 build (include/asm-generic/param.h), whatever HZ is.
const USER_HZ: f64 = 100.0;

/// Demo processes of `demo`, each printing its "running" line before it is counted.
fn start_demos(demo: &Path, n: usize) -> Result<Vec<Killed>> {
    (0..n)
        .map(|_| {
            let mut c = Command::new(demo)
                .envs(DEMO_ENV)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting demo")?;
            let mut line = String::new();
            BufReader::new(c.stdout.take().context("stdout")?).read_line(&mut line)?;
            ensure!(line.contains("demo service running"), "demo said {line:?}");
            Ok(Killed(c))
        })
        .collect()
}

/// `goprobe agent` limited to `demo`'s path, started once `targets` demos run.
struct AgentRun {
    agent: Killed,
    addr: String,
}

fn start_agent(goprobe: &Path, demo: &Path, dir: &Path, targets: usize) -> Result<AgentRun> {
    let cfg = dir.join("cost-agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "max_targets = {}\n[select]\ninclude_exe = [\"{}\"]\n",
            targets.max(1),
            demo.display()
        ),
    )?;
    let mut child = Command::new(goprobe)
        .args(["agent", "--prometheus", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "goprobe=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting goprobe agent")?;
    let mut err = BufReader::new(child.stderr.take().context("stderr")?);
    let agent = Killed(child);
    let (mut addr, mut attached, mut line) = (String::new(), 0, String::new());
    let deadline = Instant::now() + Duration::from_secs(180);
    while attached < targets || addr.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "agent: {attached}/{targets} attached"
        );
        line.clear();
        if err.read_line(&mut line)? == 0 {
            bail!("goprobe agent exited");
        }
        if let Some(rest) = line.split("serving http://").nth(1) {
            addr = rest.split('/').next().unwrap_or_default().trim().to_owned();
        }
        attached += usize::from(line.contains("fleet: attached pid="));
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Ok(AgentRun { agent, addr })
}

/// GET /metrics on `addr`: the body's length.
fn scrape(addr: &str) -> Result<usize> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(body.len())
}

/// Agent CPU (fraction of one core) over [`AGENT_WINDOW`], scraping /metrics every 10 s when
/// `scrapes`; and its peak RSS (KiB) so far.
fn measure(run: &AgentRun, scrapes: bool) -> Result<(f64, u64)> {
    let pid = run.agent.0.id();
    let (c0, _) = usage(pid)?;
    let t0 = Instant::now();
    while t0.elapsed() < AGENT_WINDOW {
        std::thread::sleep(Duration::from_secs(10).min(AGENT_WINDOW));
        if scrapes {
            scrape(&run.addr)?;
        }
    }
    let (c1, hwm) = usage(pid)?;
    Ok(((c1 - c0) / t0.elapsed().as_secs_f64(), hwm))
}

/// Table c: agent mode with 1 and [`FLEET`] targets, and `goprobe attach` to one.
fn agent_cost(dir: &Path, goprobe: &Path, demo: &Path, go: &str) -> Result<()> {
    let mut rows = String::new();
    let row = |rows: &mut String, what: &str, n: usize, cpu: Option<f64>, hwm: u64| {
        let cpu = cpu.map_or_else(
            || "- | -".to_owned(),
            |c| format!("{:.2} | {:.3}", c * 100.0, c * 100.0 / n as f64),
        );
        rows.push_str(&format!(
            "| {what} | {n} | {cpu} | {:.1} |\n",
            hwm as f64 / 1024.0
        ));
    };
    let mut target_cpu = 0.0;
    for n in [1, FLEET] {
        let demos = start_demos(demo, n)?;
        let run = start_agent(goprobe, demo, dir, n)?;
        let (quiet, _) = measure(&run, false)?;
        let (scraped, hwm) = measure(&run, true)?;
        row(&mut rows, "`goprobe agent`", n, Some(quiet), hwm);
        row(
            &mut rows,
            "`goprobe agent`, /metrics every 10 s",
            n,
            Some(scraped),
            hwm,
        );
        if n == 1 {
            let pid = demos[0].0.id();
            let (c0, _) = usage(pid)?;
            std::thread::sleep(Duration::from_secs(5));
            target_cpu = (usage(pid)?.0 - c0) / 5.0;
        }
        drop(run);
        drop(demos);
    }
    // `goprobe attach` on one demo for 20 s, default signals: its own peak RSS.
    let demos = start_demos(demo, 1)?;
    let probe =
        crate::bench_support::attach_goprobe(goprobe, demos[0].0.id(), &["--duration", "20"])?;
    let r = report(probe)?;
    row(
        &mut rows,
        "`goprobe attach` (20 s, defaults)",
        1,
        None,
        r["goprobe"]["max_rss_kb"].as_u64().unwrap_or(0),
    );
    drop(demos);
    append_results(
        dir,
        &format!(
            "\n## goprobe's own CPU and memory\n\n\
             The release `goprobe agent --prometheus 127.0.0.1:0` with its defaults (alloc \
             sampled, CPU 19 Hz, goroutine count each second, no page faults) and `include_exe` \
             limited to the target binary, started after 1 or {FLEET} targets run: Go {go}'s \
             `demo` with {} (each target uses {:.1}% of a core itself). CPU: the agent's user + \
             system time from /proc/PID/stat over {} s once every target is attached, per wall \
             second, in % of one core; per target = total / targets; first without scrapes, then \
             with a /metrics scrape every 10 s. Peak RSS: VmHWM at the end. The last row is \
             `goprobe attach --duration 20` on one demo (the report's `agent.max_rss_kb`). \
             Targets: ≤ 1% of one core per busy target, ≤ 64 MiB for one target. The machine \
             is shared (2 cores), so CPU numbers include some scheduling noise.\n\n\
             | run | targets | CPU % of a core | CPU % per target | peak RSS MiB |\n\
             |---|---|---|---|---|\n{rows}",
            DEMO_ENV
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            target_cpu * 100.0,
            AGENT_WINDOW.as_secs()
        ),
    )
}
