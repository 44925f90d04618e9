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
    /// The report section from the count `samples`, the probes' created/exited `counts` and
    /// the named creation `sites` (`a` = goroutines created; see
    /// [`goprobe_common::site_kind::GOROUTINE_CREATE`]).
    pub fn build(
        samples: &[crate::signal::goroutines::Sample],
        counts: Option<goprobe_common::GoroutineCounts>,
        sites: Vec<super::sites::NamedSite>,
    ) -> Self {
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
                    stack: strip_runtime_leaf(s.stack),
                    count: s.a,
                })
                .collect(),
        }
    }
}

/// NB: creation stacks are taken at the entry of `runtime.newproc` / `runtime.newcoro`
/// (src/runtime/proc.go, coro.go): that frame is the same for every site and not the user's
/// code, so it is dropped; the leaf is then the function with the `go` statement.
fn strip_runtime_leaf(mut stack: Vec<String>) -> Vec<String> {
    let names: Vec<&str> = stack.iter().map(String::as_str).collect();
    let n = runtime_leaf_frames(&names);
    stack.drain(..n);
    stack
}

/// How many leaf frames of a creation stack (names leaf first) are the runtime's entry point.
pub fn runtime_leaf_frames(names: &[&str]) -> usize {
    usize::from(
        names
            .first()
            .is_some_and(|f| *f == "runtime.newproc" || *f == "runtime.newcoro"),
    )
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

/// The live view's goroutine line: the latest count and the window's maximum.
pub fn live_section(
    samples: &[crate::signal::goroutines::Sample],
) -> Option<super::screen::Section> {
    let last = samples.last()?;
    let max = samples.iter().map(|s| s.count).max().unwrap_or(0);
    Some(super::screen::Section {
        title: format!("Goroutines {} (max {max} while attached)", last.count),
        lines: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sites::NamedSite;

    #[test]
    fn newproc_frame_is_dropped_and_max_is_the_largest_reading() {
        let s = |t, count| crate::signal::goroutines::Sample {
            t_unix_ns: t,
            count,
        };
        let site = |stack: &[&str], a| NamedSite {
            stack: stack.iter().map(|f| f.to_string()).collect(),
            a,
            b: 0,
        };
        let g = Goroutines::build(
            &[s(1, 3), s(2, 1001), s(3, 2)],
            Some(goprobe_common::GoroutineCounts {
                created: 1002,
                exited: 999,
            }),
            vec![
                site(&["runtime.newproc", "main.leak", "main.main"], 1000),
                site(&["runtime.gcBgMarkStartWorkers", "runtime.gcStart"], 2),
            ],
        );
        assert_eq!(g.max, 1001);
        assert_eq!((g.created, g.exited), (Some(1002), Some(999)));
        assert_eq!(g.creation_sites[0].stack, ["main.leak", "main.main"]);
        assert_eq!(
            g.creation_sites[1].stack,
            ["runtime.gcBgMarkStartWorkers", "runtime.gcStart"]
        );
        let mut out = String::new();
        render(Some(&g), 5, &mut out);
        assert!(out.contains("3 at attach, max 1001, 2 at the end"), "{out}");
        assert!(out.contains("1000  main.leak ← main.main"), "{out}");
    }
}
