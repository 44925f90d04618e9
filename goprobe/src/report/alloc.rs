//! The `alloc` part of the report: bytes and objects allocated in the window, by stack.

use serde::{Deserialize, Serialize};

use crate::text::{bytes, chain::caller_chain};

/// Allocations in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Alloc {
    /// `sampled`, `spans` or `exact` (see `goprobe attach --help`).
    pub mode: String,
    /// How the counts were taken: `exact`, `profilealloc` (the runtime's heap-profile sampler,
    /// weighted as pprof does) or `span-refill` (the allocator's slow paths, see
    /// docs/report-schema.md); `null` when allocations could not be watched.
    #[serde(default)]
    pub sampler: Option<String>,
    /// `runtime.MemProfileRate` (bytes) the profilealloc sampler ran with; `null` otherwise.
    #[serde(default)]
    pub sample_rate: Option<u64>,
    /// Whether goprobe wrote `sample_rate` into the target's `runtime.MemProfileRate` for the
    /// window (it was 0) and restored 0 on detach.
    #[serde(default)]
    pub sample_rate_set_by_goprobe: bool,
    /// Why allocations could not be watched in this target; `null` when they were.
    #[serde(default)]
    pub unavailable: Option<String>,
    pub bytes: u64,
    pub objects: u64,
    /// By allocating stack, most bytes first.
    pub sites: Vec<AllocSite>,
}

/// Allocations of one stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AllocSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub bytes: u64,
    pub objects: u64,
}

impl Alloc {
    /// The report section of the allocation records `a`: sites named and merged.
    pub fn from_record(a: &crate::signal::alloc::Allocations) -> Self {
        let sites: Vec<AllocSite> = super::sites::name_sites(&a.sites, |c| (c.bytes, c.objects))
            .into_iter()
            .map(|s| AllocSite {
                stack: s.stack,
                bytes: s.a,
                objects: s.b,
            })
            .collect();
        Self {
            mode: a.mode.to_owned(),
            sampler: a.sampler.map(str::to_owned),
            sample_rate: a.sample_rate,
            sample_rate_set_by_goprobe: a.rate_set_by_goprobe,
            unavailable: a.unavailable.clone(),
            bytes: sites.iter().map(|s| s.bytes).sum(),
            objects: sites.iter().map(|s| s.objects).sum(),
            sites,
        }
    }
}

/// The summary's allocation lines: totals, the sampler, and the top sites by bytes.
pub fn render_summary(a: &Alloc, top: usize, out: &mut String) {
    use std::fmt::Write as _;
    if let Some(why) = &a.unavailable {
        let _ = writeln!(out, "allocations: unavailable ({why})");
        return;
    }
    let how = match (a.sampler.as_deref(), a.sample_rate) {
        (Some(s), Some(rate)) => format!("{s}, rate {}", bytes::human(rate)),
        (Some(s), None) => s.to_owned(),
        (None, _) => "none".to_owned(),
    };
    let estimated = if a.mode == "exact" { "" } else { "~" };
    let _ = writeln!(
        out,
        "allocations ({} mode, {how}): {estimated}{} in {estimated}{} objects; top sites:",
        a.mode,
        bytes::human(a.bytes),
        a.objects
    );
    if a.sample_rate_set_by_goprobe {
        let _ = writeln!(
            out,
            "  (runtime.MemProfileRate was 0: goprobe set it to {} for the window and restored 0 \
             on detach)",
            a.sample_rate.map_or_else(|| "?".to_owned(), bytes::human)
        );
    }
    for site in a.sites.iter().take(top) {
        let _ = writeln!(
            out,
            "  {:>9} {:>5.1}% {:>10} objects  {}",
            bytes::human(site.bytes),
            site.bytes as f64 * 100.0 / a.bytes.max(1) as f64,
            site.objects,
            caller_chain(&site.stack, 3)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_top_sites() {
        let a = Alloc {
            mode: "sampled".into(),
            sampler: Some("profilealloc".into()),
            sample_rate: Some(512 * 1024),
            sample_rate_set_by_goprobe: true,
            unavailable: None,
            bytes: 4096,
            objects: 2,
            sites: vec![AllocSite {
                stack: vec!["main.f".into(), "main.main".into()],
                bytes: 4096,
                objects: 2,
            }],
        };
        let mut out = String::new();
        render_summary(&a, 5, &mut out);
        assert!(out.contains("profilealloc, rate 512.0KiB"), "{out}");
        assert!(
            out.contains("goprobe set it to 512.0KiB for the window and restored 0"),
            "{out}"
        );
        assert!(
            out.contains("4.0KiB 100.0%          2 objects  main.f ← main.main"),
            "{out}"
        );
    }
}
