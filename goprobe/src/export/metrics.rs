//! The instruments of one profiled process (docs/metrics.md): GC cycles and pauses recorded as
//! they complete, everything else observed from a [`Snapshot`] the watch loop refreshes.

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicU64, Ordering},
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter},
};

use crate::signal::gc::{Cycle, Stw};

/// Pause and phase histogram buckets, seconds: 10 µs to 1 s (docs/metrics.md).
pub const PAUSE_BUCKETS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// What the observable instruments report at the next collection.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub goroutines: Option<u64>,
    pub gomaxprocs: Option<u64>,
    pub gogc: Option<i64>,
    pub heap_goal: Option<u64>,
    pub memory_limit: Option<i64>,
    pub heap_marked: Option<u64>,
    pub heap_trigger: Option<u64>,
    pub cpu_limit: Option<f64>,
    /// Cumulative series by `code.function.name` (see `topn`).
    pub assist_seconds: Vec<(String, f64)>,
    pub alloc_bytes: Vec<(String, f64)>,
    pub alloc_objects: Vec<(String, f64)>,
    /// Whether the allocation series are exact counts (`--alloc exact`), not estimates.
    pub alloc_exact: bool,
    /// (minor, major), exact; `None` when page faults are not recorded.
    pub page_faults: Option<(u64, u64)>,
    /// Page-fault stack samples the per-stack estimates are made from.
    pub page_fault_samples: u64,
    /// BPF program runs each signal's per-second budget skipped, by signal name.
    pub budget_skipped: Vec<(&'static str, u64)>,
    pub lost_events: u64,
    pub lost_stacks: u64,
    pub agent_cpu_seconds: f64,
    pub agent_rss_bytes: u64,
    pub targets: u64,
    /// Kernel memory of goprobe's BPF maps (their `memlock`), bytes.
    pub bpf_map_bytes: u64,
    /// Stacks deleted from the kernel's stack map as unreferenced, since start.
    pub stacks_evicted: u64,
}

/// Shared between the watch loop (writer) and the SDK's collections (readers).
pub type SharedSnapshot = Arc<Mutex<Snapshot>>;

/// The synchronous instruments of one process.
pub struct CycleInstruments {
    pause: Histogram<f64>,
    other_stw: Histogram<f64>,
    phase: Histogram<f64>,
    cycles: Counter<u64>,
    cycles_by_trigger: Counter<u64>,
    snapshot: SharedSnapshot,
    /// Pause-triggered snapshots written by the agent, and those skipped (daemon::snapshot).
    snapshots: Counter<u64>,
    snapshots_skipped: Counter<u64>,
}

const NS: f64 = 1e-9;

impl CycleInstruments {
    /// Records a completed GC cycle: its pauses, phases and the settings it ran with.
    pub fn record_cycle(&self, c: &Cycle) {
        let trigger = KeyValue::new("gc.trigger", c.trigger.clone());
        for s in &c.stw {
            self.pause.record(
                s.duration_ns as f64 * NS,
                &[
                    KeyValue::new("gc.stw.reason", s.reason.clone()),
                    trigger.clone(),
                ],
            );
        }
        if let Some(p) = c.details.phases {
            for (name, ns) in [
                ("sweep_termination", p.sweep_termination),
                ("mark", p.mark),
                ("mark_termination", p.mark_termination),
            ] {
                self.phase
                    .record(ns as f64 * NS, &[KeyValue::new("gc.phase", name)]);
            }
        }
        self.cycles.add(1, &[]);
        self.cycles_by_trigger.add(1, &[trigger]);
        let d = &c.details;
        let mut s = lock(&self.snapshot);
        s.gogc = d.gogc.map(i64::from).or(s.gogc);
        s.heap_goal = d.heap_goal_bytes.or(s.heap_goal);
        // NB: the runtime keeps math.MaxInt64 as "no limit" (src/runtime/mgcpacer.go
        // `maxInt64` default of memoryLimit, Go 1.19–1.27); the convention omits it.
        if let Some(limit) = d.gomemlimit_bytes {
            s.memory_limit = (limit != i64::MAX).then_some(limit);
        }
        s.heap_marked = d.heap_marked_bytes.or(s.heap_marked);
        s.heap_trigger = d.heap_start_bytes.or(s.heap_trigger);
    }

    /// Counts one pause-triggered snapshot: `kind` is `gc` (a cycle's pause) or `stw` (a
    /// non-GC stop-the-world, `stw_reason` its reason); `written` false when it was skipped
    /// (rate limit or a failed write).
    pub fn record_snapshot(&self, kind: &'static str, stw_reason: Option<&str>, written: bool) {
        let mut attrs = vec![KeyValue::new("goprobe.snapshot.reason", kind)];
        if let Some(r) = stw_reason {
            attrs.push(KeyValue::new("gc.stw.reason", r.to_owned()));
        }
        if written {
            self.snapshots.add(1, &attrs);
        } else {
            self.snapshots_skipped.add(1, &attrs);
        }
    }

    /// Records a stop-the-world pause outside any GC cycle.
    pub fn record_other_stw(&self, s: &Stw) {
        self.other_stw.record(
            s.duration_ns as f64 * NS,
            &[KeyValue::new("gc.stw.reason", s.reason.clone())],
        );
    }
}

fn int(v: Option<u64>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

pub(super) fn lock(s: &SharedSnapshot) -> std::sync::MutexGuard<'_, Snapshot> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers every instrument of docs/metrics.md on `meter`.
pub(super) fn register(
    meter: &Meter,
    snapshot: &SharedSnapshot,
    export_failures: &Arc<AtomicU64>,
) -> CycleInstruments {
    let histogram = |name: &'static str, description: &'static str| {
        meter
            .f64_histogram(name)
            .with_unit("s")
            .with_description(description)
            .with_boundaries(PAUSE_BUCKETS.to_vec())
            .build()
    };
    let instruments = CycleInstruments {
        pause: histogram(
            "goprobe.gc.pause.duration",
            "Stop-the-world pauses of GC cycles, by reason and trigger",
        ),
        other_stw: histogram(
            "goprobe.stw.pause.duration",
            "Stop-the-world pauses outside GC cycles, by reason",
        ),
        phase: histogram("goprobe.gc.phase.duration", "GC phase durations, by phase"),
        cycles: meter
            .u64_counter("go.memory.gc.cycles")
            .with_unit("{gc_cycle}")
            .with_description("GC cycles completed since goprobe attached")
            .build(),
        cycles_by_trigger: meter
            .u64_counter("goprobe.gc.cycles")
            .with_unit("{gc_cycle}")
            .with_description("GC cycles completed, by what started them")
            .build(),
        snapshot: snapshot.clone(),
        snapshots: meter
            .u64_counter("goprobe.snapshots")
            .with_unit("{snapshot}")
            .with_description("Pause-triggered snapshots written, by what triggered them")
            .build(),
        snapshots_skipped: meter
            .u64_counter("goprobe.snapshots.skipped")
            .with_unit("{snapshot}")
            .with_description("Pause-triggered snapshots not written (rate limit, write error)")
            .build(),
    };
    observe(meter, snapshot, export_failures);
    instruments
}

/// Registers one observable instrument: `$builder` with its unit and description, and a callback
/// that runs `$body` with the snapshot locked as `$s` and the observer as `$o`.
macro_rules! observed {
    ($builder:expr, $unit:expr, $description:expr, $snapshot:expr, |$s:ident, $o:ident| $body:expr) => {{
        let snapshot = $snapshot.clone();
        $builder
            .with_unit($unit)
            .with_description($description)
            .with_callback(move |$o| {
                let $s = lock(&snapshot);
                $body;
            })
            .build();
    }};
}

/// An instrument's name, unit, description and what it reads from the snapshot.
type Def<F> = (&'static str, &'static str, &'static str, F);
type Int = fn(&Snapshot) -> Option<i64>;
type Float = fn(&Snapshot) -> Option<f64>;

/// The observable instruments, each reading the snapshot at collection time.
fn observe(meter: &Meter, snapshot: &SharedSnapshot, export_failures: &Arc<AtomicU64>) {
    observe_runtime(meter, snapshot);
    observe_gauges(meter, snapshot);
    observe_by_function(meter, snapshot);
    observe_counters(meter, snapshot, export_failures);
}

/// The Go runtime's values, as the semantic conventions name and type them.
fn observe_runtime(meter: &Meter, snapshot: &SharedSnapshot) {
    // Go runtime values, as the conventions type them (up-down counters).
    let up_down: [Def<Int>; 5] = [
        (
            "go.goroutine.count",
            "{goroutine}",
            "Live goroutines, as runtime.NumGoroutine counts them",
            |s| int(s.goroutines),
        ),
        (
            "go.processor.limit",
            "{thread}",
            "GOMAXPROCS in effect",
            |s| int(s.gomaxprocs),
        ),
        (
            "go.config.gogc",
            "%",
            "GOGC at the last completed GC cycle",
            |s| s.gogc,
        ),
        (
            "go.memory.gc.goal",
            "By",
            "Heap goal of the last completed GC cycle",
            |s| int(s.heap_goal),
        ),
        (
            "go.memory.limit",
            "By",
            "GOMEMLIMIT at the last completed GC cycle",
            |s| s.memory_limit,
        ),
    ];
    for (name, unit, description, get) in up_down {
        observed!(
            meter.i64_observable_up_down_counter(name),
            unit,
            description,
            snapshot,
            |s, o| {
                if let Some(v) = get(&s) {
                    o.observe(v, &[]);
                }
            }
        );
    }
}

/// Heap, CPU quota and goprobe's own gauges.
fn observe_gauges(meter: &Meter, snapshot: &SharedSnapshot) {
    let gauges: [Def<Float>; 6] = [
        (
            "goprobe.gc.heap.marked",
            "By",
            "Heap marked live by the last completed GC cycle",
            |s| s.heap_marked.map(|v| v as f64),
        ),
        (
            "goprobe.gc.heap.trigger",
            "By",
            "Heap size when the last completed GC cycle started",
            |s| s.heap_trigger.map(|v| v as f64),
        ),
        (
            "goprobe.cpu.limit",
            "{cpu}",
            "CPU quota of the process' cgroup, in CPUs",
            |s| s.cpu_limit,
        ),
        (
            "goprobe.agent.memory.rss",
            "By",
            "goprobe's resident memory",
            |s| Some(s.agent_rss_bytes as f64),
        ),
        (
            "goprobe.agent.targets",
            "{process}",
            "Processes goprobe is attached to",
            |s| Some(s.targets as f64),
        ),
        (
            "goprobe.agent.bpf.map.memory",
            "By",
            "Kernel memory of goprobe's BPF maps",
            |s| Some(s.bpf_map_bytes as f64),
        ),
    ];
    for (name, unit, description, get) in gauges {
        observed!(
            meter.f64_observable_gauge(name),
            unit,
            description,
            snapshot,
            |s, o| {
                if let Some(v) = get(&s) {
                    o.observe(v, &[]);
                }
            }
        );
    }
}

/// The per-function series (top N + `other`) and, with `--alloc exact`, the exact totals.
fn observe_by_function(meter: &Meter, snapshot: &SharedSnapshot) {
    type Series = fn(&Snapshot) -> &[(String, f64)];
    let by_function: [Def<Series>; 3] = [
        (
            "goprobe.gc.assist.time",
            "s",
            "Mark assist time, by the allocating function",
            |s| &s.assist_seconds,
        ),
        (
            "goprobe.alloc.bytes",
            "By",
            "Bytes allocated, by allocating function",
            |s| &s.alloc_bytes,
        ),
        (
            "goprobe.alloc.objects",
            "{object}",
            "Objects allocated, by allocating function",
            |s| &s.alloc_objects,
        ),
    ];
    for (name, unit, description, get) in by_function {
        observed!(
            meter.f64_observable_counter(name),
            unit,
            description,
            snapshot,
            |s, o| {
                for (f, v) in get(&s) {
                    o.observe(*v, &[KeyValue::new("code.function.name", f.clone())]);
                }
            }
        );
    }
    // NB: the conventions define these as the runtime's exact totals (/gc/heap/allocs:bytes,
    // :objects), so they are only reported when goprobe counts every allocation.
    let exact: [Def<Series>; 2] = [
        (
            "go.memory.allocated",
            "By",
            "Bytes allocated since goprobe attached (--alloc exact only)",
            |s| &s.alloc_bytes,
        ),
        (
            "go.memory.allocations",
            "{allocation}",
            "Allocations since goprobe attached (--alloc exact only)",
            |s| &s.alloc_objects,
        ),
    ];
    for (name, unit, description, get) in exact {
        observed!(
            meter.u64_observable_counter(name),
            unit,
            description,
            snapshot,
            |s, o| {
                if s.alloc_exact {
                    o.observe(get(&s).iter().map(|(_, v)| *v as u64).sum(), &[]);
                }
            }
        );
    }
}

/// Page faults and goprobe's health counters.
fn observe_counters(meter: &Meter, snapshot: &SharedSnapshot, export_failures: &Arc<AtomicU64>) {
    observed!(
        meter.u64_observable_counter("goprobe.page_faults"),
        "{fault}",
        "Page faults of the process since goprobe attached, by kind: exact, the kernel's own count",
        snapshot,
        |s, o| {
            if let Some((minor, major)) = s.page_faults {
                o.observe(minor, &[KeyValue::new("goprobe.fault.kind", "minor")]);
                o.observe(major, &[KeyValue::new("goprobe.fault.kind", "major")]);
            }
        }
    );
    observed!(
        meter.u64_observable_counter("goprobe.page_faults.samples"),
        "{sample}",
        "Page-fault stack samples taken: the per-stack page-fault profiles are estimates from these",
        snapshot,
        |s, o| {
            if s.page_faults.is_some() {
                o.observe(s.page_fault_samples, &[]);
            }
        }
    );
    observed!(
        meter.u64_observable_counter("goprobe.agent.budget.skipped"),
        "{run}",
        "BPF program runs skipped because the signal's per-second budget on their CPU was spent",
        snapshot,
        |s, o| {
            for &(signal, n) in &s.budget_skipped {
                o.observe(n, &[KeyValue::new("goprobe.signal", signal)]);
            }
        }
    );
    observed!(
        meter.u64_observable_counter("goprobe.agent.lost_events"),
        "{event}",
        "Events goprobe could not record",
        snapshot,
        |s, o| o.observe(s.lost_events, &[])
    );
    observed!(
        meter.u64_observable_counter("goprobe.agent.lost_stacks"),
        "{stack}",
        "Stacks the kernel side could not capture",
        snapshot,
        |s, o| o.observe(s.lost_stacks, &[])
    );
    observed!(
        meter.f64_observable_counter("goprobe.agent.cpu.time"),
        "s",
        "goprobe's own CPU time, user and system",
        snapshot,
        |s, o| o.observe(s.agent_cpu_seconds, &[])
    );
    observed!(
        meter.u64_observable_counter("goprobe.agent.stacks.evicted"),
        "{stack}",
        "Stacks deleted from the kernel's stack map as unreferenced",
        snapshot,
        |s, o| o.observe(s.stacks_evicted, &[])
    );
    let failures = export_failures.clone();
    meter
        .u64_observable_counter("goprobe.agent.export.failures")
        .with_unit("{export}")
        .with_description("OTLP exports that failed after retries")
        .with_callback(move |o| o.observe(failures.load(Ordering::Relaxed), &[]))
        .build();
}
