//! The engine: a [`Session`] is one observed process — its [`Target`], its GC tracker, its
//! goroutine sampler, its stack namer and its exported metrics — on probes it shares with the
//! other sessions of the same [`Probes`]. `goprobe attach` and `goprobe doctor` run one session
//! through [`observe`] (one window, then a report); `goprobe agent` runs one per process
//! (crate::daemon).
//!
//! Data flows one way through it: the probes' events and maps are decoded by `signal` into
//! records, which the report, the live view, the profiles and the exporters consume.

mod observe;
pub mod watch;
mod window;

use std::{cell::RefCell, rc::Rc};

use goprobe_common::StwEvent;

pub use observe::{End, Note, Observed, SessionError, WindowConfig, observe};

use crate::{
    analysis::Target,
    export::{
        TargetMetrics,
        collect::{Inputs, Refresher},
    },
    output::{Profile, profile},
    probe::{AllocMode, Options, Probes},
    report::Window,
    signal::{
        Parts, Reading, StackNamer,
        cost::Losses,
        gc::{Cycle, GcTracker},
        goroutines::GoroutineSampler,
    },
};

/// A stack namer, shared by the sessions of processes whose addresses are the same (the
/// processes of one non-PIE binary in `goprobe agent`).
pub type SharedNamer = Rc<RefCell<StackNamer>>;

/// One observed process.
pub struct Session {
    pub target: Target,
    pub options: Options,
    pub tracker: GcTracker,
    /// The goroutine count sampler; `None` with the signal off or unavailable in the target.
    pub goroutines: Option<GoroutineSampler>,
    /// The last goroutine count read ([`Self::read_goroutine_count`]).
    goroutine_count: Option<u64>,
    namer: SharedNamer,
    metrics: Option<TargetMetrics>,
    refresher: Refresher,
    /// Keep the GC records for a report (`attach`, `doctor`); the agent only exports them.
    keep_history: bool,
    /// Unix time the probes were attached.
    pub attached_unix_ns: i64,
}

impl Session {
    /// A session of `target`, attached at `attached_unix_ns`, with the `options` its probes
    /// were attached with.
    pub fn new(
        target: Target,
        options: Options,
        namer: SharedNamer,
        metrics: Option<TargetMetrics>,
        attached_unix_ns: i64,
    ) -> Self {
        let tracker = GcTracker::new(target.layout.stw_abi).with_go_minor(target.go_version.minor);
        let goroutines = options
            .goroutines
            .then(|| GoroutineSampler::new(&target))
            .transpose()
            .inspect_err(|e| tracing::warn!("{e}"))
            .ok()
            .flatten();
        Self {
            target,
            options,
            tracker,
            goroutines,
            goroutine_count: None,
            namer,
            metrics,
            refresher: Refresher::default(),
            keep_history: true,
            attached_unix_ns,
        }
    }

    /// Keep no GC history: each cycle is exported and forgotten (memory stays flat however
    /// long the agent runs).
    pub fn without_history(mut self) -> Self {
        self.keep_history = false;
        self
    }

    pub fn pid(&self) -> u32 {
        self.target.process.pid
    }

    /// The namer of this session's stacks.
    pub fn namer(&self) -> &SharedNamer {
        &self.namer
    }

    /// Folds one STW event of this process; records a completed cycle and non-GC pauses in the
    /// exported metrics. Returns the cycle the event completed.
    pub fn on_event(&mut self, ev: &StwEvent) -> Option<Cycle> {
        let others = self.tracker.other.len();
        let done = self.tracker.on_event(ev).cloned();
        if let Some(m) = &self.metrics {
            if let Some(c) = &done {
                m.cycles().record_cycle(c);
            }
            for s in self.tracker.other.get(others..).unwrap_or_default() {
                m.cycles().record_other_stw(s);
            }
        }
        if !self.keep_history {
            self.tracker.cycles.clear();
            self.tracker.other.clear();
        }
        done
    }

    /// One read of the `parts` of this process' stack-attributed signals.
    pub fn read(&self, probes: &Probes, parts: Parts) -> Reading {
        Reading::read(
            probes,
            &self.target,
            &self.options,
            parts,
            &mut self.namer.borrow_mut(),
        )
    }

    /// Reads the goroutine count now (the agent's reading: no history); the last one read
    /// stays when the read fails.
    pub fn read_goroutine_count(&mut self) {
        if let Some(s) = &self.goroutines {
            self.goroutine_count = s.read_count().ok().or(self.goroutine_count);
        }
    }

    /// The latest goroutine count: the sampler's last sample, else the last count read.
    pub fn goroutine_count(&self) -> Option<u64> {
        self.goroutines
            .as_ref()
            .and_then(|s| s.samples().last())
            .map(|s| s.count)
            .or(self.goroutine_count)
    }

    /// Refreshes the exported metrics (a no-op without export); per-stack series only every
    /// few seconds unless `all` (the last refresh before the final export).
    pub fn refresh_metrics(&mut self, probes: &Probes, all: bool) {
        let Some(m) = &self.metrics else {
            return;
        };
        let losses = Losses::read(probes);
        let (target, options, namer) = (&self.target, &self.options, &self.namer);
        let parts = Parts {
            cpu: false,
            creations: false,
            ..Parts::ALL
        };
        let mut read = || Reading::read(probes, target, options, parts, &mut namer.borrow_mut());
        let inputs = Inputs {
            target,
            goroutines: self.goroutine_count(),
            lost_events: losses.lost_events(self.tracker.unreadable),
            lost_stacks: losses.stacks,
            alloc_exact: options.alloc == AllocMode::Exact,
            read: &mut read,
        };
        self.refresher.refresh(m, inputs, all);
    }

    /// The profiles of every stack-attributed signal since attach, up to `end_unix_ns`.
    pub fn profiles(&self, probes: &Probes, end_unix_ns: i64) -> Vec<Profile> {
        let reading = self.read(probes, Parts::ALL);
        let window = Window {
            start_unix_ns: self.attached_unix_ns,
            end_unix_ns,
        };
        self.profiles_of(&reading, &window)
    }

    /// The profiles of `reading`, a read of this session's signals over `window`.
    fn profiles_of(&self, reading: &Reading, window: &Window) -> Vec<Profile> {
        let mappings = self.namer.borrow_mut().mappings(reading.locations());
        profile::collect(reading, &mappings, window)
    }

    /// Whether this session's metrics are exported.
    pub fn exports(&self) -> bool {
        self.metrics.is_some()
    }

    /// Takes the metrics out, to end their export ([`crate::export::Exporter::push_final`]).
    pub fn take_metrics(&mut self) -> Option<TargetMetrics> {
        self.metrics.take()
    }
}
