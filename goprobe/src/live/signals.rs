//! The signals' blocks of the full-screen live view ([`super::screen`]): rates since the last
//! redraw and the current top sites, from one [`Reading`] of the session's signals.

use std::time::Instant;

use super::screen::Section;
use crate::{
    report::sites::name_sites,
    signal::{Reading, Site, goroutines::Sample},
};

/// How many sites a block lists.
const TOP: usize = 4;

/// Totals at the previous redraw, for rates.
#[derive(Default)]
pub struct LiveSignals {
    last: Option<(Instant, u64, u64)>,
    /// Time and allocated bytes at the previous redraw.
    last_alloc: Option<(Instant, u64)>,
}

impl LiveSignals {
    /// The allocation, page-fault and CPU blocks of what `reading` has.
    pub fn sections(&mut self, reading: &Reading) -> Vec<Section> {
        let mut out = Vec::new();
        let now = Instant::now();
        if let Some(a) = reading.alloc.as_ref().filter(|a| a.unavailable.is_none()) {
            let bytes = a.totals().bytes;
            let rate = match self.last_alloc {
                Some((t, b0)) if now > t => format!(
                    "{}/s",
                    crate::text::bytes::mib(
                        bytes.saturating_sub(b0) as f64 / (now - t).as_secs_f64()
                    )
                ),
                _ => "rate at the next redraw".to_owned(),
            };
            self.last_alloc = Some((now, bytes));
            out.push(Section {
                title: format!(
                    "Allocations {rate} · {} while attached · top sites by bytes",
                    crate::text::bytes::mib(bytes as f64)
                ),
                lines: top_lines(&a.sites, |c| c.bytes),
            });
        }
        let faults = reading.page_faults.as_ref();
        let totals = faults.map(|p| p.totals()).unwrap_or_default();
        let (minor, major) = (totals.minor, totals.major);
        if let Some(p) = faults {
            let rate = match self.last {
                Some((t, m0, j0)) if now > t => {
                    let s = (now - t).as_secs_f64();
                    format!(
                        "{:.0}/s minor, {:.0}/s major",
                        minor.saturating_sub(m0) as f64 / s,
                        major.saturating_sub(j0) as f64 / s
                    )
                }
                _ => "rate at the next redraw".to_owned(),
            };
            out.push(Section {
                title: format!("Page faults {rate} · {minor} minor, {major} major while attached"),
                lines: top_lines(&p.sites, |c| c.minor + c.major),
            });
        }
        self.last = Some((now, minor, major));
        if let Some(cpu) = &reading.cpu {
            out.push(Section {
                title: format!(
                    "On-CPU samples {} at {} Hz · top stacks",
                    cpu.total(),
                    cpu.hz
                ),
                lines: top_lines(&cpu.sites, |&n| n),
            });
        }
        out
    }
}

/// The live view's goroutine line: the latest count and the window's maximum.
pub fn goroutine_section(samples: &[Sample]) -> Option<Section> {
    let last = samples.last()?;
    let max = samples.iter().map(|s| s.count).max().unwrap_or(0);
    Some(Section {
        title: format!("Goroutines {} (max {max} while attached)", last.count),
        lines: Vec::new(),
    })
}

/// How many frames, leaf first, a line shows.
const FRAMES: usize = 3;

/// The heaviest `TOP` lines of `sites` by `weight`, as `share%  leaf ← caller ← caller`. Stacks
/// that differ only below the frames shown make one line, their weights summed: two lines with
/// the same text would say one site twice.
fn top_lines<V>(sites: &[Site<V>], weight: impl Fn(&V) -> u64) -> Vec<String> {
    let named = name_sites(sites, |v| (weight(v), 0));
    let total: u64 = named.iter().map(|s| s.a).sum();
    let mut lines: Vec<(String, u64)> = Vec::new();
    for s in named {
        let frames: Vec<&str> = s.stack.iter().take(FRAMES).map(String::as_str).collect();
        let text = if frames.is_empty() {
            "(no stack)".to_owned()
        } else {
            frames.join(" ← ")
        };
        match lines.iter_mut().find(|(t, _)| *t == text) {
            Some((_, w)) => *w += s.a,
            None => lines.push((text, s.a)),
        }
    }
    // Stable: equal weights keep name_sites' deterministic order.
    lines.sort_by_key(|l| std::cmp::Reverse(l.1));
    lines
        .into_iter()
        .take(TOP)
        .map(|(text, w)| format!("{:5.1}%  {text}", 100.0 * w as f64 / total.max(1) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        signal::Stack,
        symbolize::{Frame, FrameKind, Location},
    };

    /// A stack of `names`, leaf first, one location each.
    fn stack(names: &[&str]) -> Stack {
        let locations: Vec<Location> = names
            .iter()
            .enumerate()
            .map(|(i, &name)| Location {
                address: 0x1000 + i as u64,
                frames: vec![Frame {
                    function: name.into(),
                    file: None,
                    line: 0,
                    inlined: false,
                    kind: FrameKind::Go,
                }]
                .into(),
            })
            .collect();
        Stack {
            locations: locations.into(),
        }
    }

    #[test]
    fn stacks_shown_alike_make_one_line() {
        let top = [
            "runtime.heapSetTypeSmallHeader",
            "runtime.mallocgcSmallScanHeader",
            "runtime.mallocgc",
        ];
        let site = |below: &str, value: u64| Site {
            stack: stack(&[top[0], top[1], top[2], below]),
            value,
        };
        let sites = [
            site("main.a", 151),
            site("main.b", 150),
            Site {
                stack: stack(&["main.c"]),
                value: 200,
            },
            Site {
                stack: stack(&[]),
                value: 499,
            },
        ];
        let lines = top_lines(&sites, |&v| v);
        assert_eq!(
            lines,
            [
                " 49.9%  (no stack)".to_owned(),
                format!(" 30.1%  {}", top.join(" ← ")),
                " 20.0%  main.c".to_owned(),
            ]
        );
    }
}
