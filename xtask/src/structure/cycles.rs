//! Cycles in a directed graph of named nodes: one shortest cycle per strongly connected
//! component, so that each tangle is reported once, with a concrete path through it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One shortest cycle per strongly connected component of more than one node; each cycle
/// starts at its smallest node (`[a, b]` is a → b → a).
pub fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
        next.entry(b).or_default();
    }
    let mut found = Vec::new();
    for scc in components(&next).into_iter().filter(|c| c.len() > 1) {
        let start = scc[0];
        // Breadth-first from start, inside the component, back to start.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        'search: while let Some(n) = queue.pop_front() {
            for &m in &next[n] {
                if !scc.contains(&m) {
                    continue;
                }
                if m == start {
                    let mut cycle = vec![n.to_string()];
                    let mut at = n;
                    while at != start {
                        at = came_from[at];
                        cycle.push(at.to_string());
                    }
                    cycle.reverse();
                    found.push(cycle);
                    break 'search;
                }
                if m != start && !came_from.contains_key(m) {
                    came_from.insert(m, n);
                    queue.push_back(m);
                }
            }
        }
    }
    found
}

/// Strongly connected components (Tarjan), each sorted.
fn components<'a>(next: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, (usize, usize)>,
        stack: Vec<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(n: &'a str, next: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(n, (i, i));
        s.stack.push(n);
        for &m in &next[n] {
            if !s.index.contains_key(m) {
                visit(m, next, s);
                let low = s.index[m].1.min(s.index[n].1);
                s.index.entry(n).and_modify(|e| e.1 = low);
            } else if s.stack.contains(&m) {
                let low = s.index[m].0.min(s.index[n].1);
                s.index.entry(n).and_modify(|e| e.1 = low);
            }
        }
        if s.index[n].0 == s.index[n].1 {
            let at = s.stack.iter().rposition(|&x| x == n).unwrap_or(0);
            let mut scc = s.stack.split_off(at);
            scc.sort_unstable();
            s.out.push(scc);
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for &n in next.keys() {
        if !s.index.contains_key(n) {
            visit(n, next, &mut s);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn one_shortest_cycle_per_component() {
        let e = edges(&[
            ("a", "b"),
            ("b", "c"),
            ("c", "a"),
            ("b", "a"),
            ("d", "a"),
            ("x", "y"),
        ]);
        assert_eq!(cycles(&e), [vec!["a".to_string(), "b".to_string()]]);
        let e = edges(&[("p", "q"), ("q", "r"), ("r", "p"), ("s", "t"), ("t", "s")]);
        let found = cycles(&e);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.contains(&vec!["p".into(), "q".into(), "r".into()]));
        assert!(found.contains(&vec!["s".into(), "t".into()]));
        assert!(cycles(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
    }
}
