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

pub use observe::{
    End, Note, Observed, SessionError, WindowConfig, observe, self_usage, unavailable_fields,
};

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
    /// How many recent GC records to keep: all for a report (`attach`, `doctor`); the agent
    /// keeps the last few for its pause-triggered snapshots, or none.
    keep: Option<usize>,
    /// Unix time the probes were attached.
    pub attached_unix_ns: i64,
    /// The agent with profiles: what the takes since the last profiles counted, and since when
    /// ([`Self::absorb`], [`Self::take_profiles`]).
    interval: Option<(Reading, i64)>,
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
            keep: None,
            attached_unix_ns,
            interval: None,
        }
    }

    /// Keep no GC history: each cycle is exported and forgotten (memory stays flat however
    /// long the agent runs).
    pub fn without_history(mut self) -> Self {
        self.keep = Some(0);
        self
    }

    /// Keep only the last `n` cycles and the last `n` other stop-the-worlds (a bounded ring:
    /// memory stays flat, and the agent's snapshots see the recent past).
    pub fn with_recent(mut self, n: usize) -> Self {
        self.keep = Some(n);
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
        if let Some(n) = self.keep {
            keep_last(&mut self.tracker.cycles, n);
            keep_last(&mut self.tracker.other, n);
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
            .and_then(|s| s.latest())
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
        let missing = namer.borrow().missing;
        let inputs = Inputs {
            target,
            goroutines: self.goroutine_count(),
            lost_events: losses.lost_events(self.tracker.unreadable),
            skipped: losses.skipped,
            lost_stacks: losses.stacks + missing,
            bpf_map_bytes: crate::signal::cost::map_bytes(),
            stacks_evicted: losses.stacks_evicted,
            alloc_exact: options.alloc == AllocMode::Exact,
            read: &mut read,
        };
        self.refresher.refresh(m, inputs, all);
    }

    /// Takes in what the last take of the per-stack rows (`Probes::take`, the agent) counted for
    /// this process: into the exported series and, with `profiles`, into the next profiles.
    pub fn absorb(&mut self, probes: &Probes, profiles: bool) {
        let parts = Parts {
            cpu: profiles,
            creations: profiles,
            ..Parts::ALL
        };
        let mut delta = self.read(probes, parts);
        if let Some(a) = &mut delta.assist {
            // Cumulative per cycle, and only the last cycles are kept: not a take's.
            a.by_cycle.clear();
        }
        self.refresher.absorb(&delta);
        if profiles {
            match &mut self.interval {
                Some((sum, _)) => sum.add(delta),
                // The first interval starts at attach.
                None => self.interval = Some((delta, self.attached_unix_ns)),
            }
        }
    }

    /// The profiles of what the takes since the last call counted (the agent's profile
    /// interval), up to `end_unix_ns`; empty when nothing was absorbed.
    pub fn take_profiles(&mut self, end_unix_ns: i64) -> Vec<Profile> {
        let Some((reading, start_unix_ns)) = self.interval.take() else {
            return Vec::new();
        };
        // The next interval starts where this one ends.
        self.interval = Some((Reading::default(), end_unix_ns));
        let window = Window {
            start_unix_ns,
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

    /// This session's exported metrics, if it exports.
    pub fn metrics(&self) -> Option<&TargetMetrics> {
        self.metrics.as_ref()
    }

    /// Takes the metrics out, to end their export ([`crate::export::Exporter::push_final`]).
    pub fn take_metrics(&mut self) -> Option<TargetMetrics> {
        self.metrics.take()
    }
}

/// Drops all but the last `n` of `v`.
fn keep_last<T>(v: &mut Vec<T>, n: usize) {
    let extra = v.len().saturating_sub(n);
    v.drain(..extra);
}
