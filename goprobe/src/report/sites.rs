//! Per-stack counts → report sites: stacks named, merged when they name the same frames (two
//! captured stacks can differ only in addresses inside one function), heaviest first.

use std::collections::HashMap;

use goprobe_common::{CallerStack, SiteCounts};

/// One named stack and its two counters (their meaning is the signal's, see
/// [`goprobe_common::site_kind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub a: u64,
    pub b: u64,
}

/// Names every stack of `raw` with `name`, merges equal names, and sorts by `a`, then `b`,
/// descending (then by stack, so the order is deterministic).
pub fn name_sites(
    raw: &[(CallerStack, SiteCounts)],
    mut name: impl FnMut(&CallerStack) -> Vec<String>,
) -> Vec<NamedSite> {
    let mut merged: HashMap<Vec<String>, (u64, u64)> = HashMap::new();
    for (stack, counts) in raw {
        let e = merged.entry(name(stack)).or_default();
        e.0 += counts.a;
        e.1 += counts.b;
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
mod tests {
    use super::*;

    #[test]
    fn equal_names_merge_and_heaviest_comes_first() {
        let s = |id| CallerStack { id, ret: 0 };
        let c = |a, b| SiteCounts { a, b };
        let raw = [(s(1), c(5, 1)), (s(2), c(7, 2)), (s(3), c(1, 0))];
        let names = |cs: &CallerStack| match cs.id {
            1 | 2 => vec!["main.f".to_owned()],
            _ => vec!["main.g".to_owned()],
        };
        let sites = name_sites(&raw, names);
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
