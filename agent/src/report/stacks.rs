//! The stack parts of the GC report: callers of non-GC STWs, of forced cycles, and mark assist
//! time by allocating stack.

use std::collections::HashMap;

use goprobe_common::CallerStack;
use serde::{Deserialize, Serialize};

use super::Gc;
use crate::{probe::stacks::AssistTotals, signal::gc::GcTracker};

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
    /// Fills in stacks and assist time. `t` must be the tracker this `Gc` was built from (its
    /// cycles and other STWs in the same order); `name` turns a captured stack into frame names.
    pub fn add_stacks(
        &mut self,
        t: &GcTracker,
        assist: &AssistTotals,
        mut name: impl FnMut(&CallerStack) -> Vec<String>,
    ) {
        for (s, raw) in self.other_stw.iter_mut().zip(&t.other) {
            s.stack = Some(name(&raw.caller));
        }
        for (c, raw) in self.cycles.iter_mut().zip(&t.cycles) {
            if is_forced(&c.trigger) {
                c.trigger_stack = Some(name(&raw.trigger_caller));
            }
            c.assist_ns = assist.by_cycle.get(&c.cycle).copied().unwrap_or(0);
        }
        let mut by_names: HashMap<Vec<String>, u64> = HashMap::new();
        for (caller, ns) in &assist.by_stack {
            *by_names.entry(name(caller)).or_default() += ns;
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
