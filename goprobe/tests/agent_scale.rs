//! `goprobe agent` with 200 processes of one Go binary (100 running before it starts, 100
//! started after): every one is profiled, they share one set of uprobes, and the agent's memory
//! stays bounded. Its CPU use over a quiet minute is printed here and measured properly by
//! `cargo xtask bench`.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use support::{Proc, agent::Agent, agent::field, testprog};

const PROCESSES: usize = 200;
/// The agent's resident memory must stay under this with 200 targets (issue 8).
const MAX_RSS_KIB: u64 = 150 * 1024;

fn quiet_demo() -> Proc {
    // A request every 50 ms: a GC every few seconds, next to no CPU.
    let mut cmd = Command::new(testprog("demo", "1.27.3"));
    cmd.env("DEMO_WORKERS", "1").env("DEMO_SLEEP_US", "50000");
    let p = Proc::spawn(cmd);
    p.wait_stdout("demo service running", Duration::from_secs(60));
    p
}

/// (utime + stime in clock ticks, VmRSS KiB, VmHWM KiB) of process `pid`.
fn usage(pid: u32) -> (u64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (ticks, kib("VmRSS:"), kib("VmHWM:"))
}

#[test]
fn two_hundred_processes_of_one_binary() {
    let root = testprog("demo", "1.27.3");
    let cfg = std::env::temp_dir().join(format!("goprobe-scale-{}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        format!(
            "max_targets = {PROCESSES}\n[select]\ninclude_exe = [\"{}\"]\n",
            root.display()
        ),
    )
    .unwrap();
    let mut procs: Vec<Proc> = (0..PROCESSES / 2).map(|_| quiet_demo()).collect();
    let started = Instant::now();
    let mut agent = Agent::start(&cfg);
    let scanned = started.elapsed();
    procs.extend((0..PROCESSES / 2).map(|_| quiet_demo()));
    let mut uprobes = Vec::new();
    for p in &procs {
        let line = agent.attached(p.pid(), Duration::from_secs(120));
        uprobes.push(field(&line, "uprobes").unwrap());
    }
    // One binary, one set of uprobes, whatever the number of processes.
    assert!(
        uprobes.iter().all(|&u| u == uprobes[0]),
        "uprobes per attach: {uprobes:?}"
    );
    let pid = agent.proc.pid();
    // A minute of steady state: GC events, goroutine counts, metric refreshes, scrapes.
    let (t0, ..) = usage(pid);
    let window = Duration::from_secs(60);
    let until = Instant::now() + window;
    let mut scrapes = 0;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(10));
        let (status, metrics) = agent.get("/metrics");
        assert_eq!(status, 200);
        let series = metrics
            .lines()
            .filter(|l| l.starts_with("target_info{"))
            .count();
        assert_eq!(series, PROCESSES, "one resource per process");
        scrapes += 1;
    }
    let (t1, rss, hwm) = usage(pid);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (t1 - t0) as f64 / hz / window.as_secs_f64();
    eprintln!(
        "{PROCESSES} targets: initial scan of {} in {scanned:?}; agent CPU {:.2}% of one core \
         over {window:?} ({scrapes} scrapes), RSS {} MiB (peak {} MiB), {} uprobes",
        PROCESSES / 2,
        cpu * 100.0,
        rss / 1024,
        hwm / 1024,
        uprobes[0]
    );
    assert!(hwm <= MAX_RSS_KIB, "agent peak RSS {hwm} KiB");
    drop(procs);
    agent.wait(Duration::from_secs(60), |l| l.contains("remaining=0"));
    let _ = std::fs::remove_file(cfg);
}
