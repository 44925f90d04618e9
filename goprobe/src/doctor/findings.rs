//! The rules: settings + behaviour → findings. Pure functions, one per finding id; thresholds
//! are constants here and in docs/doctor.md.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Behaviour, Finding, Settings, Severity};
use crate::text::bytes::mib;

/// GC cycles per second above which a GC is "too frequent" (a healthy service with the default
/// GOGC=100 runs a few per second at most; docs/doctor.md).
pub const GC_TOO_FREQUENT_PER_S: f64 = 5.0;
/// Cycles per second and live heap share of GOMEMLIMIT at which the limit drives the GC.
pub const LIMIT_THRASH_PER_S: f64 = 2.0;
pub const LIMIT_THRASH_LIVE_SHARE: f64 = 0.7;
/// Share of process CPU in mark assists above which allocating goroutines pay for the GC.
pub const HIGH_ASSIST_SHARE: f64 = 0.10;
/// Goroutine growth per second (and at least this many more) that only rises: a leak.
pub const GOROUTINE_GROWTH_PER_S: f64 = 10.0;
pub const GOROUTINE_GROWTH_MIN: u64 = 100;
pub const GOROUTINE_RISING_SHARE: f64 = 0.8;
/// Swapped-out memory of the process that counts.
pub const SWAP_MIN_BYTES: u64 = 1 << 20;

/// Every finding for `s` and `b`, most severe first.
pub fn all(s: &Settings, b: &Behaviour) -> Vec<Finding> {
    let mut v: Vec<Finding> = [
        gomaxprocs_exceeds_cpu_quota(s, b),
        race_build_in_production(s),
        optimizations_disabled(s),
        memory_limit_thrashing(s, b),
        gc_too_frequent(s, b),
        high_assist_share(b),
        goroutine_growth(b),
        swap_in_use(s),
    ]
    .into_iter()
    .flatten()
    .collect();
    v.sort_by_key(|f| f.severity);
    v
}

fn finding(
    id: &'static str,
    severity: Severity,
    evidence: &[(&'static str, Value)],
    summary: String,
    fix: String,
) -> Option<Finding> {
    Some(Finding {
        id,
        severity,
        evidence: evidence.iter().cloned().collect::<BTreeMap<_, _>>(),
        summary,
        fix,
    })
}

/// GOMAXPROCS above the CPUs the tightest CPU quota on the cgroup path allows: the runtime runs
/// more threads than it has CPU time for, the quota runs out early in each period, and every
/// thread (a GC stop-the-world too) waits for the next one. Judged whatever the Go version: the
/// GOMAXPROCS in effect against the quota of the cgroup and every ancestor.
///
/// NB: Go 1.25+ sets GOMAXPROCS to the quota rounded up, at least 2
/// (src/runtime/cgroup_linux.go `defaultGOMAXPROCS`); doctor allows that floor only where the
/// runtime chose it from the quota: Go ≥ 1.25, no GOMAXPROCS in the environment, and the quota
/// on the process' own cgroup. A tighter ancestor's quota is ignored by the runtime
/// (golang/go#81180), and an nsfs line in /proc/self/mountinfo turns its cgroup reading off
/// (golang/go#81864), so those are judged against the quota alone.
pub fn gomaxprocs_exceeds_cpu_quota(s: &Settings, b: &Behaviour) -> Option<Finding> {
    let gomaxprocs = s.gomaxprocs?;
    let quota = s.cgroup.cpu_quota?;
    let fit = (quota.ceil() as u32).max(1);
    let runtime_chose = s.go_minor >= 25 && !s.env.contains_key("GOMAXPROCS");
    let allowed = if runtime_chose && !s.cgroup.cpu_quota_inherited {
        fit.max(2)
    } else {
        fit
    };
    if gomaxprocs <= allowed {
        return None;
    }
    let t = b.throttling.as_ref();
    let share = t.map_or(0.0, |t| t.throttled_share);
    let overlapped = t.map_or(0, |t| t.pauses_throttled);
    let severity = if share >= 0.1 || overlapped > 0 {
        Severity::High
    } else {
        Severity::Medium
    };
    let upgrade = if s.go_minor >= 25 && s.cgroup.cpu_quota_inherited {
        format!(
            " (this Go reads the quota of the process' own cgroup, not the tighter one of its \
             ancestor {}: golang/go#81180)",
            s.cgroup.cpu_quota_cgroup.as_deref().unwrap_or("?")
        )
    } else if s.go_minor < 25 {
        " or upgrade to Go ≥ 1.25, which sets GOMAXPROCS from the quota".to_owned()
    } else if s.env.contains_key("GOMAXPROCS") {
        " (unset GOMAXPROCS: this Go follows the quota by itself)".to_owned()
    } else {
        // NB: Go 1.25 follows the quota only with containermaxprocs=1, the default when the
        // main module's go.mod says go 1.25 or later (src/internal/godebugs/table.go).
        " (this Go follows the quota when go.mod says go 1.25 or later, or with \
         GODEBUG=containermaxprocs=1, unless the program calls runtime.GOMAXPROCS or its \
         mountinfo has an nsfs line: golang/go#81864)"
            .to_owned()
    };
    finding(
        "gomaxprocs_exceeds_cpu_quota",
        severity,
        &[
            ("gomaxprocs", json!(gomaxprocs)),
            ("cpu_quota", json!(quota)),
            ("cpu_quota_cgroup", json!(s.cgroup.cpu_quota_cgroup)),
            ("throttled_share", json!(share)),
            (
                "throttled_periods",
                json!(t.map_or(0, |t| t.throttled_periods)),
            ),
            ("periods", json!(t.map_or(0, |t| t.periods))),
            ("pauses", json!(t.map_or(0, |t| t.pauses))),
            ("pauses_throttled", json!(overlapped)),
        ],
        format!(
            "GOMAXPROCS={gomaxprocs} but the cgroup allows {quota:.2} CPUs; {:.0}% of periods \
             throttled, {overlapped} of {} pauses overlapped throttling",
            share * 100.0,
            t.map_or(0, |t| t.pauses)
        ),
        format!("set GOMAXPROCS={fit}{upgrade}"),
    )
}

/// A `-race` binary: 2–20× CPU and 5–10× memory (the Go race detector's own figures).
pub fn race_build_in_production(s: &Settings) -> Option<Finding> {
    if !s.build.race {
        return None;
    }
    finding(
        "race_build_in_production",
        Severity::High,
        &[("race", json!(true))],
        "built with -race: every memory access is instrumented (2–20× CPU, 5–10× memory)".into(),
        "build without -race for production; run the race detector in tests (go test -race)".into(),
    )
}

/// The `-gcflags` flags of a build setting value (`all=-N -l` → `-N`, `-l`).
fn gcflags(value: &str) -> Vec<&str> {
    value
        .split_whitespace()
        .map(|t| t.rsplit_once('=').map_or(t, |(_, f)| f))
        .collect()
}

/// Built with `-N` (no optimisation) or `-l` (no inlining): debugger builds.
pub fn optimizations_disabled(s: &Settings) -> Option<Finding> {
    let value = s.build.gcflags.as_deref()?;
    let flags = gcflags(value);
    let no_opt = flags.contains(&"-N");
    let no_inline = flags.contains(&"-l");
    if !no_opt && !no_inline {
        return None;
    }
    let what = match (no_opt, no_inline) {
        (true, true) => "optimisations and inlining off",
        (true, false) => "optimisations off",
        _ => "inlining off",
    };
    finding(
        "optimizations_disabled",
        if no_opt {
            Severity::High
        } else {
            Severity::Medium
        },
        &[
            ("gcflags", json!(value)),
            ("no_optimization", json!(no_opt)),
            ("no_inlining", json!(no_inline)),
        ],
        format!("built with -gcflags={value:?}: {what}; more CPU and more heap (values escape)"),
        "build without -N/-l (they are for debuggers); drop -gcflags from the release build".into(),
    )
}

/// GOMEMLIMIT close to the live heap: the GC runs back to back to stay under it.
pub fn memory_limit_thrashing(s: &Settings, b: &Behaviour) -> Option<Finding> {
    let limit = u64::try_from(s.gomemlimit_bytes?).ok()?;
    let live = b.heap_marked_bytes?;
    let live_share = live as f64 / limit.max(1) as f64;
    if b.gc_cycles_per_s < LIMIT_THRASH_PER_S || live_share < LIMIT_THRASH_LIVE_SHARE {
        return None;
    }
    finding(
        "memory_limit_thrashing",
        Severity::High,
        &[
            ("gomemlimit_bytes", json!(limit)),
            ("heap_live_bytes", json!(live)),
            ("heap_goal_bytes", json!(b.heap_goal_bytes)),
            ("gc_cycles_per_s", json!(b.gc_cycles_per_s)),
        ],
        format!(
            "live heap {} is {:.0}% of GOMEMLIMIT {}; {:.1} GC cycles/s",
            mib(live as f64),
            live_share * 100.0,
            mib(limit as f64),
            b.gc_cycles_per_s
        ),
        "raise GOMEMLIMIT (and the container's memory limit with it, GOMEMLIMIT ~90% of it) or \
         shrink the live heap; the limit is a ceiling for spikes, not a target"
            .into(),
    )
}

/// Many GC cycles a second: GOGC too low for the live heap (or a tiny heap with heavy
/// allocation).
pub fn gc_too_frequent(s: &Settings, b: &Behaviour) -> Option<Finding> {
    if b.gc_cycles_per_s < GC_TOO_FREQUENT_PER_S || b.gc_cycles < 5 {
        return None;
    }
    // A limit-driven GC is memory_limit_thrashing's finding.
    if memory_limit_thrashing(s, b).is_some() {
        return None;
    }
    let gogc = s.gogc;
    // A goal at the runtime's heap minimum means a tiny live heap: each cycle marks almost
    // nothing, so many cycles cost little and GOGC is not what sets their pace.
    if let (Some(goal), Some(g)) = (b.heap_goal_bytes, gogc.filter(|&g| g > 0))
        && (goal as f64) <= heap_minimum(g) * 1.05
    {
        return None;
    }
    let live = b
        .heap_marked_bytes
        .map(|b| mib(b as f64))
        .unwrap_or_else(|| "?".into());
    let goal = b
        .heap_goal_bytes
        .map(|b| mib(b as f64))
        .unwrap_or_else(|| "?".into());
    let fix = match gogc {
        Some(g) if g > 0 && g < 100 => format!(
            "raise GOGC (now {g}: the heap may only grow {g}% over the live heap before the \
             next cycle) to 100 or more; with a memory limit, set GOMEMLIMIT to ~90% of it and \
             GOGC higher"
        ),
        _ => "raise GOGC, or set GOMEMLIMIT to ~90% of the memory you can give the process so \
              the GC runs less while far from it; allocate less (reuse buffers, sync.Pool)"
            .to_owned(),
    };
    finding(
        "gc_too_frequent",
        if b.gc_cycles_per_s >= 4.0 * GC_TOO_FREQUENT_PER_S {
            Severity::High
        } else {
            Severity::Medium
        },
        &[
            ("gc_cycles_per_s", json!(b.gc_cycles_per_s)),
            ("gc_cycles", json!(b.gc_cycles)),
            ("gogc", json!(gogc)),
            ("heap_live_bytes", json!(b.heap_marked_bytes)),
            ("heap_goal_bytes", json!(b.heap_goal_bytes)),
            ("pause_share", json!(b.pause_share)),
            ("assist_share", json!(b.assist_share)),
        ],
        format!(
            "{:.1} GC cycles/s (GOGC={}), live heap {live}, goal {goal}; pauses {:.2}% of wall time",
            b.gc_cycles_per_s,
            gogc.map_or_else(|| "?".into(), |g| g.to_string()),
            b.pause_share * 100.0
        ),
        fix,
    )
}

/// The runtime's smallest heap goal for GOGC `gogc`, bytes.
///
/// NB: `heapMinimum = defaultHeapMinimum * GOGC/100` with `defaultHeapMinimum` 4 MiB
/// (src/runtime/mgcpacer.go, Go 1.19–1.27, without GOEXPERIMENT=heapminimum512kib).
pub fn heap_minimum(gogc: i32) -> f64 {
    f64::from(4u32 << 20) * f64::from(gogc) / 100.0
}

/// Allocating goroutines spend a large share of the CPU helping the GC mark.
pub fn high_assist_share(b: &Behaviour) -> Option<Finding> {
    let share = b.assist_share?;
    if share < HIGH_ASSIST_SHARE || b.process_cpu_ns? < 50_000_000 {
        return None;
    }
    finding(
        "high_assist_share",
        Severity::Medium,
        &[
            ("assist_ns", json!(b.assist_ns)),
            ("process_cpu_ns", json!(b.process_cpu_ns)),
            ("assist_share", json!(share)),
        ],
        format!(
            "{:.0}% of the process' CPU went to mark assists (allocating goroutines doing GC work)",
            share * 100.0
        ),
        "give the GC more headroom (higher GOGC or GOMEMLIMIT) so background marking keeps up, \
         or allocate less on the hot path (the assist stacks in `goprobe attach` say where)"
            .into(),
    )
}

/// The goroutine count only grows: goroutines that never exit.
pub fn goroutine_growth(b: &Behaviour) -> Option<Finding> {
    let g = b.goroutines.as_ref()?;
    let grew = g.last.saturating_sub(g.first);
    if g.growth_per_s < GOROUTINE_GROWTH_PER_S
        || grew < GOROUTINE_GROWTH_MIN
        || g.rising_share < GOROUTINE_RISING_SHARE
    {
        return None;
    }
    let creator = g
        .top_site
        .as_ref()
        .and_then(|s| s.first())
        .cloned()
        .unwrap_or_else(|| "?".into());
    finding(
        "goroutine_growth",
        Severity::Medium,
        &[
            ("goroutines_first", json!(g.first)),
            ("goroutines_last", json!(g.last)),
            ("growth_per_s", json!(g.growth_per_s)),
            ("creator", json!(creator)),
            ("creator_stack", json!(g.top_site)),
            ("created_by_creator", json!(g.top_site_count)),
        ],
        format!(
            "goroutines grew {} → {} ({:.0}/s); most were started by {creator} ({})",
            g.first, g.last, g.growth_per_s, g.top_site_count
        ),
        format!(
            "the goroutines started by {creator} do not exit: give them a way out (context \
             cancellation, closed channel, timeouts on blocking calls)"
        ),
    )
}

/// Part of the process is swapped out: touching it costs a disk read, and a GC touches the
/// whole heap.
pub fn swap_in_use(s: &Settings) -> Option<Finding> {
    let swapped = s.memory.process_swap_bytes?;
    if swapped < SWAP_MIN_BYTES {
        return None;
    }
    finding(
        "swap_in_use",
        Severity::Medium,
        &[
            ("process_swap_bytes", json!(swapped)),
            ("process_rss_bytes", json!(s.memory.process_rss_bytes)),
            ("swappiness", json!(s.memory.swappiness)),
        ],
        format!(
            "{} of the process is in swap (RSS {}); GC marking reads it back",
            mib(swapped as f64),
            s.memory
                .process_rss_bytes
                .map_or_else(|| "?".into(), |b| mib(b as f64))
        ),
        "give the process enough memory (or set GOMEMLIMIT below the memory available) so it \
         is not swapped; vm.swappiness=0..10 or no swap for latency-sensitive services"
            .into(),
    )
}

#[cfg(test)]
#[path = "findings_tests.rs"]
mod tests;
