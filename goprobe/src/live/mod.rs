//! What `goprobe attach` shows while it runs: one line per completed GC cycle on stderr and, on
//! a terminal, a status line redrawn below them.

use std::io::{IsTerminal as _, Write as _};

pub mod screen;
pub mod signals;

use crate::{
    signal::gc::{Cycle, GcTracker},
    text::{bytes::mib_compact, duration::human_ns},
};
use screen::{Screen, Section};

/// The line printed for one completed cycle: number, trigger, pause, phases (as gctrace orders
/// them: sweep termination + mark + mark termination), mark assist time (when the assist probes
/// are attached), heap start→end and goal.
pub fn cycle_line(c: &Cycle, assist_ns: Option<u64>) -> String {
    let d = &c.details;
    let mut line = format!(
        "gc {} {}  pause {}",
        c.cycle,
        c.trigger,
        human_ns(c.pause_ns)
    );
    if let Some(p) = d.phases {
        line += &format!(
            "  phases {}+{}+{}",
            human_ns(p.sweep_termination),
            human_ns(p.mark),
            human_ns(p.mark_termination)
        );
    }
    if let Some(ns) = assist_ns {
        line += &format!("  assist {}", human_ns(ns));
    }
    if let (Some(h0), Some(h1)) = (d.heap_start_bytes, d.heap_end_bytes) {
        line += &format!("  heap {}→{}", mib_compact(h0), mib_compact(h1));
        if let Some(goal) = d.heap_goal_bytes {
            line += &format!(" goal {}", mib_compact(goal));
        }
    }
    line
}

/// Prints cycle lines and, only when stderr is a terminal, redraws a status line below them.
pub struct LiveLine {
    enabled: bool,
    drawn: bool,
}

impl LiveLine {
    pub fn new() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    /// Redraws the line from the tracker's state.
    pub fn update(&mut self, gc: &GcTracker, elapsed_s: f64) {
        if !self.enabled {
            return;
        }
        let last = gc
            .cycles
            .last()
            .map_or_else(|| "-".into(), |c| human_ns(c.pause_ns));
        let max = gc
            .cycles
            .iter()
            .map(|c| c.pause_ns)
            .max()
            .map_or_else(|| "-".into(), human_ns);
        let line = format!(
            "\r\x1b[2K[{elapsed_s:6.1}s] GC cycles {}  last pause {last}  max {max}  other STWs {}",
            gc.cycles.len(),
            gc.other.len()
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
        self.drawn = true;
    }

    /// Prints the line of a completed cycle: above the status line on a terminal (which the next
    /// [`Self::update`] redraws), as a plain line otherwise.
    pub fn cycle(&mut self, c: &Cycle, assist_ns: Option<u64>) {
        let mut err = std::io::stderr().lock();
        let clear = if self.drawn { "\r\x1b[2K" } else { "" };
        let _ = writeln!(err, "{clear}{}", cycle_line(c, assist_ns));
        let _ = err.flush();
        self.drawn = false;
    }

    /// Clears the line before the final output.
    pub fn clear(&mut self) {
        if self.drawn {
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Default for LiveLine {
    fn default() -> Self {
        Self::new()
    }
}

/// What `goprobe attach` shows while it runs: the full-screen view on a terminal, else lines.
pub enum Live {
    Screen(Screen),
    Lines(LiveLine),
    /// Nothing shown (`goprobe doctor`, whose output is the diagnosis at the end).
    Quiet,
}

impl Live {
    /// The full-screen view when stdin and stderr are a terminal, else plain lines. `header`
    /// names the target (`goprobe · pid 1234 server (go1.27.3)`).
    pub fn new(header: String) -> Self {
        match Screen::open(header) {
            Some(s) => Live::Screen(s),
            None => Live::Lines(LiveLine::new()),
        }
    }

    /// Whether keys are read (the full-screen view ends on `q`).
    pub fn reads_keys(&self) -> bool {
        matches!(self, Live::Screen(_))
    }

    /// A completed cycle and its mark assist time (`None` without assist probes).
    pub fn cycle(&mut self, c: &Cycle, assist_ns: Option<u64>) {
        match self {
            Live::Screen(s) => s.cycle(c, assist_ns),
            Live::Lines(l) => l.cycle(c, assist_ns),
            Live::Quiet => {}
        }
    }

    /// Redraws what is due; `sections` (the signals' blocks) is only called when the full view
    /// is redrawn.
    pub fn tick(
        &mut self,
        gc: &GcTracker,
        elapsed_s: f64,
        sections: impl FnOnce() -> Vec<Section>,
    ) {
        match self {
            Live::Screen(s) if s.due() => s.draw(gc, elapsed_s, &sections()),
            Live::Screen(_) => {}
            Live::Lines(l) => l.update(gc, elapsed_s),
            Live::Quiet => {}
        }
    }

    /// Leaves the terminal as it was, before the final output.
    pub fn clear(&mut self) {
        match self {
            Live::Screen(s) => s.close(),
            Live::Lines(l) => l.clear(),
            Live::Quiet => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::cycle::{CycleDetails, Phases};

    #[test]
    fn cycle_line_has_trigger_pause_phases_and_heap() {
        let c = Cycle {
            cycle: 12,
            trigger: "forced".into(),
            pause_ns: 198_113,
            stw: Vec::new(),
            trigger_caller: goprobe_common::CallerStack::NONE,
            details: CycleDetails {
                phases: Some(Phases {
                    sweep_termination: 131_402,
                    mark: 3_400_000,
                    mark_termination: 66_711,
                }),
                heap_start_bytes: Some(4 << 20),
                heap_end_bytes: Some(5 << 20),
                heap_goal_bytes: Some(6 << 20),
                ..CycleDetails::default()
            },
        };
        assert_eq!(
            cycle_line(&c, Some(1_500_000)),
            "gc 12 forced  pause 198.1µs  phases 131.4µs+3.40ms+66.7µs  assist 1.50ms  heap 4.0MiB→5.0MiB goal 6.0MiB"
        );
        let bare = Cycle {
            details: CycleDetails::default(),
            ..c
        };
        assert_eq!(cycle_line(&bare, None), "gc 12 forced  pause 198.1µs");
    }
}
