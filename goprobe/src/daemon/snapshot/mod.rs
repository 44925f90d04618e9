//! `[snapshots]`: an outside-in flight recorder. When a GC cycle's pause, or a non-GC
//! stop-the-world, of a profiled process lasts `pause_threshold` or more, the agent writes a
//! small report of that process' last seconds — the cycle (or the stop-the-world), the cycles
//! and stop-the-worlds before it in the window, the top mark assist, allocation, CPU and
//! page-fault sites of the window, the goroutine count and the process' CPU time — as JSON
//! into a rotated directory, and counts it in `goprobe.snapshots`.
//!
//! The report is `report.json`'s [`Report`], over the snapshot's window. Each session keeps
//! its last few cycles and stop-the-worlds ([`RECENT`], `Session::with_recent`); the stack
//! signals count since attach, so the window's sites are the difference between a reading now
//! and a baseline reading taken at least `window_s` earlier (a [`Recorder`] keeps two,
//! refreshed on the metrics tick).

use std::{
    collections::VecDeque,
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

mod window;

use super::{config, pprof};
use crate::{
    clock::{self, Clock},
    probe::Probes,
    report::{self, OwnCost, Report, TargetInfo, Window},
    session::{Session, self_usage, unavailable_fields},
    signal::{
        Parts, Reading,
        cost::Losses,
        gc::{Cycle, GcStacks, GcTracker},
        goroutines::Sample,
    },
};
use window::{cpu_ns, cycle_end, since, stw_end, top_sites};

/// The schema identifier written into every snapshot.
pub const SCHEMA: &str = "goprobe.snapshot.v1";

/// Cycles, and other stop-the-worlds, each session keeps for its snapshots: a window of a
/// process with a GC every 100 ms holds the last 32 (about 12 KiB per process).
pub const RECENT: usize = 32;

/// Sites per signal a snapshot lists (the totals count every site).
pub const TOP_SITES: usize = 10;

/// Goroutine count readings a recorder keeps (one per metrics tick, 5 s).
const GOROUTINE_READINGS: usize = 16;

/// The signals a snapshot reads: every stack signal but goroutine creation sites.
const PARTS: Parts = Parts {
    creations: false,
    ..Parts::ALL
};

/// One snapshot file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub schema: String,
    pub trigger: TriggerInfo,
    /// CPU time (user + system) of the process in the window, from `/proc/<pid>/stat`.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// The window's report: `gc` the cycles and stop-the-worlds that ended in it (the trigger
    /// last), the signals' sites counted in it (top [`TOP_SITES`] each).
    pub report: Report,
}

/// What made a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TriggerInfo {
    /// `gc`: a GC cycle's pause; `stw`: a stop-the-world outside GC.
    pub kind: String,
    /// The GC cycle (`kind` `gc`).
    #[serde(default)]
    pub cycle: Option<u32>,
    /// The stop-the-world's reason (`kind` `stw`), as `report.gc.other_stw[].reason`.
    #[serde(default)]
    pub stw_reason: Option<String>,
    /// The cycle's pause (the sum of its stop-the-worlds, as `MemStats.PauseNs`) or the
    /// stop-the-world's.
    pub pause_ns: u64,
    pub threshold_ns: u64,
    /// When the pause began: the cycle's first stop-the-world, or the stop-the-world.
    pub start_unix_ns: i64,
}

/// A pause over the threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    Cycle {
        cycle: u32,
        pause_ns: u64,
        start_mono_ns: i64,
        /// When the cycle ended: the snapshot's records end with it.
        end_mono_ns: i64,
    },
    Stw {
        reason: String,
        pause_ns: u64,
        start_mono_ns: i64,
        end_mono_ns: i64,
    },
}

impl Trigger {
    fn kind(&self) -> &'static str {
        match self {
            Self::Cycle { .. } => "gc",
            Self::Stw { .. } => "stw",
        }
    }

    fn end_mono_ns(&self) -> i64 {
        match self {
            Self::Cycle { end_mono_ns, .. } | Self::Stw { end_mono_ns, .. } => *end_mono_ns,
        }
    }

    fn stw_reason(&self) -> Option<&str> {
        match self {
            Self::Cycle { .. } => None,
            Self::Stw { reason, .. } => Some(reason),
        }
    }
}

/// The agent's snapshots: where and when.
pub struct Snapshots {
    dir: PathBuf,
    threshold_ns: u64,
    window: Duration,
    per_minute: u32,
    max_files: usize,
    max_bytes: u64,
}

/// A reading of a process' signals and CPU time, the start of a snapshot's window.
struct Baseline {
    mono_ns: i64,
    reading: Reading,
    cpu_ns: Option<u64>,
}

/// What one process' snapshots need besides its session: baselines, goroutine counts, and its
/// rate limit.
pub struct Recorder {
    /// At most two, oldest first: the oldest starts the window.
    baselines: VecDeque<Baseline>,
    goroutines: VecDeque<Sample>,
    tokens: f64,
    tokens_at: Instant,
}

impl Snapshots {
    /// Snapshots as `config` says, its directory created; `None` when they are off.
    pub fn new(config: &config::Snapshots) -> io::Result<Option<Self>> {
        let Ok(Some(threshold_ns)) = config.threshold_ns() else {
            return Ok(None);
        };
        let dir = config.dir();
        std::fs::create_dir_all(&dir)?;
        Ok(Some(Self {
            dir,
            threshold_ns,
            window: config.window(),
            per_minute: config.max_per_minute,
            max_files: config.max_files.max(1),
            max_bytes: config.max_mb.saturating_mul(1 << 20),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The recorder of a process attached now (`pid`): its signals count from zero.
    pub fn recorder(&self, pid: u32) -> Recorder {
        Recorder {
            baselines: VecDeque::from([Baseline {
                mono_ns: clock::monotonic_ns(),
                reading: Reading::default(),
                cpu_ns: cpu_ns(pid),
            }]),
            goroutines: VecDeque::new(),
            tokens: f64::from(self.per_minute),
            tokens_at: Instant::now(),
        }
    }

    /// The most recent other stop-the-world of `session` (its start), to pass to
    /// [`Self::triggers`] after the next event.
    pub fn last_other(session: &Session) -> Option<i64> {
        session.tracker.other.last().map(|s| s.start_mono_ns)
    }

    /// The pauses over the threshold of the event `session` just took: `done` the cycle it
    /// completed, `last_other` what [`Self::last_other`] said before it.
    pub fn triggers(
        &self,
        session: &Session,
        last_other: Option<i64>,
        done: Option<&Cycle>,
    ) -> Vec<Trigger> {
        let mut out = Vec::new();
        if let Some(c) = done.filter(|c| c.pause_ns >= self.threshold_ns) {
            out.push(Trigger::Cycle {
                cycle: c.cycle,
                pause_ns: c.pause_ns,
                start_mono_ns: c.stw.first().map_or(0, |s| s.start_mono_ns),
                end_mono_ns: cycle_end(c),
            });
        }
        if let Some(s) = session.tracker.other.last()
            && Some(s.start_mono_ns) != last_other
            && s.duration_ns >= self.threshold_ns
        {
            out.push(Trigger::Stw {
                reason: s.reason.clone(),
                pause_ns: s.duration_ns,
                start_mono_ns: s.start_mono_ns,
                end_mono_ns: stw_end(s),
            });
        }
        out
    }

    /// The metrics tick: records the goroutine count and, once the newest baseline is a window
    /// old, takes a new one (the oldest of the two then starts the window).
    pub fn tick(&self, probes: &Probes, session: &Session, rec: &mut Recorder, clock: &Clock) {
        let now = clock::monotonic_ns();
        if let Some(count) = session.goroutine_count() {
            rec.goroutines.push_back(Sample {
                t_unix_ns: clock.to_unix(now),
                count,
            });
            if rec.goroutines.len() > GOROUTINE_READINGS {
                rec.goroutines.pop_front();
            }
        }
        let window = i64::try_from(self.window.as_nanos()).unwrap_or(i64::MAX);
        if rec
            .baselines
            .back()
            .is_some_and(|b| now - b.mono_ns >= window)
        {
            rec.baselines.push_back(Baseline {
                mono_ns: now,
                reading: session.read(probes, PARTS),
                cpu_ns: cpu_ns(session.pid()),
            });
            if rec.baselines.len() > 2 {
                rec.baselines.pop_front();
            }
        }
    }

    /// Writes the snapshot of `trigger` (unless the process' rate limit says no) and counts it.
    pub fn take(
        &self,
        probes: &Probes,
        session: &mut Session,
        rec: &mut Recorder,
        trigger: &Trigger,
        clock: &Clock,
    ) {
        let pid = session.pid();
        let written = if rec.allow(self.per_minute) {
            self.write(probes, session, rec, trigger, clock)
        } else {
            info!(pid, ?trigger, "snapshot skipped: max_per_minute reached");
            false
        };
        if let Some(m) = session.metrics() {
            m.cycles()
                .record_snapshot(trigger.kind(), trigger.stw_reason(), written);
        }
    }

    /// Builds and writes one snapshot; whether it was written.
    fn write(
        &self,
        probes: &Probes,
        session: &mut Session,
        rec: &Recorder,
        trigger: &Trigger,
        clock: &Clock,
    ) -> bool {
        session.read_goroutine_count();
        let snapshot = self.build(probes, session, rec, trigger, clock);
        let pid = session.pid();
        let exe = session
            .target
            .exe
            .file_name()
            .map_or_else(|| "go".into(), |n| pprof::safe_name(&n.to_string_lossy()));
        let what = match trigger {
            Trigger::Cycle { cycle, .. } => format!("gc-{cycle}"),
            Trigger::Stw { reason, .. } => format!("stw-{}", pprof::safe_name(reason)),
        };
        let at_us = snapshot.trigger.start_unix_ns / 1000;
        let name = format!("{exe}-{pid}-{what}-{at_us}.json");
        let bytes = match serde_json::to_vec(&snapshot) {
            Ok(b) => b,
            Err(e) => {
                warn!(pid, "snapshot not written: {e}");
                return false;
            }
        };
        if let Err(e) = pprof::write_file(&self.dir, &name, &bytes) {
            warn!(pid, dir = %self.dir.display(), "snapshot not written: {name}: {e}");
            return false;
        }
        pprof::rotate_dir(&self.dir, ".json", self.max_bytes, self.max_files);
        info!(
            pid,
            kind = trigger.kind(),
            cycle = snapshot.trigger.cycle,
            stw_reason = snapshot.trigger.stw_reason,
            pause_ms = snapshot.trigger.pause_ns as f64 / 1e6,
            bytes = bytes.len(),
            file = %name,
            "snapshot written"
        );
        true
    }

    /// The snapshot of `trigger`: the report of the window from the oldest baseline to now.
    fn build(
        &self,
        probes: &Probes,
        session: &Session,
        rec: &Recorder,
        trigger: &Trigger,
        clock: &Clock,
    ) -> Snapshot {
        let now = clock::monotonic_ns();
        // The recorder always holds a baseline; without one, the window starts at attach.
        let empty = Baseline {
            mono_ns: session.attached_unix_ns - clock.to_unix(0),
            reading: Reading::default(),
            cpu_ns: None,
        };
        let base = rec.baselines.front().unwrap_or(&empty);
        // With the agent's rows taken every metrics tick, a read is already the last take's
        // interval (5-10 s), not a count since attach to subtract a baseline from.
        let reading = if probes.rows_taken() {
            session.read(probes, PARTS)
        } else {
            since(&session.read(probes, PARTS), &base.reading)
        };
        let target = &session.target;
        let mut tracker = GcTracker::new(target.layout.stw_abi);
        // The records of the window up to the trigger (later ones of the same drain go to
        // their own snapshots).
        let (from, to) = (base.mono_ns, trigger.end_mono_ns());
        tracker.cycles = session
            .tracker
            .cycles
            .iter()
            .filter(|c| (from..=to).contains(&cycle_end(c)))
            .cloned()
            .collect();
        tracker.other = session
            .tracker
            .other
            .iter()
            .filter(|s| s.start_mono_ns >= from && stw_end(s) <= to)
            .cloned()
            .collect();
        let gc_stacks = GcStacks::new(&tracker, |c| session.namer().borrow_mut().stack(probes, c));
        let start_unix = clock.to_unix(base.mono_ns);
        let mut goroutines: Vec<Sample> = rec
            .goroutines
            .iter()
            .filter(|s| s.t_unix_ns >= start_unix)
            .copied()
            .collect();
        if let Some(count) = session.goroutine_count() {
            goroutines.push(Sample {
                t_unix_ns: clock.to_unix(now),
                count,
            });
        }
        let losses = Losses::read(probes);
        let (cpu_ms, max_rss_kb) = self_usage();
        let mut report = Report::build(report::Inputs {
            target: TargetInfo {
                pid: session.pid(),
                exe: target.exe.display().to_string(),
                go_version: target.go_version.raw.clone(),
                stripped: target.stripped,
            },
            window: Window {
                start_unix_ns: start_unix,
                end_unix_ns: clock.to_unix(now),
            },
            goprobe: OwnCost {
                attach_ms: 0,
                cpu_ms,
                max_rss_kb,
                lost_events: losses.lost_events(session.tracker.unreadable),
                lost_stacks: losses.stacks,
                programs: Vec::new(),
                rss_kb: crate::signal::cost::rss_bytes() / 1024,
                bpf_map_bytes: crate::signal::cost::map_bytes(),
                budget: report::perf::budget_uses(
                    &session.options.effective_budget().caps,
                    &losses.skipped,
                ),
            },
            tracker: &tracker,
            gc_stacks: &gc_stacks,
            clock,
            unavailable: unavailable_fields(target),
            reading: &reading,
            goroutines: session.options.goroutines.then_some(&goroutines[..]),
        });
        top_sites(&mut report);
        let (kind, cycle, stw_reason, pause_ns, start) = match trigger {
            Trigger::Cycle {
                cycle,
                pause_ns,
                start_mono_ns,
                ..
            } => ("gc", Some(*cycle), None, *pause_ns, *start_mono_ns),
            Trigger::Stw {
                reason,
                pause_ns,
                start_mono_ns,
                ..
            } => ("stw", None, Some(reason.clone()), *pause_ns, *start_mono_ns),
        };
        let cpu_seconds = base
            .cpu_ns
            .zip(cpu_ns(session.pid()))
            .map(|(a, b)| b.saturating_sub(a) as f64 / 1e9);
        Snapshot {
            schema: SCHEMA.to_owned(),
            trigger: TriggerInfo {
                kind: kind.to_owned(),
                cycle,
                stw_reason,
                pause_ns,
                threshold_ns: self.threshold_ns,
                start_unix_ns: clock.to_unix(start),
            },
            cpu_seconds,
            report,
        }
    }
}

impl Recorder {
    /// Takes one token of the process' rate limit: a burst of `per_minute`, refilled at
    /// `per_minute` a minute.
    fn allow(&mut self, per_minute: u32) -> bool {
        let cap = f64::from(per_minute);
        let now = Instant::now();
        let refill = now.duration_since(self.tokens_at).as_secs_f64() * cap / 60.0;
        self.tokens = (self.tokens + refill).min(cap);
        self.tokens_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests;
