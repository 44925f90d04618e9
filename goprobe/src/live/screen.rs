//! The full-screen live view of `goprobe attach` on a terminal, like `py-spy top`: redrawn about
//! once a second on the alternate screen, ended by `q` (or Ctrl-C). Off a terminal, goprobe
//! prints plain lines instead ([`super`]).

use std::{
    collections::VecDeque,
    io::{IsTerminal as _, Write as _},
    time::{Duration, Instant},
};

use super::cycle_line;
use crate::{
    signal::gc::{Cycle, GcTracker},
    text::{duration::human_ns, percentile::percentile},
};

/// How many completed cycles the view lists.
const RECENT: usize = 6;
/// Redraw period.
const PERIOD: Duration = Duration::from_millis(1000);

/// A block of the view contributed by one signal: a title and its lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub lines: Vec<String>,
}

/// The terminal in the live view's mode: alternate screen, hidden cursor, keys read one by one
/// without echo (signals still work: Ctrl-C stops goprobe as everywhere else).
pub struct Screen {
    saved: Option<libc::termios>,
    recent: VecDeque<String>,
    header: String,
    last_draw: Option<Instant>,
}

impl Screen {
    /// Takes over the terminal when both stdin and stderr are one; `None` otherwise.
    pub fn open(header: String) -> Option<Self> {
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return None;
        }
        // SAFETY: zeroed termios is a valid buffer for tcgetattr to fill.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is a terminal (checked above); `t` is valid for writes.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return None;
        }
        let saved = t;
        t.c_lflag &= !(libc::ICANON | libc::ECHO);
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        // SAFETY: as above; `t` is a valid termios.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) } != 0 {
            return None;
        }
        let mut err = std::io::stderr().lock();
        // Alternate screen, hide the cursor.
        let _ = err.write_all(b"\x1b[?1049h\x1b[?25l");
        let _ = err.flush();
        Some(Self {
            saved: Some(saved),
            recent: VecDeque::with_capacity(RECENT),
            header,
            last_draw: None,
        })
    }

    /// Remembers a completed cycle for the "recent cycles" list.
    pub fn cycle(&mut self, c: &Cycle, assist_ns: Option<u64>) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(cycle_line(c, assist_ns));
        // Show it at the next tick rather than waiting a whole period.
        self.last_draw = None;
    }

    /// Whether a redraw is due.
    pub fn due(&self) -> bool {
        self.last_draw.is_none_or(|t| t.elapsed() >= PERIOD)
    }

    /// Redraws the whole view.
    pub fn draw(&mut self, gc: &GcTracker, elapsed_s: f64, sections: &[Section]) {
        let (rows, cols) = term_size();
        let text = compose(&self.header, gc, &self.recent, elapsed_s, sections);
        let mut out = String::from("\x1b[H");
        for line in text.lines().take(rows.saturating_sub(1).max(1)) {
            out.push_str(&truncate(line, cols));
            out.push_str("\x1b[K\r\n");
        }
        out.push_str("\x1b[J");
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
        self.last_draw = Some(Instant::now());
    }

    /// Gives the terminal back as it was.
    pub fn close(&mut self) {
        if let Some(saved) = self.saved.take() {
            // SAFETY: restores the attributes read in `open` on the same fd.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(b"\x1b[?25h\x1b[?1049l");
            let _ = err.flush();
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.close();
    }
}

/// Whether the bytes typed since the last read ask to quit (`q` or `Q`).
pub fn wants_quit(keys: &[u8]) -> bool {
    keys.iter().any(|&k| k == b'q' || k == b'Q')
}

/// Reads what was typed on stdin without blocking for more (call when it is readable).
pub fn read_keys() -> Vec<u8> {
    let mut buf = [0u8; 64];
    // SAFETY: reads at most buf.len() bytes into buf.
    let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
    buf.get(..usize::try_from(n).unwrap_or(0))
        .unwrap_or_default()
        .to_vec()
}

/// The view's text, one line per line.
pub fn compose(
    header: &str,
    gc: &GcTracker,
    recent: &VecDeque<String>,
    elapsed_s: f64,
    sections: &[Section],
) -> String {
    let mut s = format!("{header} · {elapsed_s:.0}s · q or Ctrl-C: stop and write outputs\n\n");
    let mut pauses: Vec<u64> = gc.cycles.iter().map(|c| c.pause_ns).collect();
    pauses.sort_unstable();
    let mut triggers: Vec<(String, usize)> = Vec::new();
    for c in &gc.cycles {
        match triggers.iter_mut().find(|(t, _)| *t == c.trigger) {
            Some((_, n)) => *n += 1,
            None => triggers.push((c.trigger.clone(), 1)),
        }
    }
    let by: Vec<String> = triggers.iter().map(|(t, n)| format!("{t} {n}")).collect();
    s += &format!(
        "GC cycles {}{}",
        gc.cycles.len(),
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({})", by.join(", "))
        }
    );
    if !pauses.is_empty() {
        s += &format!(
            " · pause p50 {} · p99 {} · max {}",
            human_ns(percentile(&pauses, 50.0)),
            human_ns(percentile(&pauses, 99.0)),
            human_ns(percentile(&pauses, 100.0))
        );
    }
    s += &format!(" · other stop-the-worlds {}\n", gc.other.len());
    if recent.is_empty() {
        s += "  (no GC cycle completed yet)\n";
    }
    for line in recent {
        s += "  ";
        s += line;
        s += "\n";
    }
    for sec in sections {
        s += "\n";
        s += &sec.title;
        s += "\n";
        for l in &sec.lines {
            s += "  ";
            s += l;
            s += "\n";
        }
    }
    s
}

/// `line` cut to `cols` characters.
fn truncate(line: &str, cols: usize) -> String {
    line.chars().take(cols.max(1)).collect()
}

/// (rows, columns) of the terminal on stderr; 24×80 when unknown.
fn term_size() -> (usize, usize) {
    // SAFETY: zeroed winsize is valid for TIOCGWINSZ to fill.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: fd 2 and a valid out pointer.
    let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_row > 0 && ws.ws_col > 0 {
        (usize::from(ws.ws_row), usize::from(ws.ws_col))
    } else {
        (24, 80)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_quits() {
        assert!(wants_quit(b"q"));
        assert!(wants_quit(b"xQ"));
        assert!(!wants_quit(b"x\n"));
    }

    #[test]
    fn compose_lists_cycles_and_sections() {
        let gc = GcTracker::new(goprobe_common::stw_abi::GO122);
        let mut recent = VecDeque::new();
        recent.push_back("gc 1 heap  pause 10µs".to_owned());
        let text = compose(
            "goprobe · pid 1",
            &gc,
            &recent,
            3.0,
            &[Section {
                title: "Goroutines 12".into(),
                lines: vec!["top creation site: main.spawn".into()],
            }],
        );
        assert!(
            text.starts_with("goprobe · pid 1 · 3s · q or Ctrl-C"),
            "{text}"
        );
        assert!(
            text.contains("GC cycles 0 · other stop-the-worlds 0"),
            "{text}"
        );
        assert!(text.contains("  gc 1 heap  pause 10µs\n"), "{text}");
        assert!(
            text.contains("\nGoroutines 12\n  top creation site: main.spawn\n"),
            "{text}"
        );
    }
}
