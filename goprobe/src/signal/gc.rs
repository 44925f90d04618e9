//! GC cycles and stop-the-world pauses from raw [`StwEvent`]s.
//!
//! Each STW's duration is computed exactly the way the Go runtime computes the number it stores
//! in `MemStats.PauseNs`, so per-cycle sums match the runtime's to the nanosecond.

use std::collections::BTreeMap;

use goprobe_common::{
    CYCLE_FLAG_WORK, CallerStack, STW_FLAG_NOW_FROM_TMARK, STW_FLAG_READ_FAILED,
    STW_REASON_IN_TEXT, STW_REASON_TEXT_LEN, StwEvent, TRIGGER_UNKNOWN, stw_abi,
};
use tracing::{debug, warn};

use super::{
    cycle::{self, CycleDetails},
    stacks::Stack,
};

/// NB: `stwReason` (src/runtime/proc.go), identical in Go 1.21–1.27; names are the constants'
/// without the `stw` prefix, `text` is the runtime's own `stwReasonStrings` entry.
const REASONS: &[(&str, &str)] = &[
    ("Unknown", "unknown"),
    ("GCMarkTerm", "GC mark termination"),
    ("GCSweepTerm", "GC sweep termination"),
    ("WriteHeapDump", "write heap dump"),
    ("GoroutineProfile", "goroutine profile"),
    ("GoroutineProfileCleanup", "goroutine profile cleanup"),
    ("AllGoroutinesStack", "all goroutines stack trace"),
    ("ReadMemStats", "read mem stats"),
    ("AllThreadsSyscall", "AllThreadsSyscall"),
    ("GOMAXPROCS", "GOMAXPROCS"),
    ("StartTrace", "start trace"),
    ("StopTrace", "stop trace"),
    ("ForTestCountPagesInUse", "CountPagesInUse (test)"),
    ("ForTestReadMetricsSlow", "ReadMetricsSlow (test)"),
    ("ForTestReadMemStatsSlow", "ReadMemStatsSlow (test)"),
    ("ForTestPageCachePagesLeaked", "PageCachePagesLeaked (test)"),
    ("ForTestResetDebugLog", "ResetDebugLog (test)"),
];
const GC_MARK_TERM: u8 = 1;
const GC_SWEEP_TERM: u8 = 2;
const UNKNOWN: u8 = 0;

/// NB: Go 1.19 passes the reason of a non-GC stop-the-world as a string, `stopTheWorld(reason
/// string)` (src/runtime/proc.go:1086), stored in `m.preemptoff`. These are all the strings its
/// runtime passes (go1.19 debug.go:28, heapdump.go:21, mprof.go:911/1111/976/1195,
/// mstats.go:356, os_linux.go:729, trace.go:209/319, export_test.go, export_debuglog_test.go),
/// with the `stwReason` that Go 1.21 gave the same call site, so reports read the same.
const GO119_REASONS: &[(&str, u8)] = &[
    ("write heap dump", 3),
    ("profile", 4),
    ("profile cleanup", 5),
    ("stack trace", 6),
    ("read mem stats", 7),
    ("doAllThreadsSyscall", 8),
    ("GOMAXPROCS", 9),
    ("start tracing", 10),
    ("stop tracing", 11),
    ("CountPagesInUse", 12),
    ("ReadMetricsSlow", 13),
    ("ReadMemStatsSlow", 14),
    ("PageCachePagesLeaked", 15),
    ("ResetDebugLog", 16),
];

/// The `stwReason` of a Go 1.19 reason string, [`UNKNOWN`] for a string not in
/// [`GO119_REASONS`] (never a guess).
fn go119_reason(ev: &StwEvent) -> u8 {
    let len = usize::try_from(ev.reason_len).unwrap_or(usize::MAX);
    let Some(text) = ev
        .reason_text
        .get(..len)
        .filter(|_| len <= STW_REASON_TEXT_LEN)
    else {
        return UNKNOWN;
    };
    GO119_REASONS
        .iter()
        .find(|(t, _)| t.as_bytes() == text)
        .map_or_else(
            || {
                debug!(text = %String::from_utf8_lossy(text), "unknown Go 1.19 STW reason");
                UNKNOWN
            },
            |r| r.1,
        )
}

/// The name of an `stwReason` as it appears in reports (`ReadMemStats`).
pub fn reason_name(reason: u8) -> String {
    REASONS
        .get(usize::from(reason))
        .map_or_else(|| format!("Reason{reason}"), |r| r.0.to_owned())
}

/// The runtime's own text for an `stwReason` (`read mem stats`), for people.
pub fn reason_text(name: &str) -> &str {
    REASONS.iter().find(|r| r.0 == name).map_or(name, |r| r.1)
}

/// NB: `gcTriggerKind` (src/runtime/mgc.go, Go 1.19–1.27): heap = the pacer's heap goal was
/// reached, time = forced by sysmon after 2 minutes without GC, `gcTriggerCycle` = runtime.GC()
/// or debug.FreeOSMemory, reported as `forced`. `work.userForced` (`trigger.kind ==
/// gcTriggerCycle`, set by the gcStart call that starts the cycle; what gctrace's "(forced)" and
/// MemStats.NumForcedGC count) decides `forced`: the kind recorded at gcStart entry can be
/// overwritten by a nested gcStart(heap) from mallocgc on the same goroutine between the entry
/// and the stop-the-world (go1.19 mgc.go:608 `semacquire(&work.startSema)` → acquireSudog →
/// `new(sudog)`; that nested call returns early, mgc.go:585), so it only tells heap from time.
fn trigger_name(kind: u8, user_forced: bool) -> &'static str {
    if user_forced {
        return "forced";
    }
    match kind {
        0 => "heap",
        1 => "time",
        // gcTriggerCycle without userForced: the starting call's entry was not seen.
        _ => "unknown",
    }
}

/// One stop-the-world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stw {
    pub reason: String,
    /// CLOCK_MONOTONIC ns (the runtime's `nanotime()`).
    pub start_mono_ns: i64,
    pub duration_ns: u64,
    /// Time to stop the world (Go 1.23+), see [`cycle::stopping_ns`].
    pub stopping_ns: Option<u64>,
    /// Who asked for it (non-GC STWs: the `runtime.stopTheWorld` caller), see [`CallerStack`].
    pub caller: CallerStack,
}

/// One completed GC cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The runtime's cycle number (`MemStats.NumGC` after the cycle).
    pub cycle: u32,
    pub trigger: String,
    /// Total STW time of the cycle, what the runtime stores in `MemStats.PauseNs`.
    pub pause_ns: u64,
    pub stw: Vec<Stw>,
    /// Phases, heap and settings, read at the cycle's final stop-the-world.
    pub details: CycleDetails,
    /// The stack that called `runtime.gcStart` for a forced cycle, else [`CallerStack::NONE`].
    pub trigger_caller: CallerStack,
}

#[derive(Debug, Default)]
struct OpenCycle {
    trigger: Option<String>,
    trigger_caller: CallerStack,
    stw: Vec<Stw>,
    saw_sweep_term: bool,
    /// Index in `stw` of a sweep termination whose end is the cycle's `work.tMark`
    /// ([`STW_FLAG_NOW_FROM_TMARK`]), filled in at the final mark termination.
    tmark_pending: Option<usize>,
}

/// The stacks of a tracker's records, resolved: `other[i]` asked for `GcTracker::other[i]`,
/// `triggers[i]` started `GcTracker::cycles[i]` (empty unless it was forced).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcStacks {
    pub other: Vec<Stack>,
    pub triggers: Vec<Stack>,
}

impl GcStacks {
    /// Resolves the callers of `t`'s records with `stack`.
    pub fn new(t: &GcTracker, mut stack: impl FnMut(&CallerStack) -> Stack) -> Self {
        Self {
            other: t.other.iter().map(|s| stack(&s.caller)).collect(),
            triggers: t.cycles.iter().map(|c| stack(&c.trigger_caller)).collect(),
        }
    }
}

/// Folds STW events into GC cycles and other pauses.
#[derive(Debug)]
pub struct GcTracker {
    abi: u32,
    open: BTreeMap<u32, OpenCycle>,
    /// Completed cycles, in completion order.
    pub cycles: Vec<Cycle>,
    /// Non-GC stop-the-worlds.
    pub other: Vec<Stw>,
    /// Events that could not be interpreted (target memory unreadable).
    pub unreadable: u64,
    /// The target's Go minor version, 0 when not given (then no stop latency is reported).
    go_minor: u32,
}

impl GcTracker {
    /// A tracker for a target with the given [`stw_abi`].
    pub fn new(abi: u32) -> Self {
        Self {
            abi,
            open: BTreeMap::new(),
            cycles: Vec::new(),
            other: Vec::new(),
            unreadable: 0,
            go_minor: 0,
        }
    }

    /// The same tracker, told the target's Go minor version (for version-specific readings such
    /// as the stop latency).
    pub fn with_go_minor(mut self, minor: u32) -> Self {
        self.go_minor = minor;
        self
    }

    /// Takes one event; returns the cycle it completed, if any.
    pub fn on_event(&mut self, ev: &StwEvent) -> Option<&Cycle> {
        if ev.reason == STW_REASON_IN_TEXT && ev.reason_len == 0 {
            // Go 1.19: m.preemptoff was unreadable, so this may have been a GC pause.
            warn!(
                tid = ev.tid,
                "could not read the reason of a stop-the-world; pause dropped"
            );
            self.unreadable += 1;
            return None;
        }
        let reason = self.reason(ev);
        let is_gc = reason == GC_MARK_TERM || reason == GC_SWEEP_TERM;
        if is_gc && ev.flags & STW_FLAG_READ_FAILED != 0 {
            warn!(
                tid = ev.tid,
                "could not read runtime.work during a GC pause; pause dropped"
            );
            self.unreadable += 1;
            return None;
        }
        // NB: memstats.numgc is bumped in gcMarkTermination right before its final
        // startTheWorldWithSema, and work.cycles in gcStart (src/runtime/mgc.go): so the final
        // STW of cycle N is the mark termination that sees numgc == cycles == N. Earlier mark
        // terminations of the same cycle are restarts (issue #27993) that resume marking.
        let is_final = reason == GC_MARK_TERM && ev.numgc == ev.cycles;
        let (start_mono_ns, duration) = self.duration(ev, is_gc, is_final);
        let stw = Stw {
            reason: reason_name(reason),
            start_mono_ns,
            duration_ns: u64::try_from(duration).unwrap_or(0),
            stopping_ns: cycle::stopping_ns(self.go_minor, ev.started, &ev.cycle),
            caller: if is_gc { CallerStack::NONE } else { ev.caller },
        };
        if !is_gc {
            self.other.push(stw);
            return None;
        }
        let open = self.open.entry(ev.cycles).or_default();
        if reason == GC_SWEEP_TERM {
            if ev.flags & STW_FLAG_NOW_FROM_TMARK != 0 {
                open.tmark_pending = Some(open.stw.len());
            }
            open.saw_sweep_term = true;
            open.trigger = Some(trigger_name(ev.trigger, ev.user_forced != 0).to_owned());
            open.trigger_caller = ev.caller;
        }
        open.stw.push(stw);
        if !is_final {
            return None;
        }
        let mut open = self.open.remove(&ev.cycles)?;
        let runtime_total = u64::try_from(ev.pause_ns_at_start).unwrap_or(0);
        if let Some(i) = open.tmark_pending {
            fill_sweep_term(&mut open.stw, i, ev, runtime_total);
        }
        let sum: u64 = open.stw.iter().map(|s| s.duration_ns).sum();
        let pause_ns = if open.saw_sweep_term {
            if sum != runtime_total {
                warn!(
                    cycle = ev.cycles,
                    sum, runtime_total, "STW sum differs from work.pauseNS"
                );
            }
            sum
        } else {
            // Attached mid-cycle: the sweep termination was missed, but the runtime's own
            // accumulator (work.pauseNS, final here) has the whole cycle.
            debug!(
                cycle = ev.cycles,
                "cycle started before attach; using work.pauseNS"
            );
            runtime_total
        };
        let trigger = open
            .trigger
            .unwrap_or_else(|| trigger_name(TRIGGER_UNKNOWN, ev.user_forced != 0).to_owned());
        // Older cycles still open can never complete now (their final STW was missed).
        self.open.retain(|&c, _| c > ev.cycles);
        self.cycles.push(Cycle {
            cycle: ev.cycles,
            trigger,
            pause_ns,
            stw: open.stw,
            details: CycleDetails::from_state(ev.cycles, &ev.cycle),
            trigger_caller: open.trigger_caller,
        });
        self.cycles.last()
    }

    /// The event's `stwReason`; on Go 1.19, where the kernel side infers GC reasons from
    /// `m.preemptoff`, checked against the runtime's cycle counters.
    fn reason(&self, ev: &StwEvent) -> u8 {
        if self.abi != stw_abi::GO119 {
            return ev.reason;
        }
        match ev.reason {
            STW_REASON_IN_TEXT => go119_reason(ev),
            // NB: Go 1.19 gcStart increments work.cycles inside the sweep-termination STW and
            // gcMarkTermination increments memstats.numgc (src/runtime/mgc.go:675, :1038): at
            // the start of that STW's world, cycles == numgc + 1. An empty m.preemptoff that does
            // not satisfy this is not a sweep termination: report it as unknown, never as GC.
            // (With the counters unreadable the pause is dropped as unreadable instead.)
            GC_SWEEP_TERM
                if ev.flags & STW_FLAG_READ_FAILED == 0
                    && ev.cycles != ev.numgc.wrapping_add(1) =>
            {
                warn!(
                    cycles = ev.cycles,
                    numgc = ev.numgc,
                    "Go 1.19 stop-the-world without a reason outside a GC start"
                );
                UNKNOWN
            }
            r => r,
        }
    }

    /// `(start, duration)` of one STW, in the runtime's terms.
    fn duration(&self, ev: &StwEvent, is_gc: bool, is_final: bool) -> (i64, i64) {
        if !stw_abi::probes_stop(self.abi) {
            // NB: Go 1.22+ (src/runtime/mgc.go): `work.pauseNS += now - stw.startedStopping`
            // where `now` is what startTheWorldWithSema returned; for the final mark termination
            // `now` is passed in and returned unchanged.
            return (ev.started, ev.now - ev.started);
        }
        match (is_gc, is_final) {
            // NB: Go 1.19 and 1.21 gcMarkTermination adds `now - work.pauseStart` to
            // work.pauseNS with a `now` taken before it calls startTheWorldWithSema (go1.19
            // mgc.go:1000, :1059): the pause is the increment.
            (true, true) => (ev.pause_start, ev.pause_ns_at_start - ev.pause_ns_at_stop),
            // NB: Go 1.19 and 1.21 gcStart/gcMarkDone: `now = startTheWorldWithSema(…);
            // work.pauseNS += now - work.pauseStart` (go1.19 mgc.go:730, :882).
            (true, false) => (ev.pause_start, ev.now - ev.pause_start),
            // Go 1.19 and 1.21 do not time other STWs; measure stop entry to start return.
            (false, _) => (ev.stop_ktime, ev.now - ev.stop_ktime),
        }
    }
}

/// The duration of the sweep termination `stw[i]`, sent without its end
/// ([`STW_FLAG_NOW_FROM_TMARK`]), from the final mark termination `ev` of its cycle.
///
/// NB: Go 1.22+ gcStart (src/runtime/mgc.go): `now = startTheWorldWithSema(0, stw);
/// work.pauseNS += now - stw.startedStopping; work.tMark = now`, and gcMarkTermination adds its
/// own pause to work.pauseNS before the final startTheWorldWithSema: so the end is `work.tMark`,
/// and without it (runtime.work's phase clocks not read) `work.pauseNS` less the cycle's other
/// STWs.
fn fill_sweep_term(stw: &mut [Stw], i: usize, ev: &StwEvent, runtime_total: u64) {
    let others: u64 = stw
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(_, s)| s.duration_ns)
        .sum();
    let Some(s) = stw.get_mut(i) else {
        return;
    };
    s.duration_ns = if ev.cycle.flags & CYCLE_FLAG_WORK != 0 && ev.cycle.t[1] >= s.start_mono_ns {
        u64::try_from(ev.cycle.t[1] - s.start_mono_ns).unwrap_or(0)
    } else {
        runtime_total.saturating_sub(others)
    };
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
