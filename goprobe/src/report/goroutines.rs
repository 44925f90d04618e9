//! The `goroutines` part of the report: the goroutine count over the window, and who created
//! goroutines.

use serde::{Deserialize, Serialize};

use crate::text::chain::caller_chain;

/// Goroutines in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Goroutines {
    /// The count as `runtime.NumGoroutine()` gives it (system goroutines excluded), over time.
    pub samples: Vec<GoroutineSample>,
    pub max: u64,
    /// Goroutines created and exited in the window; `null` unless creation sites were probed
    /// (`--goroutine-sites`).
    pub created: Option<u64>,
    pub exited: Option<u64>,
    /// By the stack of the `go` statement, most goroutines first (`--goroutine-sites`).
    pub creation_sites: Vec<CreationSite>,
}

/// One reading of the goroutine count.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GoroutineSample {
    pub t_unix_ns: i64,
    pub count: u64,
}

/// Goroutines created by one stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CreationSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub count: u64,
}

impl Goroutines {
    /// The report section from the count `samples` and, when creation sites were probed, the
    /// `creations` records.
    pub fn build(
        samples: &[crate::signal::goroutines::Sample],
        creations: Option<&crate::signal::goroutines::Creations>,
    ) -> Self {
        let counts = creations.and_then(|c| c.counts);
        let sites = creations.map_or_else(Vec::new, |c| {
            super::sites::name_sites(&c.sites, |&n| (n, 0))
        });
        let samples: Vec<GoroutineSample> = samples
            .iter()
            .map(|s| GoroutineSample {
                t_unix_ns: s.t_unix_ns,
                count: s.count,
            })
            .collect();
        Self {
            max: samples.iter().map(|s| s.count).max().unwrap_or(0),
            samples,
            created: counts.map(|c| c.created),
            exited: counts.map(|c| c.exited),
            creation_sites: sites
                .into_iter()
                .map(|s| CreationSite {
                    stack: s.stack,
                    count: s.a,
                })
                .collect(),
        }
    }
}

/// How many creation sites the summary lists.
/// The summary's goroutine lines: the count at the start, its max and at the end, created and
/// exited, and the top creation sites.
pub fn render(g: Option<&Goroutines>, top: usize, out: &mut String) {
    use std::fmt::Write as _;
    let Some(g) = g else { return };
    let count = |s: Option<&GoroutineSample>| s.map_or("?".to_owned(), |s| s.count.to_string());
    let _ = write!(
        out,
        "goroutines: {} at attach, max {}, {} at the end ({} readings)",
        count(g.samples.first()),
        g.max,
        count(g.samples.last()),
        g.samples.len(),
    );
    let _ = match (g.created, g.exited) {
        (Some(c), Some(e)) => writeln!(out, "; {c} created, {e} exited"),
        _ => writeln!(out, "; creation sites not probed (--goroutine-sites)"),
    };
    if !g.creation_sites.is_empty() {
        let _ = writeln!(out, "top goroutine creation sites:");
    }
    for site in g.creation_sites.iter().take(top) {
        let leaf = site.stack.first().map_or("(no stack)", String::as_str);
        let callers = caller_chain(site.stack.get(1..).unwrap_or(&[]), 2);
        let _ = writeln!(out, "  {:>8}  {leaf} ← {callers}", site.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{
        Site,
        goroutines::{Creations, Sample},
    };

    #[test]
    fn max_is_the_largest_reading_and_sites_are_listed() {
        let s = |t, count| Sample {
            t_unix_ns: t,
            count,
        };
        let two = |a: &str, b: &str| {
            let mut s = crate::report::sites::tests::stack(a);
            let outer = crate::report::sites::tests::stack(b);
            s.locations = s
                .locations
                .iter()
                .chain(outer.locations.iter())
                .cloned()
                .collect();
            s
        };
        let creations = Creations {
            counts: Some(goprobe_common::GoroutineCounts {
                created: 1002,
                exited: 999,
            }),
            sites: vec![
                Site {
                    stack: two("main.leak", "main.main"),
                    value: 1000,
                },
                Site {
                    stack: two("runtime.gcBgMarkStartWorkers", "runtime.gcStart"),
                    value: 2,
                },
            ],
        };
        let g = Goroutines::build(&[s(1, 3), s(2, 1001), s(3, 2)], Some(&creations));
        assert_eq!(g.max, 1001);
        assert_eq!((g.created, g.exited), (Some(1002), Some(999)));
        assert_eq!(g.creation_sites[0].stack, ["main.leak", "main.main"]);
        let mut out = String::new();
        render(Some(&g), 5, &mut out);
        assert!(out.contains("3 at attach, max 1001, 2 at the end"), "{out}");
        assert!(out.contains("1000  main.leak ← main.main"), "{out}");
        let none = Goroutines::build(&[s(1, 3)], None);
        assert_eq!((none.created, none.creation_sites.len()), (None, 0));
    }
}
