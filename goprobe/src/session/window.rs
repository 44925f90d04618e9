//! The watch loop's host for one window of `goprobe attach` and `goprobe doctor`: one session
//! and the live view; the watch ends on the target's exec.

use std::time::Instant;

use aya::maps::{MapData, RingBuf};
use tracing::debug;

use super::{
    End, Session,
    watch::{Host, Tick, exec_time},
};
use crate::{
    clock::Clock,
    live::{Live, signals::LiveSignals},
    probe::Probes,
    signal::Parts,
};

/// The loop's host for one window: one session, the live view.
pub(super) struct Watching<'a> {
    pub(super) probes: &'a mut Probes,
    pub(super) session: &'a mut Session,
    pub(super) live: &'a mut Live,
    pub(super) live_signals: LiveSignals,
    pub(super) clock: &'a Clock,
    /// The time of the target's exec, once seen (CLOCK_MONOTONIC ns).
    pub(super) exec_at: Option<u64>,
    pub(super) started: Instant,
}

impl Host for Watching<'_> {
    fn events_fd(&self) -> std::os::fd::RawFd {
        self.probes.events_fd()
    }

    /// NB: the lifecycle ring is read before each drain of the STW events, so that none of the
    /// new program's (a re-exec of the same binary re-arms the uprobes; its runtime stops the
    /// world for the first time milliseconds after the exec) is taken for the target's,
    /// whichever of the two rings is found ready first.
    fn drain(&mut self, lifecycle: Option<&mut RingBuf<MapData>>) -> Option<End> {
        if self.exec_at.is_none()
            && let Some(ring) = lifecycle
        {
            self.exec_at = exec_time(ring, self.session.pid());
        }
        drain_cycles(self.probes, self.session, self.live, self.exec_at);
        self.exec_at.map(|at_ns| End::TargetExeced { at_ns })
    }

    fn lifecycle(&mut self, ring: &mut RingBuf<MapData>) -> Option<End> {
        self.drain(Some(ring))
    }

    fn tick(&mut self, tick: Tick, lifecycle: Option<&mut RingBuf<MapData>>) -> Option<End> {
        match tick {
            Tick::Drain => {
                if self.session.options.page_faults {
                    // The totals of a process that exits are those of the last read.
                    crate::signal::pagefault::note_totals(self.probes, self.session.pid());
                }
                return self.drain(lifecycle);
            }
            Tick::Redraw => {
                let (s, probes, signals) = (&*self.session, &*self.probes, &mut self.live_signals);
                self.live
                    .tick(&s.tracker, self.started.elapsed().as_secs_f64(), || {
                        let parts = Parts {
                            assist: false,
                            creations: false,
                            ..Parts::ALL
                        };
                        let mut all = signals.sections(&s.read(probes, parts));
                        if let Some(g) = s.goroutines.as_ref() {
                            all.extend(crate::live::signals::goroutine_section(g.samples()));
                        }
                        all
                    });
            }
            Tick::Metrics => self.session.refresh_metrics(self.probes, false),
            Tick::Goroutines => {
                if let Some(s) = self.session.goroutines.as_mut().filter(|s| s.active())
                    && !s.sample(self.clock)
                {
                    debug!(samples = s.samples().len(), "goroutine sampling ended");
                }
            }
            Tick::Pending | Tick::Reap | Tick::Sweep | Tick::Profiles => {}
        }
        None
    }
}

/// Drains the STW events into `session` and shows each completed cycle, with its mark assist
/// time when the assist probes are attached. Events whose world started after `until_ns` (the
/// target's exec) are the new program's and dropped.
pub(super) fn drain_cycles(
    probes: &mut Probes,
    session: &mut Session,
    live: &mut Live,
    until_ns: Option<u64>,
) {
    let mut done = Vec::new();
    probes.drain(|ev| {
        // NB: `now` is the runtime's nanotime() (CLOCK_MONOTONIC, src/runtime/time_nofake.go),
        // the clock of bpf_ktime_get_ns.
        if until_ns.is_some_and(|t| ev.now > 0 && ev.now as u64 > t) {
            debug!(cycles = ev.cycles, "STW after the exec: not the target's");
            return;
        }
        if let Some(c) = session.on_event(&ev) {
            debug!(cycle = c.cycle, pause_ns = c.pause_ns, trigger = %c.trigger, "GC cycle");
            done.push(c);
        }
    });
    let (pid, assist_on) = (session.pid(), session.target.assist.is_some());
    for c in &done {
        live.cycle(c, assist_on.then(|| probes.assist_ns(pid, c.cycle)));
    }
}
