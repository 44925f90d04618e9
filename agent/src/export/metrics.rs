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
    /// (minor, major); `None` when page faults are not recorded.
    pub page_faults: Option<(u64, u64)>,
    pub lost_events: u64,
    pub lost_stacks: u64,
    pub agent_cpu_seconds: f64,
    pub agent_rss_bytes: u64,
    pub targets: u64,
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
    };
    observe(meter, snapshot, export_failures);
    instruments
}

/// The observable instruments, each reading the snapshot at collection time.
fn observe(meter: &Meter, snapshot: &SharedSnapshot, export_failures: &Arc<AtomicU64>) {
    let gauge = |name: &'static str,
                 unit: &'static str,
                 description: &'static str,
                 get: fn(&Snapshot) -> Option<i64>| {
        let s = snapshot.clone();
        meter
            .i64_observable_up_down_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |o| {
                if let Some(v) = get(&lock(&s)) {
                    o.observe(v, &[]);
                }
            })
            .build();
    };
    gauge(
        "go.goroutine.count",
        "{goroutine}",
        "Live goroutines, as runtime.NumGoroutine counts them",
        |s| int(s.goroutines),
    );
    gauge(
        "go.processor.limit",
        "{thread}",
        "GOMAXPROCS in effect",
        |s| int(s.gomaxprocs),
    );
    gauge(
        "go.config.gogc",
        "%",
        "GOGC at the last completed GC cycle",
        |s| s.gogc,
    );
    gauge(
        "go.memory.gc.goal",
        "By",
        "Heap goal of the last completed GC cycle",
        |s| int(s.heap_goal),
    );
    gauge(
        "go.memory.limit",
        "By",
        "GOMEMLIMIT at the last completed GC cycle",
        |s| s.memory_limit,
    );

    let f_gauge = |name: &'static str,
                   unit: &'static str,
                   description: &'static str,
                   get: fn(&Snapshot) -> Option<f64>| {
        let s = snapshot.clone();
        meter
            .f64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |o| {
                if let Some(v) = get(&lock(&s)) {
                    o.observe(v, &[]);
                }
            })
            .build();
    };
    f_gauge(
        "goprobe.gc.heap.marked",
        "By",
        "Heap marked live by the last completed GC cycle",
        |s| s.heap_marked.map(|v| v as f64),
    );
    f_gauge(
        "goprobe.gc.heap.trigger",
        "By",
        "Heap size when the last completed GC cycle started",
        |s| s.heap_trigger.map(|v| v as f64),
    );
    f_gauge(
        "goprobe.cpu.limit",
        "{cpu}",
        "CPU quota of the process' cgroup, in CPUs",
        |s| s.cpu_limit,
    );
    f_gauge(
        "goprobe.agent.memory.rss",
        "By",
        "goprobe's resident memory",
        |s| Some(s.agent_rss_bytes as f64),
    );
    f_gauge(
        "goprobe.agent.targets",
        "{process}",
        "Processes goprobe is attached to",
        |s| Some(s.targets as f64),
    );

    let by_function = |name: &'static str,
                       unit: &'static str,
                       description: &'static str,
                       get: fn(&Snapshot) -> &[(String, f64)]| {
        let s = snapshot.clone();
        meter
            .f64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |o| {
                for (f, v) in get(&lock(&s)) {
                    o.observe(*v, &[KeyValue::new("code.function.name", f.clone())]);
                }
            })
            .build();
    };
    by_function(
        "goprobe.gc.assist.time",
        "s",
        "Mark assist time, by the allocating function",
        |s| &s.assist_seconds,
    );
    by_function(
        "goprobe.alloc.bytes",
        "By",
        "Bytes allocated, by allocating function",
        |s| &s.alloc_bytes,
    );
    by_function(
        "goprobe.alloc.objects",
        "{object}",
        "Objects allocated, by allocating function",
        |s| &s.alloc_objects,
    );

    let s = snapshot.clone();
    meter
        .u64_observable_counter("goprobe.page_faults")
        .with_unit("{fault}")
        .with_description("Page faults in Go user code, by kind")
        .with_callback(move |o| {
            if let Some((minor, major)) = lock(&s).page_faults {
                o.observe(minor, &[KeyValue::new("goprobe.fault.kind", "minor")]);
                o.observe(major, &[KeyValue::new("goprobe.fault.kind", "major")]);
            }
        })
        .build();

    let counter = |name: &'static str,
                   unit: &'static str,
                   description: &'static str,
                   get: Box<dyn Fn() -> u64 + Send + Sync>| {
        meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |o| o.observe(get(), &[]))
            .build();
    };
    let s = snapshot.clone();
    counter(
        "goprobe.agent.lost_events",
        "{event}",
        "Events goprobe could not record",
        Box::new(move || lock(&s).lost_events),
    );
    let s = snapshot.clone();
    counter(
        "goprobe.agent.lost_stacks",
        "{stack}",
        "Stacks the kernel side could not capture",
        Box::new(move || lock(&s).lost_stacks),
    );
    let f = export_failures.clone();
    counter(
        "goprobe.agent.export.failures",
        "{export}",
        "OTLP exports that failed after retries",
        Box::new(move || f.load(Ordering::Relaxed)),
    );
    let s = snapshot.clone();
    meter
        .f64_observable_counter("goprobe.agent.cpu.time")
        .with_unit("s")
        .with_description("goprobe's own CPU time, user and system")
        .with_callback(move |o| o.observe(lock(&s).agent_cpu_seconds, &[]))
        .build();
}
