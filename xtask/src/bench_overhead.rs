//! `cargo xtask bench`, target-overhead case (issues 10 and 19): what goprobe costs a busy Go
//! program, measured as the **target's own CPU time per operation** (its getrusage, which
//! includes the BPF programs and uprobe traps that run in its threads), and what goprobe itself
//! costs. Three workloads of tests/testprogs/overhead (an allocation-heavy loop, a goroutine-heavy
//! loop, an HTTP server on loopback driven by a separate load generator), each a fixed number of
//! timed operations; per workload and goprobe mode, `PAIRS` interleaved pairs of runs without and
//! with goprobe (which one goes first alternates). Reports the CPU-per-operation ratio (with /
//! without: min, median, max) against the targets, the throughput ratio, and goprobe's CPU and
//! peak RSS. `GOPROBE_BENCH_ONLY=overhead cargo xtask bench` runs only this case.

use std::{
    io::{BufRead as _, BufReader, Lines, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{ChildStdout, Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    bench_support::{AgentProc, Killed, json_number, peak_rss_kb},
    cargo, exec, root, setup,
};

/// Interleaved pairs per workload and mode (the issue asks for at least 5).
const PAIRS: usize = 5;
/// Load generator connections for the server workload.
const CONCURRENCY: usize = 4;

/// How goprobe watches the target in a mode.
enum Kind {
    /// `goprobe attach <pid> --json <args>`.
    Attach(&'static [&'static str]),
    /// `goprobe agent` with its defaults, limited to the overhead program, started before it.
    Agent,
}

/// A goprobe mode: label, how goprobe runs, target (max median increase of the target's CPU
/// time per operation, as a fraction; none for a mode that is only measured), and the divisor of
/// the workload's operation count (exact mode is 30-90× slower on allocation-bound code: fewer
/// operations keep its runs as long as the others').
struct Mode {
    label: &'static str,
    kind: Kind,
    target: Option<f64>,
    ops_div: usize,
}

const MODES: &[Mode] = &[
    Mode {
        label: "`goprobe attach`, defaults",
        kind: Kind::Attach(&[]),
        target: Some(0.01),
        ops_div: 1,
    },
    Mode {
        label: "`goprobe agent`, defaults",
        kind: Kind::Agent,
        target: Some(0.005),
        ops_div: 1,
    },
    Mode {
        label: "attach, all signals: `--goroutine-sites --cpu-hz 997`",
        kind: Kind::Attach(&["--goroutine-sites", "--cpu-hz", "997"]),
        target: None,
        ops_div: 1,
    },
    Mode {
        label: "attach `--alloc exact`",
        kind: Kind::Attach(&["--alloc", "exact"]),
        target: None,
        ops_div: 10,
    },
];

/// A workload: the overhead program's `-mode`, its operation count, and what one operation is.
struct Workload {
    mode: &'static str,
    ops: usize,
    what: &'static str,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        mode: "alloc",
        ops: 60_000,
        what: "a 16-entry map, `json.Marshal` + `json.Unmarshal` of 4 small structs, 32 list nodes \
               (with GOMAXPROCS=1 its small heap is collected about 130 times a second)",
    },
    Workload {
        mode: "goroutines",
        ops: 40_000,
        what: "32 short goroutines fanned out through an unbuffered channel to a squaring \
               goroutine, fanned in",
    },
    Workload {
        mode: "server",
        ops: 20_000,
        what: "an HTTP GET to the server on 127.0.0.1 (the handler JSON-encodes 4 small structs), \
               sent by the `load` mode from 4 keep-alive connections; the CPU time is the \
               server's",
    },
];

/// One run's numbers: the workload's, and goprobe's when it was attached.
struct Run {
    cpu_us_per_op: f64,
    ops_per_s: f64,
    agent: Option<Agent>,
}

/// goprobe's cost in one run.
struct Agent {
    /// CPU (user + system, all threads) per wall second while the workload ran, in % of one core.
    busy_pct: f64,
    /// Peak RSS (VmHWM), KiB.
    max_rss_kb: f64,
}

pub fn run(dir: &Path) -> Result<()> {
    let began = Instant::now();
    exec(cargo().args(["build", "--release", "--locked", "-p", "goprobe"]))?;
    let newest = setup::GO_VERSIONS.last().copied().unwrap_or_default();
    let program = dir.join("overhead");
    setup::go_build(
        newest,
        false,
        &["-o", &program.display().to_string(), "./overhead"],
    )?;
    let config = dir.join("overhead-agent.toml");
    std::fs::write(
        &config,
        format!("[select]\ninclude_exe = [\"{}\"]\n", program.display()),
    )?;
    let b = Bench {
        program,
        goprobe: root().join("target/release/goprobe"),
        config,
    };
    let mut ratios = String::new();
    let mut agents = String::new();
    for w in WORKLOADS {
        // runs[mode] = (without, with) pairs; the modes are taken in turn, pair by pair.
        let mut runs: Vec<Vec<(Run, Run)>> = (0..MODES.len()).map(|_| Vec::new()).collect();
        for pair in 0..PAIRS {
            for (m, mode) in MODES.iter().enumerate() {
                let ops = w.ops / mode.ops_div;
                let (without, with) = if pair % 2 == 0 {
                    let without = b.once(w, ops, None)?;
                    (without, b.once(w, ops, Some(&mode.kind))?)
                } else {
                    let with = b.once(w, ops, Some(&mode.kind))?;
                    (b.once(w, ops, None)?, with)
                };
                eprintln!(
                    "xtask: overhead {} {} pair {pair}: {:.3} / {:.3} CPU µs/op, {:.0} / {:.0} \
                     ops/s ({:.0} s)",
                    w.mode,
                    mode.label,
                    without.cpu_us_per_op,
                    with.cpu_us_per_op,
                    without.ops_per_s,
                    with.ops_per_s,
                    began.elapsed().as_secs_f64()
                );
                runs[m].push((without, with));
            }
        }
        for (mode, pairs) in MODES.iter().zip(&runs) {
            ratios.push_str(&ratio_row(w, mode, pairs));
            agents.push_str(&agent_row(w, mode, pairs));
        }
    }
    let took = began.elapsed().as_secs_f64();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let what: String = WORKLOADS
        .iter()
        .map(|w| {
            format!(
                "- `{}` ({} operations per run): {}.\n",
                w.mode, w.ops, w.what
            )
        })
        .collect();
    let header = format!(
        "\n## Target overhead: the target's own CPU time per operation, without and with goprobe \
         (Go {newest})\n\n\
         `tests/testprogs/overhead`, each run a fresh process doing a fixed number of timed \
         operations (the server: a fresh server and load generator); per workload and mode \
         {PAIRS} pairs of runs without and with goprobe (attached before the work starts; \
         which run of a pair goes first alternates; the modes are taken in turn). The measure \
         is the target's own CPU time (getrusage RUSAGE_SELF, user + system, all threads) over \
         the timed operations, per operation: uprobe traps, BPF programs and perf-event samples \
         run in the target's threads and are charged to it; goprobe's own threads are not (next \
         table). Ratios are with / without (above 1 costs the target). `goprobe attach` \
         defaults: GC, goroutine count, sampled allocations, CPU 97 Hz, page faults; `goprobe \
         agent` defaults: GC, goroutine count, sampled allocations, CPU 19 Hz (the agent started \
         before the target, attaching on its exec). GOMAXPROCS=1 for the workload, the server \
         and the load generator: the box has 2 cores, so the rest of the box absorbs goprobe and \
         the load generator. Targets (medians): attach ≤ 1%, agent ≤ 0.5%. Linux {}, {cpus} \
         CPUs; run took {took:.0} s. One operation:\n\n{what}",
        kernel.trim()
    );
    let section = format!(
        "{header}\n| workload | goprobe | ops/run | CPU/op ratio min / median / max \
         | without: CPU µs/op (median) | throughput ratio (median) | target |\n\
         |---|---|---|---|---|---|---|\n{ratios}"
    );
    crate::bench_support::append_results(dir, &section)?;
    let section = format!(
        "\n## goprobe's own cost while attached to each workload\n\n\
         The \"with\" runs above. Busy CPU: user + system time of all goprobe threads \
         (/proc/PID/task/*/schedstat) from the moment the workload starts to the moment it \
         ends, per wall second, in % of one core (the BPF programs run in the target's threads \
         and show above). Peak RSS: VmHWM when the workload ended.\n\n\
         | workload | goprobe | busy CPU % of a core min / median / max | peak RSS MB (max) |\n\
         |---|---|---|---|\n{agents}"
    );
    crate::bench_support::append_results(dir, &section)
}

/// min / median / max of `v`, formatted with `prec` decimals.
fn spread(mut v: Vec<f64>, prec: usize) -> (String, f64) {
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    (
        format!("{:.prec$} / {med:.prec$} / {:.prec$}", v[0], v[v.len() - 1]),
        med,
    )
}

fn ratio_row(w: &Workload, mode: &Mode, pairs: &[(Run, Run)]) -> String {
    let (cpu, cpu_med) = spread(
        pairs
            .iter()
            .map(|(a, b)| b.cpu_us_per_op / a.cpu_us_per_op)
            .collect(),
        4,
    );
    let (_, tp_med) = spread(
        pairs
            .iter()
            .map(|(a, b)| b.ops_per_s / a.ops_per_s)
            .collect(),
        3,
    );
    let (_, base) = spread(pairs.iter().map(|(a, _)| a.cpu_us_per_op).collect(), 3);
    let verdict = match mode.target {
        None => "measured only".to_string(),
        Some(more) => format!(
            "{} (≤ {:.3})",
            if cpu_med <= 1.0 + more {
                "pass"
            } else {
                "FAIL"
            },
            1.0 + more
        ),
    };
    format!(
        "| {} | {} | {} | {cpu} | {base:.3} | {tp_med:.3} | {verdict} |\n",
        w.mode,
        mode.label,
        w.ops / mode.ops_div
    )
}

fn agent_row(w: &Workload, mode: &Mode, pairs: &[(Run, Run)]) -> String {
    let agents: Vec<&Agent> = pairs.iter().filter_map(|(_, b)| b.agent.as_ref()).collect();
    let (busy, _) = spread(agents.iter().map(|a| a.busy_pct).collect(), 2);
    let rss = agents.iter().map(|a| a.max_rss_kb).fold(0.0, f64::max) / 1024.0;
    format!("| {} | {} | {busy} | {rss:.1} |\n", w.mode, mode.label)
}

/// A started overhead process: its stdin and stdout lines.
struct Proc {
    child: Killed,
    out: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    fn start(program: &Path, args: &[&str]) -> Result<Proc> {
        let mut child = Killed(
            Command::new(program)
                .args(args)
                // See the results text: one P per Go process on this 2-core box.
                .env("GOMAXPROCS", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the overhead program")?,
        );
        let out = BufReader::new(child.0.stdout.take().context("stdout")?).lines();
        Ok(Proc { child, out })
    }

    fn line(&mut self) -> Result<String> {
        Ok(self
            .out
            .next()
            .context("overhead program closed stdout")??)
    }

    /// Reads lines up to "ready"; returns the value of an "addr" line before it, if any.
    fn ready(&mut self) -> Result<Option<String>> {
        let mut addr = None;
        loop {
            let line = self.line()?;
            match line.trim() {
                "ready" => return Ok(addr),
                l if l.starts_with("addr ") => addr = Some(l[5..].to_string()),
                l => bail!("overhead said {l:?}, not ready"),
            }
        }
    }

    fn send(&mut self, line: &str) -> Result<()> {
        writeln!(self.child.0.stdin.as_mut().context("stdin")?, "{line}")?;
        Ok(())
    }
}

struct Bench {
    program: PathBuf,
    goprobe: PathBuf,
    /// The agent's configuration: only the overhead program.
    config: PathBuf,
}

impl Bench {
    /// One run of workload `w` with `ops` operations, watched by goprobe as `kind` says.
    fn once(&self, w: &Workload, ops: usize, kind: Option<&Kind>) -> Result<Run> {
        let ops = ops.to_string();
        let server = w.mode == "server";
        let mut agent = match kind {
            Some(Kind::Agent) => Some(AgentProc::start(&self.goprobe, &self.config)?),
            _ => None,
        };
        let mut target = if server {
            Proc::start(&self.program, &["-mode", "server"])?
        } else {
            Proc::start(&self.program, &["-mode", w.mode, "-ops", &ops])?
        };
        let addr = target.ready()?;
        let pid = target.child.0.id();
        let mut probe = match kind {
            Some(Kind::Attach(args)) => Some(self.attach(pid, args)?),
            _ => None,
        };
        if let Some(a) = &mut agent {
            a.wait_attached(pid)?;
        }
        let mut load = match &addr {
            Some(addr) => {
                let c = CONCURRENCY.to_string();
                let args = ["-mode", "load", "-addr", addr, "-requests", &ops];
                let mut load =
                    Proc::start(&self.program, &[&args[..], &["-concurrency", &c]].concat())?;
                load.ready()?;
                if let Some(a) = &mut agent {
                    a.wait_attached(load.child.0.id())?;
                }
                target.send("start")?;
                Some(load)
            }
            None => None,
        };
        let gp_pid = probe
            .as_ref()
            .map(|p| p.0.id())
            .or(agent.as_ref().map(|a| a.child.0.id()));
        let cpu0 = gp_pid.map(cpu_ns).transpose()?;
        let t0 = Instant::now();
        let (json, client) = match &mut load {
            Some(load) => {
                load.send("start")?;
                let client = load.line()?;
                target.send("stop")?;
                (target.line()?, Some(client))
            }
            None => {
                target.send("start")?;
                (target.line()?, None)
            }
        };
        let busy_s = t0.elapsed().as_secs_f64();
        let cpu1 = gp_pid.map(cpu_ns).transpose()?;
        let rss = gp_pid.map(peak_rss_kb).transpose()?;
        let status = target.child.0.wait()?;
        if !status.success() {
            bail!("overhead -mode {} exited with {status}", w.mode);
        }
        if let Some(mut p) = probe.take() {
            // goprobe prints its report when it sees the target exit, then exits.
            let mut report = String::new();
            p.0.stdout
                .take()
                .context("stdout")?
                .read_to_string(&mut report)?;
            let status = p.0.wait()?;
            ensure!(status.success(), "goprobe exited with {status}");
        }
        if let Some(a) = agent.take() {
            a.stop()?;
        }
        let agent = match (cpu0, cpu1, rss) {
            (Some(c0), Some(c1), Some(rss)) => Some(Agent {
                busy_pct: (c1 - c0) as f64 / 1e9 / busy_s * 100.0,
                max_rss_kb: rss,
            }),
            _ => None,
        };
        let n = |json: &str, k: &str| {
            json_number(json, k).with_context(|| format!("no {k} in {json:?}"))
        };
        Ok(Run {
            cpu_us_per_op: n(&json, "cpu_us_per_op")?,
            ops_per_s: n(client.as_deref().unwrap_or(&json), "ops_per_s")?,
            agent,
        })
    }

    /// Starts `goprobe attach <pid> --json <args>` and waits until its probes are attached.
    fn attach(&self, pid: u32, args: &[&str]) -> Result<Killed> {
        let child = Killed(crate::bench_support::attach_goprobe(
            &self.goprobe,
            pid,
            args,
        )?);
        Ok(child)
    }
}

/// CPU time (ns, user + system) of all threads of `pid`: the first field of each
/// /proc/PID/task/TID/schedstat (NB: Linux Documentation/scheduler/sched-stats.rst; needs
/// CONFIG_SCHEDSTATS or CONFIG_SCHED_INFO, on in every distribution kernel).
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        sum += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(sum)
}
