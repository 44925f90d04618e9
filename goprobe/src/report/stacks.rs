//! The stack parts of the GC report: callers of non-GC STWs, of forced cycles, and mark assist
//! time by allocating stack.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Gc;
use crate::signal::{assist::Assists, gc::GcStacks};

/// Mark assist time: goroutines made to do GC marking work because they allocated while a cycle
/// was marking (`runtime.gcAssistAlloc1`, timed entry to return).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Assist {
    pub total_ns: u64,
    /// By the stack that entered `runtime.gcAssistAlloc`, most ns first.
    pub sites: Vec<AssistSite>,
}

/// Assist time of one allocating stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AssistSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub ns: u64,
}

/// Whether a cycle's trigger is a forced one. NB: the name was `cycle` (gcTriggerCycle) before
/// it became `forced`; both are accepted.
fn is_forced(trigger: &str) -> bool {
    trigger == "cycle" || trigger == "forced"
}

impl Gc {
    /// Fills in stacks and assist time. `stacks` must be resolved from the tracker this `Gc`
    /// was built from (its cycles and other STWs in the same order).
    pub fn add_stacks(&mut self, stacks: &GcStacks, assist: &Assists) {
        for (s, stack) in self.other_stw.iter_mut().zip(&stacks.other) {
            s.stack = Some(stack.names());
        }
        for (c, stack) in self.cycles.iter_mut().zip(&stacks.triggers) {
            if is_forced(&c.trigger) {
                c.trigger_stack = Some(stack.names());
            }
            c.assist_ns = assist.by_cycle.get(&c.cycle).copied().unwrap_or(0);
        }
        let mut by_names: HashMap<Vec<String>, u64> = HashMap::new();
        for s in &assist.by_stack {
            *by_names.entry(s.stack.names()).or_default() += s.value;
        }
        let mut sites: Vec<AssistSite> = by_names
            .into_iter()
            .map(|(stack, ns)| AssistSite { stack, ns })
            .collect();
        sites.sort_by(|a, b| b.ns.cmp(&a.ns).then_with(|| a.stack.cmp(&b.stack)));
        self.assist = Assist {
            total_ns: sites.iter().map(|s| s.ns).sum(),
            sites,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use goprobe_common::{CallerStack, StwEvent, TRIGGER_UNKNOWN, stw_abi};

    use super::*;
    use crate::{
        clock::Clock,
        report::sites::tests::stack as named,
        signal::gc::GcTracker,
        signal::{Site, Stack},
    };

    fn caller(id: i64) -> CallerStack {
        CallerStack { id, ret: 0 }
    }

    fn two(leaf: &str, caller: &str) -> Stack {
        let mut s = named(leaf);
        s.locations = s
            .locations
            .iter()
            .chain(named(caller).locations.iter())
            .cloned()
            .collect();
        s
    }

    #[test]
    fn stacks_go_where_they_belong() {
        let mut t = GcTracker::new(stw_abi::GO122);
        let ev = |reason, cycles, numgc, c: CallerStack| StwEvent {
            reason,
            cycles,
            numgc,
            started: 1_000,
            now: 1_100,
            trigger: TRIGGER_UNKNOWN,
            caller: c,
            ..Default::default()
        };
        // NB: a forced cycle is one the runtime marks `work.userForced` (signal::gc).
        let mut sweep = ev(2, 5, 4, caller(1));
        sweep.trigger = 2; // gcTriggerCycle
        sweep.user_forced = 1;
        t.on_event(&sweep);
        let mut mark = ev(1, 5, 5, caller(99));
        mark.user_forced = 1;
        t.on_event(&mark);
        t.on_event(&ev(7, 5, 5, caller(2)));
        let mut heap = ev(2, 6, 5, caller(3));
        heap.trigger = 0;
        t.on_event(&heap);
        t.on_event(&ev(1, 6, 6, CallerStack::NONE));
        let stack = |c: &CallerStack| -> Stack {
            match c.id {
                -1 => Stack::default(),
                // Two distinct stack ids with the same names are one site.
                4 | 6 => two("runtime.gcAssistAlloc", "main.a"),
                id => named(&format!("f{id}")),
            }
        };
        let site = |c, value| Site {
            stack: stack(&c),
            value,
        };
        let assist = Assists {
            by_stack: vec![
                site(caller(4), 10),
                site(caller(5), 30),
                site(caller(6), 5),
                site(CallerStack::NONE, 1),
            ],
            by_cycle: BTreeMap::from([(5, 40), (6, 6)]),
        };
        let mut gc = Gc::from_tracker(&t, &Clock::new(), Vec::new());
        gc.add_stacks(&GcStacks::new(&t, stack), &assist);
        assert_eq!(gc.cycles[0].trigger_stack, Some(vec!["f1".to_owned()]));
        assert_eq!(gc.cycles[1].trigger_stack, None);
        assert_eq!((gc.cycles[0].assist_ns, gc.cycles[1].assist_ns), (40, 6));
        assert!(
            gc.cycles
                .iter()
                .flat_map(|c| &c.stw)
                .all(|s| s.stack.is_none())
        );
        assert_eq!(gc.other_stw[0].stack, Some(vec!["f2".to_owned()]));
        assert_eq!(gc.assist.total_ns, 46);
        let sites: Vec<(usize, u64)> = gc
            .assist
            .sites
            .iter()
            .map(|s| (s.stack.len(), s.ns))
            .collect();
        assert_eq!(sites, [(1, 30), (2, 15), (0, 1)]);
    }

    #[test]
    fn forced_trigger_under_either_name() {
        assert!(is_forced("cycle") && is_forced("forced"));
        assert!(!is_forced("heap") && !is_forced("time") && !is_forced("unknown"));
    }
}
