//! The stack probes (ebpf/goprobe-ebpf/src/stacks.rs): where they go, and reading the stacks and
//! assist aggregates they leave in their maps.

use std::collections::BTreeMap;

use aya::maps::HashMap;
use goprobe_common::{AssistKey, CallerStack, CycleKey, StackFrames, counter};

use super::Probes;
use crate::analysis::{FunctionPlan, Target};

/// The stack probes of `target` as (program, function, site offset), exits before entries.
pub(super) fn sites(target: &Target) -> Vec<(&'static str, &FunctionPlan, u64)> {
    let mut sites = Vec::new();
    if let Some((assist, assist1)) = &target.assist {
        // The assist's end: its second nanotime() call when found (emulated), else its RETs.
        let ends = match target.assist_end {
            Some(end) => vec![end],
            None => assist1.sites.rets.clone(),
        };
        sites.extend(ends.into_iter().map(|o| ("assist1_ret", assist1, o)));
        sites.push(("assist1_entry", assist1, assist1.sites.entry));
        sites.push(("assist_entry", assist, assist.sites.entry));
    }
    if let Some(stw) = &target.stw_caller {
        sites.push(("stw_caller_entry", stw, stw.sites.entry));
    }
    sites
}

/// `addrs` (leaf first, as walked by frame pointers at a function's entry) with the return address
/// `ret` read at that entry inserted as the second frame, unless the walk already has it there.
fn with_caller(mut addrs: Vec<u64>, ret: u64) -> Vec<u64> {
    if ret != 0 && !addrs.is_empty() && addrs.get(1) != Some(&ret) {
        addrs.insert(1, ret);
    }
    addrs
}

/// Assist time the kernel side aggregated for one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssistTotals {
    /// Nanoseconds per stack that entered `runtime.gcAssistAlloc`.
    pub by_stack: Vec<(CallerStack, u64)>,
    /// Nanoseconds per GC cycle (`work.cycles` during the assist).
    pub by_cycle: BTreeMap<u32, u64>,
}

impl Probes {
    /// The addresses of stack `id`, leaf first, as the kernel recorded them; `None` if the map
    /// has no such stack.
    pub fn stack_addrs(&self, id: i64) -> Option<Vec<u64>> {
        let id = u64::try_from(id).ok()?;
        let map = HashMap::<_, u64, StackFrames>::try_from(self.ebpf.map("STACKS")?).ok()?;
        let frames = map.get(&id, 0).ok()?;
        Some(
            frames
                .ips
                .iter()
                .copied()
                .take_while(|&ip| ip != 0)
                .collect(),
        )
    }

    /// The addresses of a captured caller stack, leaf first, with the immediate caller's return
    /// address inserted when the frame-pointer walk missed it (see [`CallerStack`]).
    pub fn caller_addrs(&self, caller: &CallerStack) -> Vec<u64> {
        if !caller.is_some() {
            return Vec::new();
        }
        with_caller(self.stack_addrs(caller.id).unwrap_or_default(), caller.ret)
    }

    /// Assist time of process `pid`.
    pub fn assist_totals(&self, pid: u32) -> AssistTotals {
        AssistTotals {
            by_stack: self
                .rows::<AssistKey, u64>("ASSIST_BY_STACK", pid, |k| k.tgid)
                .into_iter()
                .map(|(k, v)| (k.stack, v))
                .collect(),
            by_cycle: self
                .rows::<CycleKey, u64>("ASSIST_BY_CYCLE", pid, |k| k.tgid)
                .into_iter()
                .map(|(k, v)| (k.cycle, v))
                .collect(),
        }
    }

    /// Mark assist nanoseconds of process `pid` in GC cycle `cycle` so far (0
    /// when no goroutine assisted).
    pub fn assist_ns(&self, pid: u32, cycle: u32) -> u64 {
        let Some(map) = self.ebpf.map("ASSIST_BY_CYCLE") else {
            return 0;
        };
        let Ok(m) = HashMap::<_, CycleKey, u64>::try_from(map) else {
            return 0;
        };
        m.get(&CycleKey { tgid: pid, cycle }, 0).unwrap_or(0)
    }

    /// Stacks the kernel side could not capture (no user stack to walk, or the stack map full).
    pub fn failed_stacks(&self) -> u64 {
        self.counter(counter::STACK_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::with_caller;

    #[test]
    fn immediate_caller_inserted_once() {
        // Go 1.19 (probe on the stack check's jbe): the walk skips the immediate caller.
        assert_eq!(with_caller(vec![0x10, 0x30], 0x20), [0x10, 0x20, 0x30]);
        // Go 1.21+ (probe on push rbp): the kernel already added it.
        assert_eq!(
            with_caller(vec![0x10, 0x20, 0x30], 0x20),
            [0x10, 0x20, 0x30]
        );
        assert_eq!(with_caller(vec![0x10], 0x20), [0x10, 0x20]);
        assert_eq!(with_caller(vec![], 0x20), Vec::<u64>::new());
        assert_eq!(with_caller(vec![0x10, 0x30], 0), [0x10, 0x30]);
    }
}
