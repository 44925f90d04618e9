//! `goprobe doctor <PID>`: watch a Go process for a short window, read its settings, and print
//! what is wrong with its deployment, with the evidence and the fix (docs/doctor.md).

use std::{fmt::Write as _, time::Duration};

use anyhow::Result;
use clap::Args;

use super::{attach::tell, parse_seconds};

use goprobe::{
    doctor::{Behaviour, DoctorReport, Settings, behaviour::Sampler},
    probe::{AllocMode, Options},
    session::{WindowConfig, observe},
    text::{bytes::mib, duration::ms},
};

/// How often the process' CPU time, page faults and its cgroup's throttling counters are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Arguments of `goprobe doctor`.
#[derive(Debug, Args)]
#[command(
    after_help = "doctor attaches like `goprobe attach` (GC and goroutine probes, the \
    allocation sampler) for --duration seconds, reads the process' settings (GOMAXPROCS in effect, \
    GOGC, GOMEMLIMIT, build flags, cgroup CPU quota and throttling, swap), then lists what is \
    wrong, most severe first, each with its evidence and a fix. No findings means none of its \
    rules fired. Every finding is explained in docs/doctor.md.\n\n\
    Examples:\n  \
    sudo goprobe doctor 1234\n  \
    sudo goprobe doctor 1234 --duration 30 --json | jq '.findings[].id'"
)]
pub struct DoctorArgs {
    /// Process id of a running Go program (`goprobe ps` lists them).
    pub pid: u32,
    /// How long to watch the process, in seconds (fractions allowed). Rates and trends need a
    /// window with some activity: a quiet service may need longer.
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_seconds, default_value = "10")]
    pub duration: Duration,
    /// Print `{"findings": [...], "settings": {...}, "behaviour": {...}}` on stdout instead of
    /// the human list.
    #[arg(long)]
    pub json: bool,
}

/// Runs `goprobe doctor`.
pub fn run(args: DoctorArgs) -> Result<()> {
    let sampler = Sampler::start(args.pid, SAMPLE_EVERY);
    let config = WindowConfig {
        pid: args.pid,
        options: Options {
            alloc: AllocMode::Sampled,
            cpu_hz: 0,
            page_faults: false,
            goroutines: true,
            // The top creation site of a growing goroutine count is a finding.
            goroutine_sites: true,
            ..Options::default()
        },
        duration: Some(args.duration),
        quiet: true,
        profiles: false,
        service_name: None,
        bpf_stats: false,
    };
    let until = format!("watching for {:.1} s", args.duration.as_secs_f64());
    let observed = observe(config, None, &mut |n| tell(n, &until));
    let samples = sampler.stop();
    let observed = observed?;
    let settings = Settings::read(&observed.target, &observed.report);
    let behaviour = Behaviour::from_window(&observed.report, &samples);
    let report = DoctorReport::new(settings, behaviour);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The human output: the findings, then the settings and numbers they were judged on.
fn render(r: &DoctorReport) -> String {
    let (s, b) = (&r.settings, &r.behaviour);
    let mut out = String::new();
    if r.findings.is_empty() {
        out.push_str("No findings: none of doctor's rules fired in this window.\n");
    } else {
        let n = r.findings.len();
        let _ = writeln!(out, "{n} finding{}:", if n == 1 { "" } else { "s" });
    }
    for (i, f) in r.findings.iter().enumerate() {
        let _ = writeln!(out, "\n{}. [{}] {}", i + 1, f.severity, f.id);
        let _ = writeln!(out, "   {}", f.summary);
        let _ = writeln!(out, "   fix: {}", f.fix);
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    let _ = writeln!(out, "\nSettings");
    let _ = writeln!(
        out,
        "  {}; GOMAXPROCS {} of {} host CPUs; GOGC {}; GOMEMLIMIT {}",
        s.go_version,
        opt(s.gomaxprocs.map(|v| v.to_string())),
        opt(s.host_cpus.map(|v| v.to_string())),
        opt(s
            .gogc
            .map(|g| if g < 0 { "off".into() } else { g.to_string() })),
        s.gomemlimit_bytes
            .map_or_else(|| "none".into(), |m| mib(m as f64)),
    );
    let env: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !env.is_empty() {
        let _ = writeln!(out, "  environment: {}", env.join(" "));
    }
    let mut build = Vec::new();
    if let Some(g) = &s.build.gcflags {
        build.push(format!("-gcflags={g:?}"));
    }
    if s.build.race {
        build.push("-race".into());
    }
    if let Some(c) = s.build.cgo {
        build.push(format!("CGO_ENABLED={}", u8::from(c)));
    }
    if s.build.pie {
        build.push("PIE".into());
    }
    if s.build.stripped {
        build.push("stripped".into());
    }
    if !build.is_empty() {
        let _ = writeln!(out, "  build: {}", build.join(", "));
    }
    let _ = writeln!(
        out,
        "  cgroup: CPU quota {}, cpuset {}, memory limit {}",
        s.cgroup.cpu_quota.map_or_else(
            || "none".into(),
            |q| match (&s.cgroup.cpu_quota_cgroup, s.cgroup.cpu_quota_inherited) {
                (Some(at), true) => format!("{q:.2} CPUs (set on ancestor {at})"),
                _ => format!("{q:.2} CPUs"),
            }
        ),
        s.cgroup.cpuset.as_deref().unwrap_or("?"),
        s.cgroup
            .memory_limit_bytes
            .map_or_else(|| "none".into(), |m| mib(m as f64)),
    );
    let _ = writeln!(
        out,
        "  memory: swap in use by the process {}, vm.swappiness {}, THP {}",
        s.memory
            .process_swap_bytes
            .map_or_else(|| "?".into(), |m| mib(m as f64)),
        opt(s.memory.swappiness.map(|v| v.to_string())),
        s.memory.thp.as_deref().unwrap_or("?"),
    );
    let _ = writeln!(out, "\nBehaviour over {:.1} s", b.window_s);
    let _ = writeln!(
        out,
        "  GC: {} cycles ({:.2}/s), stop-the-world {:.3}% of wall time, longest pause {}",
        b.gc_cycles,
        b.gc_cycles_per_s,
        b.pause_share * 100.0,
        ms(b.max_pause_ns)
    );
    if let Some(share) = b.assist_share {
        let _ = writeln!(out, "  mark assists: {:.1}% of process CPU", share * 100.0);
    }
    if let Some(rate) = b.alloc_bytes_per_s {
        let _ = writeln!(out, "  allocation: {}/s", mib(rate));
    }
    if let Some(t) = b.throttling.as_ref().filter(|t| t.periods > 0) {
        let _ = writeln!(
            out,
            "  throttled in {} of {} CPU periods; {} of {} pauses overlapped throttling",
            t.throttled_periods, t.periods, t.pauses_throttled, t.pauses
        );
    }
    if let Some(g) = &b.goroutines {
        let _ = writeln!(
            out,
            "  goroutines: {} → {} ({:+.1}/s)",
            g.first, g.last, g.growth_per_s
        );
    }
    if let Some(rate) = b.page_faults_per_s {
        let _ = writeln!(out, "  page faults: {rate:.0}/s");
    }
    out
}
