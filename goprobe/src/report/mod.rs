//! Domain records → outputs. `report.json` (schema `goprobe.report.v2`, documented in
//! docs/report-schema.md) is the one document every other output derives from.

pub mod alloc;
pub mod goroutines;
pub mod perf;
pub mod sites;
pub mod stacks;
pub mod summary;

use serde::{Deserialize, Serialize};

pub use alloc::{Alloc, AllocSite};
pub use goroutines::{CreationSite, GoroutineSample, Goroutines};
pub use perf::{Cpu, CpuSite, FaultSite, PageFaults};
pub use stacks::{Assist, AssistSite};

use crate::{
    clock::Clock,
    signal::{
        Reading,
        assist::Assists,
        cycle::Phases,
        gc::{self, GcStacks},
        goroutines::Sample,
    },
};

/// The schema identifier written into every report.
pub const SCHEMA: &str = "goprobe.report.v2";

/// What a window's report is made of besides the signals' [`Reading`].
pub struct Inputs<'a> {
    pub target: TargetInfo,
    pub window: Window,
    pub goprobe: OwnCost,
    pub tracker: &'a gc::GcTracker,
    /// The stacks of `tracker`'s records.
    pub gc_stacks: &'a GcStacks,
    pub clock: &'a Clock,
    /// Report fields the target cannot provide (`Gc::unavailable`).
    pub unavailable: Vec<String>,
    /// The window's one read of the stack-attributed signals.
    pub reading: &'a Reading,
    /// The goroutine count readings; `None` with the goroutine signal off.
    pub goroutines: Option<&'a [Sample]>,
}

impl Report {
    /// The report of one window.
    pub fn build(i: Inputs<'_>) -> Self {
        let mut gc = Gc::from_tracker(i.tracker, i.clock, i.unavailable);
        let no_assist = Assists::default();
        gc.add_stacks(i.gc_stacks, i.reading.assist.as_ref().unwrap_or(&no_assist));
        Self {
            schema: SCHEMA.to_owned(),
            target: i.target,
            window: i.window,
            goprobe: i.goprobe,
            gc,
            alloc: i.reading.alloc.as_ref().map(Alloc::from_record),
            goroutines: i
                .goroutines
                .map(|samples| Goroutines::build(samples, i.reading.creations.as_ref())),
            page_faults: i.reading.page_faults.as_ref().map(PageFaults::from_record),
            cpu: i.reading.cpu.as_ref().map(Cpu::from_record),
        }
    }
}

/// A whole report. Field names are a public contract: once landed, keep them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: String,
    pub target: TargetInfo,
    pub window: Window,
    pub goprobe: OwnCost,
    pub gc: Gc,
    /// Allocations; `null` with `--alloc off`.
    #[serde(default)]
    pub alloc: Option<Alloc>,
    /// Goroutine count and creation sites; `null` with `--no-goroutines`.
    #[serde(default)]
    pub goroutines: Option<Goroutines>,
    /// Page faults; `null` with `--no-page-faults`.
    #[serde(default)]
    pub page_faults: Option<PageFaults>,
    /// On-CPU samples; `null` with `--cpu-hz 0`.
    #[serde(default)]
    pub cpu: Option<Cpu>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetInfo {
    pub pid: u32,
    pub exe: String,
    pub go_version: String,
    pub stripped: bool,
}

/// The time goprobe was attached, unix nanoseconds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Window {
    pub start_unix_ns: i64,
    pub end_unix_ns: i64,
}

/// What goprobe itself cost (`report.goprobe`; `agent` before schema v2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OwnCost {
    /// From start of `goprobe attach` to all probes attached.
    pub attach_ms: u64,
    /// User + system CPU of goprobe over its whole run.
    pub cpu_ms: u64,
    pub max_rss_kb: u64,
    /// Events the kernel side dropped.
    pub lost_events: u64,
    /// Stacks the kernel side could not capture (stack map full, or a bucket collision); their
    /// time and pauses are still reported, with an empty stack.
    #[serde(default)]
    pub lost_stacks: u64,
    /// Per BPF program: how often it ran and for how long, from the kernel's program info at the
    /// end of the window (0 unless BPF run-time statistics were on; docs/report-schema.md).
    #[serde(default)]
    pub programs: Vec<crate::signal::cost::ProgramStats>,
    /// Per signal: the cap on its BPF work (program runs per CPU and second, 0 = none) and the
    /// runs it turned away since the probes were loaded (docs/report-schema.md).
    #[serde(default)]
    pub budget: Vec<perf::BudgetUse>,
    /// goprobe's resident memory when the watch ended, KiB (`max_rss_kb` is the peak).
    #[serde(default)]
    pub rss_kb: u64,
    /// Kernel memory of goprobe's BPF maps when the watch ended, bytes (each map's own
    /// `memlock` accounting).
    #[serde(default)]
    pub bpf_map_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Gc {
    pub cycles: Vec<Cycle>,
    pub other_stw: Vec<Stw>,
    /// Report field names the target's Go version or binary cannot provide (always `null` in it).
    #[serde(default)]
    pub unavailable: Vec<String>,
    /// Mark assist time in the window, by the stack that allocated.
    #[serde(default)]
    pub assist: Assist,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Cycle {
    pub cycle: u32,
    pub trigger: String,
    pub pause_ns: u64,
    pub stw: Vec<Stw>,
    /// `work.tSweepTerm`: when the cycle began.
    #[serde(default)]
    pub start_unix_ns: Option<i64>,
    /// `work.tEnd`: when mark termination finished.
    #[serde(default)]
    pub end_unix_ns: Option<i64>,
    /// The three phases gctrace prints as "ms clock".
    #[serde(default)]
    pub phases_ns: Option<PhasesNs>,
    #[serde(default)]
    pub heap_start_bytes: Option<u64>,
    #[serde(default)]
    pub heap_end_bytes: Option<u64>,
    #[serde(default)]
    pub heap_marked_bytes: Option<u64>,
    #[serde(default)]
    pub heap_goal_bytes: Option<u64>,
    #[serde(default)]
    pub gogc: Option<i32>,
    #[serde(default)]
    pub gomemlimit_bytes: Option<i64>,
    /// Forced cycles (`runtime.GC()`, `debug.FreeOSMemory()`): the stack that called
    /// `runtime.gcStart`, frame names leaf first (empty if it could not be captured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_stack: Option<Vec<String>>,
    /// Mark assist time of the cycle seen while attached (all goroutines, ns).
    #[serde(default)]
    pub assist_ns: u64,
}

/// Wall-clock durations of a cycle's phases, nanoseconds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PhasesNs {
    pub sweep_termination: u64,
    pub mark: u64,
    pub mark_termination: u64,
}

impl From<Phases> for PhasesNs {
    fn from(p: Phases) -> Self {
        Self {
            sweep_termination: p.sweep_termination,
            mark: p.mark,
            mark_termination: p.mark_termination,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stw {
    pub reason: String,
    pub start_unix_ns: i64,
    pub duration_ns: u64,
    /// Go 1.23+: time to stop the world (`finishedStopping − startedStopping`).
    #[serde(default)]
    pub stopping_ns: Option<u64>,
    /// Non-GC STWs: the stack that called `runtime.stopTheWorld`, frame names leaf first (empty
    /// if it could not be captured). Absent on GC STWs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Vec<String>>,
}

impl Stw {
    fn from_signal(s: &gc::Stw, clock: &Clock) -> Self {
        Self {
            reason: s.reason.clone(),
            start_unix_ns: clock.to_unix(s.start_mono_ns),
            duration_ns: s.duration_ns,
            stopping_ns: s.stopping_ns,
            stack: None,
        }
    }
}

impl Gc {
    /// The GC part of a report from a tracker's records; `unavailable` lists the fields the
    /// target cannot provide (`signal::cycle::unavailable`).
    pub fn from_tracker(t: &gc::GcTracker, clock: &Clock, unavailable: Vec<String>) -> Self {
        Self {
            cycles: t
                .cycles
                .iter()
                .map(|c| {
                    let d = &c.details;
                    Cycle {
                        cycle: c.cycle,
                        trigger: c.trigger.clone(),
                        pause_ns: c.pause_ns,
                        stw: c.stw.iter().map(|s| Stw::from_signal(s, clock)).collect(),
                        start_unix_ns: d.start_mono_ns.map(|t| clock.to_unix(t)),
                        end_unix_ns: d.end_mono_ns.map(|t| clock.to_unix(t)),
                        phases_ns: d.phases.map(PhasesNs::from),
                        heap_start_bytes: d.heap_start_bytes,
                        heap_end_bytes: d.heap_end_bytes,
                        heap_marked_bytes: d.heap_marked_bytes,
                        heap_goal_bytes: d.heap_goal_bytes,
                        gogc: d.gogc,
                        gomemlimit_bytes: d.gomemlimit_bytes,
                        trigger_stack: None,
                        assist_ns: 0,
                    }
                })
                .collect(),
            other_stw: t.other.iter().map(|s| Stw::from_signal(s, clock)).collect(),
            unavailable,
            assist: Assist::default(),
        }
    }
}
