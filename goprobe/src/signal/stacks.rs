//! Captured stacks → frame names, leaf first, as reports show them.
//!
//! The kernel side records stack ids and return addresses ([`CallerStack`]); this module turns
//! them into Go function names with the session's [`Symbolizer`], once per distinct stack.

use std::collections::HashMap;

use goprobe_common::CallerStack;

use crate::{
    output::{Location, MappingInfo},
    probe::Probes,
    symbolize::Symbolizer,
};

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

    /// The locations of `caller`, leaf first: each address with its frames (inlined calls
    /// first), return addresses resolved at `addr - 1` as [`Symbolizer::stack`] does.
    pub fn locations(&mut self, probes: &Probes, caller: &CallerStack) -> Vec<Location> {
        probes
            .caller_addrs(caller)
            .iter()
            .enumerate()
            .map(|(i, &address)| {
                let pc = if i == 0 {
                    address
                } else {
                    address.saturating_sub(1)
                };
                Location {
                    address,
                    frames: self.symbolizer.frames(self.pid, pc),
                }
            })
            .collect()
    }

    /// The file mappings the locations of `samples` lie in, each once, by address.
    pub fn mappings<'l>(
        &mut self,
        locations: impl Iterator<Item = &'l Location>,
    ) -> Vec<MappingInfo> {
        let mut out: Vec<MappingInfo> = Vec::new();
        for l in locations {
            if out.iter().any(|m| (m.start..m.limit).contains(&l.address)) {
                continue;
            }
            if let Some(m) = self.symbolizer.mapping_info(self.pid, l.address) {
                out.push(MappingInfo {
                    start: m.start,
                    limit: m.end,
                    file_offset: m.file_offset,
                    path: m.path,
                    build_id: m.build_id,
                });
            }
        }
        out.sort_by_key(|m| m.start);
        out
    }
}
