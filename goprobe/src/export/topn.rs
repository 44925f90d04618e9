//! Bounded-cardinality counters by function: at most [`TOP_N`] function names plus `other`.
//!
//! A function enters the named set the first time it is among the heaviest functions not yet in
//! it, and stays. Counting is by deltas since the previous update, so every series only grows
//! (a Prometheus `rate()` never sees a reset) and the series sum to the total.

use std::collections::HashMap;

/// Named functions per metric and process (docs/metrics.md "Bounded cardinality").
pub const TOP_N: usize = 20;
/// The series everything outside the named set goes to.
pub const OTHER: &str = "other";

/// Cumulative per-function totals → cumulative per-series totals.
#[derive(Debug, Default)]
pub struct TopN {
    /// The last totals seen, by function.
    last: HashMap<String, f64>,
    /// The named set's series and `other`, cumulative.
    series: HashMap<String, f64>,
}

impl TopN {
    /// Takes the current cumulative totals by function (each never decreasing) and folds what
    /// grew since the last call into the series.
    pub fn update(&mut self, totals: impl IntoIterator<Item = (String, f64)>) {
        let deltas: Vec<(String, f64)> = totals
            .into_iter()
            .filter_map(|(f, total)| {
                let before = self.last.get(&f).copied().unwrap_or(0.0);
                let delta = total - before;
                (delta > 0.0).then(|| {
                    self.last.insert(f.clone(), total);
                    (f, delta)
                })
            })
            .collect();
        self.add_deltas(deltas);
    }

    /// Adds what each function counted since the last call (the agent's takes): no per-function
    /// memory beyond the named set.
    pub fn add(&mut self, deltas: impl IntoIterator<Item = (String, f64)>) {
        self.add_deltas(deltas.into_iter().filter(|(_, d)| *d > 0.0).collect());
    }

    fn add_deltas(&mut self, mut deltas: Vec<(String, f64)>) {
        // Heaviest first, so the free places go to the heaviest newcomers; ties by name keep
        // the choice deterministic.
        deltas.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (f, delta) in deltas {
            let named = self.series.len() - usize::from(self.series.contains_key(OTHER));
            let key = if self.series.contains_key(&f) || (named < TOP_N && f != OTHER) {
                f
            } else {
                OTHER.to_owned()
            };
            *self.series.entry(key).or_default() += delta;
        }
    }

    /// The series and their cumulative values.
    pub fn series(&self) -> impl Iterator<Item = (&str, f64)> {
        self.series.iter().map(|(f, v)| (f.as_str(), *v))
    }
}

/// The function a stack (leaf first) is charged to: the first frame outside the runtime (its
/// map and other internals included), or the leaf when the whole stack is the runtime's;
/// `other` for an empty (uncaptured) stack.
pub fn charged_function(stack: &[String]) -> &str {
    stack
        .iter()
        .find(|f| !f.starts_with("runtime.") && !f.starts_with("internal/runtime/"))
        .or(stack.first())
        .map_or(OTHER, String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(t: &TopN) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = t.series().map(|(f, v)| (f.to_owned(), v)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn named_set_is_sticky_and_series_only_grow() {
        let mut t = TopN::default();
        let first: Vec<(String, f64)> = (0..TOP_N + 5)
            .map(|i| (format!("f{i:02}"), (100 - i) as f64))
            .collect();
        t.update(first.clone());
        let after_first = totals(&t);
        assert_eq!(after_first.len(), TOP_N + 1);
        // f20..f24 went to other: 80+79+78+77+76.
        let other = after_first.iter().find(|(f, _)| f == OTHER).map(|x| x.1);
        assert_eq!(other, Some(390.0));
        // A newcomer heavier than anything stays in other: the set is full.
        let mut second = first;
        second.push(("big".to_owned(), 1000.0));
        second[0].1 += 1.0;
        t.update(second);
        let after = totals(&t);
        assert_eq!(after.len(), TOP_N + 1);
        for (f, v) in &after {
            let before = after_first
                .iter()
                .find(|(g, _)| g == f)
                .map_or(0.0, |x| x.1);
            assert!(*v >= before, "{f} went down");
        }
        let sum: f64 = after.iter().map(|x| x.1).sum();
        let expected: f64 = (0..TOP_N + 5).map(|i| (100 - i) as f64).sum::<f64>() + 1001.0;
        assert_eq!(sum, expected);
    }

    #[test]
    fn charged_to_first_frame_outside_the_runtime() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            charged_function(&s(&[
                "runtime.gcAssistAlloc",
                "runtime.mallocgc",
                "main.build"
            ])),
            "main.build"
        );
        assert_eq!(
            charged_function(&s(&["runtime.bgsweep"])),
            "runtime.bgsweep"
        );
        assert_eq!(charged_function(&[]), OTHER);
    }
}

#[cfg(test)]
mod delta_tests {
    use super::*;

    #[test]
    fn deltas_add_up_like_totals() {
        let mut by_totals = TopN::default();
        let mut by_deltas = TopN::default();
        let f = |n: &str, v: f64| (n.to_owned(), v);
        by_totals.update([f("a", 5.0), f("b", 1.0)]);
        by_totals.update([f("a", 7.0), f("b", 1.0), f("c", 3.0)]);
        by_deltas.add([f("a", 5.0), f("b", 1.0)]);
        by_deltas.add([f("a", 2.0), f("c", 3.0), f("d", 0.0)]);
        let sorted = |t: &TopN| {
            let mut v: Vec<(String, f64)> = t.series().map(|(k, v)| (k.to_owned(), v)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(sorted(&by_totals), sorted(&by_deltas));
        assert!(by_deltas.last.is_empty());
    }
}
