//! What each GC cycle was — phase durations, heap sizes, GOGC and GOMEMLIMIT — and how long each
//! stop-the-world took to stop the world, from the [`CycleState`] the probes read.
//!
//! The phases are the three wall-clock numbers `GODEBUG=gctrace=1` prints ("A+B+C ms clock"),
//! from the same `runtime.work` timestamps; the heap sizes are its "H0->H1->H2 MB" and the goal
//! its "G MB goal" (src/runtime/mgc.go gcMarkTermination), in bytes.

use goprobe_common::{
    CYCLE_FLAG_HEAP_GOAL, CYCLE_FLAG_SETTINGS, CYCLE_FLAG_STOPPING, CYCLE_FLAG_WORK, CycleState,
};
use tracing::warn;

/// Wall-clock durations of a cycle's three phases, nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    /// `work.tMark − work.tSweepTerm`: sweep termination (stop-the-world #1).
    pub sweep_termination: u64,
    /// `work.tMarkTerm − work.tMark`: concurrent mark (restarts included).
    pub mark: u64,
    /// `work.tEnd − work.tMarkTerm`: mark termination (the last stop-the-world, until `tEnd`).
    pub mark_termination: u64,
}

/// A cycle's readings at its final stop-the-world. `None` where it could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CycleDetails {
    /// `work.tSweepTerm`, CLOCK_MONOTONIC ns: when the cycle began (just before the first STW).
    pub start_mono_ns: Option<i64>,
    /// `work.tEnd`, CLOCK_MONOTONIC ns: when mark termination finished.
    pub end_mono_ns: Option<i64>,
    pub phases: Option<Phases>,
    /// `work.heap0`: live heap when the cycle started.
    pub heap_start_bytes: Option<u64>,
    /// `work.heap1`: live heap at mark termination.
    pub heap_end_bytes: Option<u64>,
    /// `work.heap2`: bytes marked (live after the cycle).
    pub heap_marked_bytes: Option<u64>,
    /// `gcController.lastHeapGoal`: the heap goal of this cycle.
    pub heap_goal_bytes: Option<u64>,
    /// `gcController.gcPercent`: GOGC in effect (-1 = off).
    pub gogc: Option<i32>,
    /// `gcController.memoryLimit`: GOMEMLIMIT in effect, bytes.
    pub gomemlimit_bytes: Option<i64>,
}

impl CycleDetails {
    /// Decodes the readings of a cycle's final mark termination.
    pub fn from_state(cycle: u32, s: &CycleState) -> Self {
        let mut d = Self::default();
        if s.flags & CYCLE_FLAG_WORK != 0 {
            let [t0, t1, t2, t3] = s.t;
            let diff = |a: i64, b: i64| u64::try_from(b - a).ok();
            match (t0 > 0, diff(t0, t1), diff(t1, t2), diff(t2, t3)) {
                (true, Some(sweep_termination), Some(mark), Some(mark_termination)) => {
                    d.phases = Some(Phases {
                        sweep_termination,
                        mark,
                        mark_termination,
                    });
                    d.start_mono_ns = Some(t0);
                    d.end_mono_ns = Some(t3);
                }
                _ => warn!(cycle, t = ?s.t, "GC phase timestamps out of order; phases dropped"),
            }
            let [h0, h1, h2] = s.heap;
            d.heap_start_bytes = Some(h0);
            d.heap_end_bytes = Some(h1);
            d.heap_marked_bytes = Some(h2);
        }
        if s.flags & CYCLE_FLAG_HEAP_GOAL != 0 {
            d.heap_goal_bytes = Some(s.heap_goal);
        }
        if s.flags & CYCLE_FLAG_SETTINGS != 0 {
            d.gogc = Some(s.gc_percent);
            d.gomemlimit_bytes = Some(s.memory_limit);
        }
        d
    }
}

/// NB: `worldStop.finishedStopping` exists from Go 1.23 (src/runtime/proc.go; Go 1.22's
/// worldStop is `{reason; start}` and Go 1.19/1.21 pass no worldStop at all).
pub const STOPPING_MIN_MINOR: u32 = 23;

/// Time from `startedStopping` to `finishedStopping` (what the runtime records in
/// `/sched/pauses/stopping/*`), when the target's Go version passes both.
pub fn stopping_ns(minor: u32, started: i64, s: &CycleState) -> Option<u64> {
    if minor < STOPPING_MIN_MINOR || s.flags & CYCLE_FLAG_STOPPING == 0 || started <= 0 {
        return None;
    }
    u64::try_from(s.finished_stopping - started).ok()
}

/// Report field names (`gc.unavailable`) this target cannot provide.
pub fn unavailable(minor: u32, has_gc_controller: bool, has_heap_goal_offset: bool) -> Vec<String> {
    let mut out = Vec::new();
    if minor < STOPPING_MIN_MINOR {
        out.push("stopping_ns");
    }
    if !has_gc_controller {
        out.extend(["heap_goal_bytes", "gogc", "gomemlimit_bytes"]);
    } else if !has_heap_goal_offset {
        out.push("heap_goal_bytes");
    }
    out.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(t: [i64; 4]) -> CycleState {
        CycleState {
            flags: CYCLE_FLAG_WORK | CYCLE_FLAG_SETTINGS,
            gc_percent: 100,
            t,
            heap: [4 << 20, 5 << 20, 2 << 20],
            memory_limit: i64::MAX,
            ..CycleState::default()
        }
    }

    #[test]
    fn phases_are_differences_of_work_timestamps() {
        let d = CycleDetails::from_state(3, &state([1_000, 1_250, 9_250, 9_300]));
        assert_eq!(
            d.phases,
            Some(Phases {
                sweep_termination: 250,
                mark: 8_000,
                mark_termination: 50
            })
        );
        assert_eq!((d.start_mono_ns, d.end_mono_ns), (Some(1_000), Some(9_300)));
        assert_eq!(d.heap_end_bytes, Some(5 << 20));
        assert_eq!(d.heap_goal_bytes, None, "goal flag not set");
        assert_eq!((d.gogc, d.gomemlimit_bytes), (Some(100), Some(i64::MAX)));
    }

    #[test]
    fn out_of_order_or_unset_timestamps_give_no_phases() {
        assert_eq!(
            CycleDetails::from_state(1, &state([5, 4, 6, 7])).phases,
            None
        );
        assert_eq!(
            CycleDetails::from_state(1, &state([0, 0, 0, 0])).phases,
            None
        );
        assert_eq!(
            CycleDetails::from_state(1, &CycleState::default()),
            CycleDetails::default()
        );
    }

    #[test]
    fn stopping_only_from_go_1_23() {
        let s = CycleState {
            flags: CYCLE_FLAG_STOPPING,
            finished_stopping: 1_500,
            ..CycleState::default()
        };
        assert_eq!(stopping_ns(23, 1_000, &s), Some(500));
        assert_eq!(stopping_ns(22, 1_000, &s), None);
        assert_eq!(stopping_ns(27, 2_000, &s), None, "finished before started");
        assert_eq!(unavailable(21, true, true), ["stopping_ns"]);
        assert!(unavailable(27, true, true).is_empty());
        assert_eq!(
            unavailable(26, false, false),
            ["heap_goal_bytes", "gogc", "gomemlimit_bytes"]
        );
    }
}
