//! The live status line shown on a terminal while `goprobe attach` runs.

use std::io::{IsTerminal as _, Write as _};

use super::summary::human_ns;
use crate::signal::gc::GcTracker;

/// Redraws one line on stderr, only when stderr is a terminal.
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
