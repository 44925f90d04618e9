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

/// The heaviest `TOP` stacks of `sites` by `weight`, as `share%  leaf ← caller ← caller`.
fn top_lines<V>(sites: &[Site<V>], weight: impl Fn(&V) -> u64) -> Vec<String> {
    let named = name_sites(sites, |v| (weight(v), 0));
    let total: u64 = named.iter().map(|s| s.a).sum();
    named
        .into_iter()
        .take(TOP)
        .map(|s| {
            let frames: Vec<&str> = s.stack.iter().take(3).map(String::as_str).collect();
            format!(
                "{:5.1}%  {}",
                100.0 * s.a as f64 / total.max(1) as f64,
                if frames.is_empty() {
                    "(no stack)".to_owned()
                } else {
                    frames.join(" ← ")
                }
            )
        })
        .collect()
}
