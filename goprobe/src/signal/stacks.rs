//! Captured stacks → [`Stack`]s: each address resolved to its frames, leaf first.
//!
//! The kernel side records stack ids and return addresses ([`CallerStack`]); this module reads
//! their addresses from the stack map and resolves them with the session's [`Symbolizer`], once
//! per distinct stack. Every consumer takes the same [`Stack`]: the report's frame names are
//! [`Stack::names`], a profile's locations are [`Stack::locations`], so the two always agree.

use std::{collections::HashMap, sync::Arc};

use goprobe_common::CallerStack;

use crate::{
    probe::Probes,
    symbolize::{Location, MappingInfo, Symbolizer},
};

/// One resolved stack: its addresses, leaf first, each with its frames (inlined calls first).
/// Empty when no stack was captured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stack {
    pub locations: Arc<[Location]>,
}

impl Stack {
    /// Frame names, leaf first, inlined frames included, as the runtime names functions.
    pub fn names(&self) -> Vec<String> {
        self.locations
            .iter()
            .flat_map(|l| l.frames.iter().map(|f| f.function.to_string()))
            .collect()
    }

    /// This stack without its first (leaf-side) frames: `count(names)` gets the frame names
    /// leaf first and says how many to drop (e.g. the allocator's own frames). Whole locations
    /// go while they have no more frames than left to drop, then the leading (inlined) frames of
    /// the next one.
    pub fn trim_leaf(&self, count: impl Fn(&[&str]) -> usize) -> Self {
        let names: Vec<&str> = self
            .locations
            .iter()
            .flat_map(|l| l.frames.iter().map(|f| &*f.function))
            .collect();
        let mut n = count(&names).min(names.len());
        if n == 0 {
            return self.clone();
        }
        let mut locations: Vec<Location> = Vec::with_capacity(self.locations.len());
        for l in self.locations.iter() {
            if n >= l.frames.len() {
                n -= l.frames.len();
                continue;
            }
            let mut l = l.clone();
            if n > 0 {
                l.frames = l.frames[n..].into();
                n = 0;
            }
            locations.push(l);
        }
        Self {
            locations: locations.into(),
        }
    }
}

/// One stack and what a signal counted on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site<V> {
    pub stack: Stack,
    pub value: V,
}

/// Resolves the stacks of one process.
pub struct StackNamer {
    pid: u32,
    symbolizer: Symbolizer,
    /// Each stack named, with the [`Self::age`] it was last asked for.
    cache: HashMap<CallerStack, (Stack, u64)>,
    /// Advanced by [`Self::evict`]: the agent's takes.
    age: u64,
    /// Captured stacks whose frames were gone from the kernel's map when asked for (deleted
    /// as unreferenced, see `probe::rotate`): their weight is reported with an empty stack.
    pub missing: u64,
}

impl StackNamer {
    /// A namer for process `pid`. `text_pc` is any address of the process's own Go code: it is
    /// resolved at once, so that the binary is open (and its mapping known) even if the process
    /// has exited by the time stacks are resolved.
    pub fn new(pid: u32, text_pc: u64) -> Self {
        let mut symbolizer = Symbolizer::new();
        let _ = symbolizer.frames(pid, text_pc);
        Self {
            pid,
            symbolizer,
            cache: HashMap::new(),
            age: 0,
            missing: 0,
        }
    }

    /// The stack of `caller`: each address with its frames, return addresses resolved at
    /// `addr - 1` as [`Symbolizer::stack`] does; empty when no stack was captured.
    pub fn stack(&mut self, probes: &Probes, caller: &CallerStack) -> Stack {
        if let Some((stack, age)) = self.cache.get_mut(caller) {
            *age = self.age;
            return stack.clone();
        }
        let addrs = probes.caller_addrs(caller);
        if caller.is_some() && addrs.is_empty() {
            self.missing += 1;
        }
        let locations: Vec<Location> = addrs
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
            .collect();
        let stack = Stack {
            locations: locations.into(),
        };
        self.cache.insert(*caller, (stack.clone(), self.age));
        stack
    }

    /// Forgets the stacks not asked for in the last `ages` calls (the agent calls it once per
    /// take, `ages` longer than the kernel keeps an unreferenced stack): the cache holds the
    /// stacks in use, not every stack ever seen. Returns how many were forgotten.
    pub fn evict(&mut self, ages: u64) -> usize {
        self.age += 1;
        let before = self.cache.len();
        let now = self.age;
        self.cache.retain(|_, (_, at)| now - *at <= ages);
        before - self.cache.len()
    }

    /// Stacks named and kept.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The sites of `raw`, each stack resolved, each value mapped by `value`.
    pub fn sites<R, V>(
        &mut self,
        probes: &Probes,
        raw: impl IntoIterator<Item = (CallerStack, R)>,
        value: impl Fn(R) -> V,
    ) -> Vec<Site<V>> {
        raw.into_iter()
            .map(|(caller, r)| Site {
                stack: self.stack(probes, &caller),
                value: value(r),
            })
            .collect()
    }

    /// The file mappings `locations` lie in, each once, by address.
    pub fn mappings<'l>(
        &mut self,
        locations: impl Iterator<Item = &'l Location>,
    ) -> Vec<MappingInfo> {
        let mut out: Vec<MappingInfo> = Vec::new();
        for l in locations {
            if out.iter().any(|m| (m.start..m.end).contains(&l.address)) {
                continue;
            }
            if let Some(m) = self.symbolizer.mapping_info(self.pid, l.address) {
                out.push(m);
            }
        }
        out.sort_by_key(|m| m.start);
        out
    }
}

/// A one-frame stack named `name`, for tests of the rooms that consume stacks.
#[cfg(test)]
pub(crate) fn test_stack(name: &str) -> Stack {
    let frame = crate::symbolize::Frame {
        function: name.into(),
        file: None,
        line: 0,
        inlined: false,
        kind: crate::symbolize::FrameKind::Go,
    };
    Stack {
        locations: vec![Location {
            address: 1,
            frames: vec![frame].into(),
        }]
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolize::{Frame, FrameKind};

    fn loc(address: u64, names: &[&str]) -> Location {
        Location {
            address,
            frames: names
                .iter()
                .map(|n| Frame {
                    function: (*n).into(),
                    file: None,
                    line: 0,
                    inlined: false,
                    kind: FrameKind::Go,
                })
                .collect(),
        }
    }

    #[test]
    fn trimming_drops_whole_locations_then_inlined_frames() {
        let s = Stack {
            locations: vec![
                loc(1, &["runtime.mallocgc"]),
                loc(2, &["runtime.newobject", "main.inlined"]),
                loc(3, &["main.main"]),
            ]
            .into(),
        };
        assert_eq!(
            s.names(),
            [
                "runtime.mallocgc",
                "runtime.newobject",
                "main.inlined",
                "main.main"
            ]
        );
        let t = s.trim_leaf(|_| 2);
        assert_eq!(t.names(), ["main.inlined", "main.main"]);
        assert_eq!(t.locations[0].address, 2);
        assert_eq!(s.trim_leaf(|_| 0), s);
        assert_eq!(s.trim_leaf(|_| 9).locations.len(), 0);
    }
}
