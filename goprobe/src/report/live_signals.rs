//! The signals' blocks of the full-screen live view ([`super::screen`]): rates since the last
//! redraw and the current top sites, read from the kernel side's per-stack counters.

use std::time::Instant;

use goprobe_common::{CallerStack, SiteCounts, site_kind};

use super::{screen::Section, sites::name_sites};
use crate::probe::{Options, Probes};

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
    /// The allocation, page-fault and CPU blocks of process `pid` (what `options` turned on);
    /// stacks named by `name`.
    pub fn sections(
        &mut self,
        probes: &Probes,
        pid: u32,
        options: &Options,
        mut name: impl FnMut(&CallerStack) -> Vec<String>,
    ) -> Vec<Section> {
        let mut out = Vec::new();
        let now = Instant::now();
        if let Some(raw) = crate::signal::alloc::raw_sites(probes, pid) {
            let bytes: u64 = raw.iter().map(|(_, c)| c.a).sum();
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
            let mut named = |c: &CallerStack| crate::signal::alloc::trim_allocator(name(c));
            out.push(Section {
                title: format!(
                    "Allocations {rate} · {} while attached · top sites by bytes",
                    crate::text::bytes::mib(bytes as f64)
                ),
                lines: top_lines(&raw, |c| c.a, &mut named),
            });
        }
        let faults = if options.page_faults {
            probes.sites(pid, site_kind::PAGE_FAULT)
        } else {
            Vec::new()
        };
        let (minor, major) = faults
            .iter()
            .fold((0, 0), |(a, b), (_, c)| (a + c.a, b + c.b));
        if options.page_faults {
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
                lines: top_lines(&faults, |c| c.a + c.b, &mut name),
            });
        }
        self.last = Some((now, minor, major));
        if options.cpu_hz > 0 {
            let cpu = probes.sites(pid, site_kind::CPU);
            let samples: u64 = cpu.iter().map(|(_, c)| c.a).sum();
            out.push(Section {
                title: format!(
                    "On-CPU samples {samples} at {} Hz · top stacks",
                    options.cpu_hz
                ),
                lines: top_lines(&cpu, |c| c.a, &mut name),
            });
        }
        out
    }
}

/// The heaviest `TOP` stacks of `raw` by `weight`, as `share%  leaf ← caller ← caller`.
fn top_lines(
    raw: &[(CallerStack, SiteCounts)],
    weight: impl Fn(&SiteCounts) -> u64,
    name: &mut impl FnMut(&CallerStack) -> Vec<String>,
) -> Vec<String> {
    let weighted: Vec<(CallerStack, SiteCounts)> = raw
        .iter()
        .map(|(s, c)| (*s, SiteCounts { a: weight(c), b: 0 }))
        .collect();
    let total: u64 = weighted.iter().map(|(_, c)| c.a).sum();
    name_sites(&weighted, name)
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
