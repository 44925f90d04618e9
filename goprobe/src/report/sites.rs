//! Per-stack records → report sites: stacks named, merged when they name the same frames (two
//! captured stacks can differ only in addresses inside one function), heaviest first.

use std::collections::HashMap;

use crate::signal::Site;

/// One named stack and its two counters (their meaning is the signal's, see
/// [`goprobe_common::site_kind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub a: u64,
    pub b: u64,
}

/// Names every stack of `sites`, takes its two counters from `counts`, merges equal names, and
/// sorts by `a`, then `b`, descending (then by stack, so the order is deterministic).
pub fn name_sites<V>(sites: &[Site<V>], counts: impl Fn(&V) -> (u64, u64)) -> Vec<NamedSite> {
    let mut merged: HashMap<Vec<String>, (u64, u64)> = HashMap::new();
    for s in sites {
        let (a, b) = counts(&s.value);
        let e = merged.entry(s.stack.names()).or_default();
        e.0 += a;
        e.1 += b;
    }
    let mut sites: Vec<NamedSite> = merged
        .into_iter()
        .map(|(stack, (a, b))| NamedSite { stack, a, b })
        .collect();
    sites.sort_by(|x, y| {
        (y.a, y.b)
            .cmp(&(x.a, x.b))
            .then_with(|| x.stack.cmp(&y.stack))
    });
    sites
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A one-frame stack named `name`.
    pub(crate) use crate::signal::stacks::test_stack as stack;

    #[test]
    fn equal_names_merge_and_heaviest_comes_first() {
        let site = |name, value| Site {
            stack: stack(name),
            value,
        };
        let sites = [
            site("main.f", (5, 1)),
            site("main.f", (7, 2)),
            site("main.g", (1, 0)),
        ];
        let sites = name_sites(&sites, |&v| v);
        assert_eq!(
            sites,
            [
                NamedSite {
                    stack: vec!["main.f".into()],
                    a: 12,
                    b: 3
                },
                NamedSite {
                    stack: vec!["main.g".into()],
                    a: 1,
                    b: 0
                },
            ]
        );
    }
}
