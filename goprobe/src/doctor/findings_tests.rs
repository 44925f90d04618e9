//! Each rule at, below and above its thresholds, on settings and behaviour built by hand.

use super::*;
use crate::doctor::behaviour::{GoroutineTrend, Throttling};

const MIB: u64 = 1 << 20;

/// A healthy Go 1.24 service: GOGC 100, no limit, one GC a second, no quota.
fn healthy() -> (Settings, Behaviour) {
    let s = Settings {
        go_version: "go1.24.11".into(),
        go_minor: 24,
        gomaxprocs: Some(2),
        host_cpus: Some(2),
        gogc: Some(100),
        ..Settings::default()
    };
    let b = Behaviour {
        window_s: 10.0,
        gc_cycles: 10,
        gc_cycles_per_s: 1.0,
        process_cpu_ns: Some(5_000_000_000),
        assist_ns: 50_000_000,
        assist_share: Some(0.01),
        heap_marked_bytes: Some(100 * MIB),
        heap_goal_bytes: Some(200 * MIB),
        ..Behaviour::default()
    };
    (s, b)
}

fn ids(s: &Settings, b: &Behaviour) -> Vec<&'static str> {
    all(s, b).into_iter().map(|f| f.id).collect()
}

#[test]
fn defaults_and_a_healthy_service_have_no_findings() {
    assert!(all(&Settings::default(), &Behaviour::default()).is_empty());
    let (s, b) = healthy();
    assert!(ids(&s, &b).is_empty(), "{:?}", all(&s, &b));
}

fn quota(s: &mut Settings, b: &mut Behaviour, gomaxprocs: u32, cpus: f64) {
    s.gomaxprocs = Some(gomaxprocs);
    s.cgroup.cpu_quota = Some(cpus);
    b.throttling = Some(Throttling {
        periods: 100,
        throttled_periods: 0,
        pauses: 10,
        ..Throttling::default()
    });
}

#[test]
fn gomaxprocs_fits_the_quota_rounded_up_and_at_least_two() {
    let (mut s, mut b) = healthy();
    s.go_minor = 25; // picks max(2, ceil(quota)) from its own cgroup's quota
    for (procs, cpus) in [(2, 0.5), (2, 1.0), (2, 1.5), (3, 2.5), (4, 4.0)] {
        quota(&mut s, &mut b, procs, cpus);
        assert!(
            gomaxprocs_exceeds_cpu_quota(&s, &b).is_none(),
            "{procs} {cpus}"
        );
    }
    // No quota, or GOMAXPROCS unknown: nothing to judge.
    s.cgroup.cpu_quota = None;
    s.gomaxprocs = Some(64);
    assert!(gomaxprocs_exceeds_cpu_quota(&s, &b).is_none());
    s.cgroup.cpu_quota = Some(1.0);
    s.gomaxprocs = None;
    assert!(gomaxprocs_exceeds_cpu_quota(&s, &b).is_none());
}

/// The floor of 2 is the runtime's choice from its own cgroup's quota only: not before Go 1.25,
/// not with GOMAXPROCS set, not for a tighter ancestor's quota (golang/go#81180).
#[test]
fn gomaxprocs_over_a_quota_the_runtime_did_not_choose_from() {
    let (mut s, mut b) = healthy();
    quota(&mut s, &mut b, 2, 0.5);
    assert!(gomaxprocs_exceeds_cpu_quota(&s, &b).is_some(), "Go 1.24");
    s.go_minor = 27;
    assert!(gomaxprocs_exceeds_cpu_quota(&s, &b).is_none());
    s.env.insert("GOMAXPROCS".into(), "2".into());
    assert!(
        gomaxprocs_exceeds_cpu_quota(&s, &b).is_some(),
        "set by hand"
    );
    s.env.clear();
    s.cgroup.cpu_quota_inherited = true;
    s.cgroup.cpu_quota_cgroup = Some("/gpanc".into());
    let f = gomaxprocs_exceeds_cpu_quota(&s, &b).expect("an ancestor's quota");
    assert!(f.fix.starts_with("set GOMAXPROCS=1"), "{}", f.fix);
    assert!(
        f.fix.contains("/gpanc") && f.fix.contains("81180"),
        "{}",
        f.fix
    );
    assert_eq!(f.evidence["cpu_quota_cgroup"], json!("/gpanc"));
    // Within the quota rounded up: nothing, wherever it is set.
    quota(&mut s, &mut b, 1, 0.5);
    assert!(gomaxprocs_exceeds_cpu_quota(&s, &b).is_none());
}

#[test]
fn gomaxprocs_over_quota_is_medium_until_throttling_shows() {
    let (mut s, mut b) = healthy();
    quota(&mut s, &mut b, 8, 0.5);
    let f = gomaxprocs_exceeds_cpu_quota(&s, &b).unwrap();
    assert_eq!(f.severity, Severity::Medium);
    assert!(f.fix.starts_with("set GOMAXPROCS=1"), "{}", f.fix);
    assert!(f.fix.contains("upgrade to Go ≥ 1.25"), "{}", f.fix);
    assert_eq!(f.evidence["gomaxprocs"], json!(8));

    let t = b.throttling.as_mut().unwrap();
    t.throttled_periods = 9;
    t.throttled_share = 0.09;
    assert_eq!(
        gomaxprocs_exceeds_cpu_quota(&s, &b).unwrap().severity,
        Severity::Medium
    );
    let t = b.throttling.as_mut().unwrap();
    t.throttled_periods = 10;
    t.throttled_share = 0.10;
    assert_eq!(
        gomaxprocs_exceeds_cpu_quota(&s, &b).unwrap().severity,
        Severity::High
    );
    let t = b.throttling.as_mut().unwrap();
    t.throttled_share = 0.0;
    t.pauses_throttled = 1;
    let f = gomaxprocs_exceeds_cpu_quota(&s, &b).unwrap();
    assert_eq!(f.severity, Severity::High);
    assert!(f.summary.contains("1 of 10 pauses"), "{}", f.summary);
    assert_eq!(all(&s, &b)[0].id, "gomaxprocs_exceeds_cpu_quota");
}

#[test]
fn gomaxprocs_fix_follows_the_go_version() {
    let (mut s, mut b) = healthy();
    quota(&mut s, &mut b, 4, 1.5);
    assert!(
        gomaxprocs_exceeds_cpu_quota(&s, &b)
            .unwrap()
            .fix
            .starts_with("set GOMAXPROCS=2")
    );
    s.go_minor = 25;
    let fix = gomaxprocs_exceeds_cpu_quota(&s, &b).unwrap().fix;
    assert!(fix.contains("containermaxprocs=1"), "{fix}");
    assert!(!fix.contains("upgrade"), "{fix}");
    s.env.insert("GOMAXPROCS".into(), "4".into());
    let fix = gomaxprocs_exceeds_cpu_quota(&s, &b).unwrap().fix;
    assert!(fix.contains("unset GOMAXPROCS"), "{fix}");
}

#[test]
fn race_and_debug_builds() {
    let (mut s, b) = healthy();
    s.build.race = true;
    let f = race_build_in_production(&s).unwrap();
    assert_eq!(f.severity, Severity::High);
    assert_eq!(ids(&s, &b), ["race_build_in_production"]);

    let (mut s, _) = healthy();
    for (flags, severity) in [
        ("all=-N -l", Some(Severity::High)),
        ("-N", Some(Severity::High)),
        ("main=-l", Some(Severity::Medium)),
        ("all=-m", None),
        ("-trimpath", None),
        ("", None),
    ] {
        s.build.gcflags = Some(flags.into());
        let f = optimizations_disabled(&s);
        assert_eq!(f.as_ref().map(|f| f.severity), severity, "{flags}");
    }
    s.build.gcflags = Some("all=-N -l".into());
    let f = optimizations_disabled(&s).unwrap();
    assert_eq!(f.evidence["no_optimization"], json!(true));
    assert_eq!(f.evidence["no_inlining"], json!(true));
    assert!(
        f.summary.contains("optimisations and inlining off"),
        "{}",
        f.summary
    );
}

#[test]
fn gc_too_frequent_at_and_around_the_threshold() {
    let (mut s, mut b) = healthy();
    s.gogc = Some(10);
    b.gc_cycles = 49;
    b.gc_cycles_per_s = 4.9;
    assert!(gc_too_frequent(&s, &b).is_none());
    b.gc_cycles = 50;
    b.gc_cycles_per_s = GC_TOO_FREQUENT_PER_S;
    let f = gc_too_frequent(&s, &b).unwrap();
    assert_eq!(f.severity, Severity::Medium);
    assert!(f.fix.contains("now 10"), "{}", f.fix);
    assert_eq!(f.evidence["gogc"], json!(10));
    b.gc_cycles_per_s = 20.0;
    assert_eq!(gc_too_frequent(&s, &b).unwrap().severity, Severity::High);
    // Fewer than 5 cycles is no rate, whatever the window.
    b.gc_cycles = 4;
    assert!(gc_too_frequent(&s, &b).is_none());
    // GOGC at 100 or more: the fix talks about the limit and allocation instead.
    b.gc_cycles = 200;
    s.gogc = Some(100);
    assert!(!gc_too_frequent(&s, &b).unwrap().fix.contains("now 100"));
}

#[test]
fn gc_too_frequent_ignores_a_goal_at_the_heap_minimum() {
    let (mut s, mut b) = healthy();
    b.gc_cycles = 100;
    b.gc_cycles_per_s = 10.0;
    b.heap_marked_bytes = Some(MIB);
    // GOGC=100: the minimum goal is 4 MiB; a tiny heap collected often costs little.
    assert_eq!(heap_minimum(100), 4.0 * MIB as f64);
    b.heap_goal_bytes = Some(4 * MIB + 100 * 1024);
    assert!(gc_too_frequent(&s, &b).is_none());
    b.heap_goal_bytes = Some(5 * MIB);
    assert!(gc_too_frequent(&s, &b).is_some());
    // GOGC=50 halves the minimum.
    s.gogc = Some(50);
    b.heap_goal_bytes = Some(2 * MIB);
    assert!(gc_too_frequent(&s, &b).is_none());
    b.heap_goal_bytes = Some(3 * MIB);
    assert!(gc_too_frequent(&s, &b).is_some());
    // GOGC off or unknown: no minimum to compare with.
    s.gogc = Some(-1);
    b.heap_goal_bytes = Some(MIB);
    assert!(gc_too_frequent(&s, &b).is_some());
}

#[test]
fn memory_limit_thrashing_needs_both_rate_and_live_share() {
    let (mut s, mut b) = healthy();
    s.gomemlimit_bytes = Some(100 * MIB as i64);
    b.gc_cycles = 100;
    b.gc_cycles_per_s = 10.0;
    b.heap_marked_bytes = Some(69 * MIB);
    b.heap_goal_bytes = Some(95 * MIB);
    assert!(memory_limit_thrashing(&s, &b).is_none());
    // Far from the limit, many cycles are GOGC's doing.
    assert_eq!(ids(&s, &b), ["gc_too_frequent"]);
    b.heap_marked_bytes = Some(70 * MIB);
    let f = memory_limit_thrashing(&s, &b).unwrap();
    assert_eq!(f.severity, Severity::High);
    assert!(f.summary.contains("70%"), "{}", f.summary);
    // The limit drives the GC: one finding, not two.
    assert_eq!(ids(&s, &b), ["memory_limit_thrashing"]);
    b.gc_cycles_per_s = 1.9;
    assert!(memory_limit_thrashing(&s, &b).is_none());
    b.gc_cycles_per_s = LIMIT_THRASH_PER_S;
    assert!(memory_limit_thrashing(&s, &b).is_some());
    // No limit (or an unreadable live heap): nothing to judge.
    b.heap_marked_bytes = None;
    assert!(memory_limit_thrashing(&s, &b).is_none());
    s.gomemlimit_bytes = None;
    b.heap_marked_bytes = Some(70 * MIB);
    assert!(memory_limit_thrashing(&s, &b).is_none());
}

#[test]
fn assist_share_threshold_and_minimum_cpu() {
    let (_, mut b) = healthy();
    b.assist_share = Some(0.099);
    assert!(high_assist_share(&b).is_none());
    b.assist_share = Some(HIGH_ASSIST_SHARE);
    b.assist_ns = 500_000_000;
    let f = high_assist_share(&b).unwrap();
    assert_eq!(f.severity, Severity::Medium);
    assert!(f.summary.starts_with("10%"), "{}", f.summary);
    // An idle process: a share of almost nothing is noise.
    b.process_cpu_ns = Some(49_000_000);
    assert!(high_assist_share(&b).is_none());
    b.process_cpu_ns = None;
    assert!(high_assist_share(&b).is_none());
}

fn trend(first: u64, last: u64, per_s: f64, rising: f64) -> GoroutineTrend {
    GoroutineTrend {
        first,
        last,
        max: last,
        growth_per_s: per_s,
        rising_share: rising,
        top_site: Some(vec!["main.spawn".into(), "main.main".into()]),
        top_site_count: last - first,
    }
}

#[test]
fn goroutine_growth_needs_rate_count_and_steady_rise() {
    let (_, mut b) = healthy();
    b.goroutines = Some(trend(10, 110, 10.0, 0.8));
    let f = goroutine_growth(&b).unwrap();
    assert_eq!(f.evidence["creator"], json!("main.spawn"));
    assert!(f.fix.contains("main.spawn"), "{}", f.fix);
    assert!(f.summary.contains("10 → 110"), "{}", f.summary);
    for t in [
        trend(10, 110, 9.9, 1.0),  // slow
        trend(10, 109, 50.0, 1.0), // few
        trend(10, 510, 50.0, 0.7), // goes up and down: a pool, a burst
    ] {
        b.goroutines = Some(t.clone());
        assert!(goroutine_growth(&b).is_none(), "{t:?}");
    }
    // A shrinking count.
    b.goroutines = Some(GoroutineTrend {
        first: 500,
        last: 10,
        ..trend(0, 0, -49.0, 0.1)
    });
    assert!(goroutine_growth(&b).is_none());
    // No creation stacks seen: the finding still stands, creator unknown.
    let mut t = trend(10, 510, 50.0, 1.0);
    t.top_site = None;
    b.goroutines = Some(t);
    assert_eq!(
        goroutine_growth(&b).unwrap().evidence["creator"],
        json!("?")
    );
}

#[test]
fn swap_counts_from_one_mib() {
    let (mut s, _) = healthy();
    s.memory.process_swap_bytes = Some(MIB - 1);
    assert!(swap_in_use(&s).is_none());
    s.memory.process_swap_bytes = Some(SWAP_MIN_BYTES);
    s.memory.process_rss_bytes = Some(64 * MIB);
    let f = swap_in_use(&s).unwrap();
    assert!(f.summary.contains("1.0 MiB"), "{}", f.summary);
    assert!(f.summary.contains("RSS 64.0 MiB"), "{}", f.summary);
}

#[test]
fn findings_are_sorted_most_severe_first() {
    let (mut s, mut b) = healthy();
    s.memory.process_swap_bytes = Some(8 * MIB); // medium
    b.goroutines = Some(trend(10, 1010, 100.0, 1.0)); // medium
    s.build.race = true; // high
    s.build.gcflags = Some("-l".into()); // medium
    let found = all(&s, &b);
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(found[0].id, "race_build_in_production");
    assert!(found.windows(2).all(|w| w[0].severity <= w[1].severity));
}

#[test]
fn json_shape_is_stable() {
    let (mut s, b) = healthy();
    s.build.race = true;
    let v = serde_json::to_value(crate::doctor::DoctorReport::new(s, b)).unwrap();
    let f = &v["findings"][0];
    assert_eq!(f["id"], "race_build_in_production");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["evidence"]["race"], true);
    assert!(f["summary"].is_string() && f["fix"].is_string());
    assert_eq!(v["settings"]["gogc"], 100);
    assert_eq!(v["behaviour"]["gc_cycles"], 10);
}
