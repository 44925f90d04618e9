//! Tests of [`super`]: STW events folded into cycles and pauses, per Go release.

use super::*;

fn ev(reason: u8, cycles: u32, numgc: u32, started: i64, now: i64) -> StwEvent {
    StwEvent {
        reason,
        cycles,
        numgc,
        started,
        now,
        trigger: TRIGGER_UNKNOWN,
        ..Default::default()
    }
}

#[test]
fn go122_cycle_with_restart() {
    let mut t = GcTracker::new(stw_abi::GO122);
    let mut sweep = ev(GC_SWEEP_TERM, 5, 4, 1_000, 1_100);
    sweep.trigger = 0;
    assert!(t.on_event(&sweep).is_none());
    assert!(t.on_event(&ev(GC_MARK_TERM, 5, 4, 2_000, 2_050)).is_none()); // restart
    let mut last = ev(GC_MARK_TERM, 5, 5, 3_000, 3_030);
    last.pause_ns_at_start = 180;
    let c = t.on_event(&last).unwrap().clone();
    assert_eq!(c.cycle, 5);
    assert_eq!(c.pause_ns, 100 + 50 + 30);
    assert_eq!(c.trigger, "heap");
    assert_eq!(c.stw.len(), 3);
    assert_eq!(c.stw[0].reason, "GCSweepTerm");
    t.on_event(&ev(7, 5, 5, 4_000, 4_010));
    assert_eq!(
        t.other,
        vec![Stw {
            reason: "ReadMemStats".into(),
            start_mono_ns: 4_000,
            duration_ns: 10,
            stopping_ns: None,
            caller: CallerStack::NONE,
        }]
    );
}

#[test]
fn cycle_begun_before_attach_uses_runtime_total() {
    let mut t = GcTracker::new(stw_abi::GO122);
    let mut last = ev(GC_MARK_TERM, 9, 9, 3_000, 3_030);
    last.pause_ns_at_start = 77;
    last.user_forced = 1;
    let c = t.on_event(&last).unwrap();
    assert_eq!((c.pause_ns, c.trigger.as_str()), (77, "forced"));
}

#[test]
fn user_forced_decides_forced_and_the_kind_only_heap_or_time() {
    assert_eq!(trigger_name(0, true), "forced"); // kind overwritten by a nested gcStart
    assert_eq!(trigger_name(2, true), "forced");
    assert_eq!(trigger_name(0, false), "heap");
    assert_eq!(trigger_name(1, false), "time");
    assert_eq!(trigger_name(2, false), "unknown");
    assert_eq!(trigger_name(TRIGGER_UNKNOWN, false), "unknown");
}

#[test]
fn go121_pause_accounting() {
    let mut t = GcTracker::new(stw_abi::GO121);
    let mut sweep = ev(GC_SWEEP_TERM, 3, 2, 0, 1_500);
    sweep.pause_start = 1_000;
    t.on_event(&sweep);
    let mut last = ev(GC_MARK_TERM, 3, 3, 0, 9_999);
    last.pause_start = 5_000;
    last.pause_ns_at_stop = 500;
    last.pause_ns_at_start = 540;
    let c = t.on_event(&last).unwrap();
    assert_eq!(c.pause_ns, 540);
    assert_eq!(
        c.stw[1],
        Stw {
            reason: "GCMarkTerm".into(),
            start_mono_ns: 5_000,
            duration_ns: 40,
            stopping_ns: None,
            caller: CallerStack::NONE,
        }
    );
}

fn go119_text(reason: &str) -> StwEvent {
    let mut e = ev(STW_REASON_IN_TEXT, 3, 3, 0, 2_000);
    e.reason_len = reason.len() as u32;
    let n = reason.len().min(STW_REASON_TEXT_LEN);
    e.reason_text[..n].copy_from_slice(&reason.as_bytes()[..n]);
    e.stop_ktime = 1_000;
    e
}

#[test]
fn go119_reasons_from_text() {
    let mut t = GcTracker::new(stw_abi::GO119);
    t.on_event(&go119_text("read mem stats"));
    t.on_event(&go119_text("profile"));
    t.on_event(&go119_text("some future reason"));
    t.on_event(&go119_text("a reason longer than twenty-four bytes"));
    let names: Vec<&str> = t.other.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(
        names,
        ["ReadMemStats", "GoroutineProfile", "Unknown", "Unknown"]
    );
    assert_eq!(t.other[0].start_mono_ns, 1_000);
    assert_eq!(t.other[0].duration_ns, 1_000);
    assert!(t.cycles.is_empty());
}

#[test]
fn go119_cycle_with_restart_uses_go121_accounting() {
    let mut t = GcTracker::new(stw_abi::GO119);
    let mut sweep = ev(GC_SWEEP_TERM, 3, 2, 0, 1_500);
    sweep.pause_start = 1_000;
    sweep.trigger = 2;
    sweep.user_forced = 1;
    assert!(t.on_event(&sweep).is_none());
    // A restarted mark termination (numgc not yet bumped): `now - pauseStart`.
    let mut restart = ev(GC_MARK_TERM, 3, 2, 0, 4_070);
    restart.pause_start = 4_000;
    assert!(t.on_event(&restart).is_none());
    let mut last = ev(GC_MARK_TERM, 3, 3, 0, 9_999);
    last.pause_start = 5_000;
    last.pause_ns_at_stop = 570;
    last.pause_ns_at_start = 610;
    let c = t.on_event(&last).unwrap();
    assert_eq!((c.pause_ns, c.trigger.as_str()), (610, "forced"));
    let durations: Vec<u64> = c.stw.iter().map(|s| s.duration_ns).collect();
    assert_eq!(durations, [500, 70, 40]);
}

#[test]
fn go119_empty_reason_outside_gc_start_is_not_gc() {
    let mut t = GcTracker::new(stw_abi::GO119);
    // cycles == numgc: no GC is starting, so this cannot be a sweep termination.
    let mut e = ev(GC_SWEEP_TERM, 4, 4, 0, 2_000);
    e.stop_ktime = 1_500;
    assert!(t.on_event(&e).is_none());
    assert_eq!(t.other[0].reason, "Unknown");
    assert!(t.open.is_empty());
}

#[test]
fn go119_unreadable_reason_is_counted_not_guessed() {
    let mut t = GcTracker::new(stw_abi::GO119);
    let mut e = ev(STW_REASON_IN_TEXT, 1, 0, 0, 10);
    e.flags = STW_FLAG_READ_FAILED;
    assert!(t.on_event(&e).is_none());
    assert_eq!(t.unreadable, 1);
    assert!(t.other.is_empty());
}

#[test]
fn unreadable_gc_event_is_counted_not_guessed() {
    let mut t = GcTracker::new(stw_abi::GO122);
    let mut e = ev(GC_SWEEP_TERM, 1, 0, 0, 10);
    e.flags = STW_FLAG_READ_FAILED;
    assert!(t.on_event(&e).is_none());
    assert_eq!(t.unreadable, 1);
    assert!(t.cycles.is_empty());
}

#[test]
fn reason_names() {
    assert_eq!(reason_name(7), "ReadMemStats");
    assert_eq!(reason_text("ReadMemStats"), "read mem stats");
    assert_eq!(reason_name(200), "Reason200");
}

#[test]
fn go122_sweep_term_ends_at_work_tmark() {
    // Sent at entry without its end (stw_exit::CALLERS): the end is the cycle's work.tMark.
    let mut t = GcTracker::new(stw_abi::GO122);
    let mut sweep = ev(GC_SWEEP_TERM, 5, 4, 1_000, 0);
    sweep.flags = STW_FLAG_NOW_FROM_TMARK;
    t.on_event(&sweep);
    let mut last = ev(GC_MARK_TERM, 5, 5, 3_000, 3_030);
    last.pause_ns_at_start = 130;
    last.cycle.flags = CYCLE_FLAG_WORK;
    last.cycle.t = [990, 1_100, 3_000, 3_030];
    let c = t.on_event(&last).unwrap().clone();
    assert_eq!((c.stw[0].duration_ns, c.pause_ns), (100, 130));
    // Without the phase clocks: work.pauseNS less the cycle's other STWs.
    let mut sweep = ev(GC_SWEEP_TERM, 6, 5, 5_000, 0);
    sweep.flags = STW_FLAG_NOW_FROM_TMARK;
    t.on_event(&sweep);
    t.on_event(&ev(GC_MARK_TERM, 6, 5, 6_000, 6_040)); // restart, read after its call
    let mut last = ev(GC_MARK_TERM, 6, 6, 7_000, 7_020);
    last.pause_ns_at_start = 160;
    let c = t.on_event(&last).unwrap();
    assert_eq!(c.stw[0].duration_ns, 160 - 40 - 20);
    assert_eq!(c.pause_ns, 160);
}
