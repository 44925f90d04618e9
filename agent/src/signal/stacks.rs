//! Captured stacks → frame names, leaf first, as reports show them.
//!
//! The kernel side records stack ids and return addresses ([`CallerStack`]); this module turns
//! them into Go function names with the session's [`Symbolizer`], once per distinct stack.

use std::collections::HashMap;

use goprobe_common::CallerStack;

use crate::{probe::Probes, symbolize::Symbolizer};

/// Names the stacks of one process.
pub struct StackNamer {
    pid: u32,
    symbolizer: Symbolizer,
    cache: HashMap<CallerStack, Vec<String>>,
}

impl StackNamer {
    /// A namer for process `pid`. `text_pc` is any address of the process's own Go code: it is
    /// resolved at once, so that the binary is open (and its mapping known) even if the process
    /// has exited by the time stacks are named.
    pub fn new(pid: u32, text_pc: u64) -> Self {
        let mut symbolizer = Symbolizer::new();
        let _ = symbolizer.frames(pid, text_pc);
        Self {
            pid,
            symbolizer,
            cache: HashMap::new(),
        }
    }

    /// The frame names of `caller`, leaf first (inlined frames included); empty when no stack
    /// was captured.
    pub fn names(&mut self, probes: &Probes, caller: &CallerStack) -> Vec<String> {
        if let Some(names) = self.cache.get(caller) {
            return names.clone();
        }
        let addrs = probes.caller_addrs(caller);
        let names: Vec<String> = self
            .symbolizer
            .stack(self.pid, &addrs)
            .iter()
            .map(|f| f.function.to_string())
            .collect();
        self.cache.insert(*caller, names.clone());
        names
    }
}
