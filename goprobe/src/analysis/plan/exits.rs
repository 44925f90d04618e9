//! Where the ends of a stop-the-world and of a mark assist are read without a probe on a RET.
//!
//! A uprobe on a RET (or on any instruction the kernel does not emulate) is single-stepped out of
//! line: two traps, 10–15 µs per hit on this VM, against about 0.5 µs for an emulated `push rbp`
//! or `call` (shared/research/go-runtime.md §4.3; measured again for issue 19 with tracefs
//! uprobes on the same Go 1.27 sites). At ~130 GC cycles a second (an allocation-heavy program
//! with GOMAXPROCS=1) the RET probes of `startTheWorldWithSema` and `gcAssistAlloc1` were most of
//! what goprobe cost the target. Both ends can be read elsewhere:
//! - a stop-the-world's `now` is known at `startTheWorldWithSema` entry, or stored by its caller,
//!   or (for the rare callers that discard it) in RAX right after their call;
//! - a mark assist ends at the runtime's own second `nanotime()` of `gcAssistAlloc1`, a `call`.
//!
//! Anything unrecognised falls back to the RET probes.

use goprobe_common::stw_abi;

use super::FunctionPlan;
use crate::analysis::binary::{
    disasm::{self, FunctionProbes},
    symbols::RuntimeSymbols,
};

/// How a caller of `startTheWorldWithSema` hands over the `now` it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// Passes `now` in: known at entry.
    PassesNow,
    /// Passes 0 and stores the result in `work.tMark` (read in user space).
    StoresTMark,
    /// Passes 0 and keeps the result to itself: probed right after the call.
    AfterCall,
}

/// NB: the callers of `startTheWorldWithSema` in Go 1.22–1.27 (src/runtime/mgc.go, proc.go):
/// gcStart's closure `now = startTheWorldWithSema(0, stw); …; work.tMark = now`;
/// gcMarkTermination's closure `startTheWorldWithSema(now, stw)`; gcMarkDone's closure (a mark
/// termination restarted, issue 27993) `now := startTheWorldWithSema(0, stw)`; startTheWorld's
/// closure `startTheWorldWithSema(0, w)` (every non-GC stop-the-world).
const CALLERS: &[(&str, Caller, &str)] = &[
    (
        "runtime.gcStart.func",
        Caller::StoresTMark,
        "runtime.gcStart (closure)",
    ),
    (
        "runtime.gcMarkTermination.func",
        Caller::PassesNow,
        "runtime.gcMarkTermination (closure)",
    ),
    (
        "runtime.gcMarkDone.func",
        Caller::AfterCall,
        "runtime.gcMarkDone (closure)",
    ),
    (
        "runtime.startTheWorld.func",
        Caller::AfterCall,
        "runtime.startTheWorld (closure)",
    ),
];

/// The sites right after the calls of `startTheWorldWithSema` (at link-time `stw_addr`) in the
/// callers that discard its result, as plans whose `rets` are those sites; `None` when the STW
/// ends must be read on its RETs: an ABI before Go 1.22, a caller not in [`CALLERS`], or one of
/// them missing.
pub fn stw_exits(
    symbols: &RuntimeSymbols<'_>,
    abi: u32,
    stw_addr: u64,
    plan: &dyn Fn(&'static str, u64, Vec<u64>) -> Option<FunctionPlan>,
) -> Option<Vec<FunctionPlan>> {
    if abi != stw_abi::GO122 {
        return None;
    }
    let mut seen = [false; CALLERS.len()];
    let mut exits = Vec::new();
    for (name, f) in symbols.runtime_functions() {
        // Decode only functions with bytes that could be such a call (an E8 whose rel32 lands
        // on it): the runtime is ~1 MB of code.
        if !may_call(f.code, f.addr, stw_addr) {
            continue;
        }
        let Ok(calls) = disasm::calls(f.code, f.addr) else {
            continue;
        };
        let after: Vec<u64> = calls
            .iter()
            .filter(|&&(_, _, to)| to == stw_addr)
            .map(|&(_, next, _)| next)
            .collect();
        if after.is_empty() {
            continue;
        }
        let Some(i) = CALLERS.iter().position(|(p, ..)| name.starts_with(p)) else {
            tracing::debug!(caller = name, "unknown caller of startTheWorldWithSema");
            return None;
        };
        seen[i] = true;
        let (_, kind, label) = CALLERS[i];
        if kind == Caller::AfterCall {
            exits.push(plan(label, f.addr, after)?);
        }
    }
    seen.iter().all(|&s| s).then_some(exits)
}

/// Whether some `E8 rel32` in `code` (at link-time `addr`) would call `target`: a superset of
/// the real direct calls, checked by decoding.
fn may_call(code: &[u8], addr: u64, target: u64) -> bool {
    code.windows(5).enumerate().any(|(i, w)| {
        let rel = i32::from_le_bytes([w[1], w[2], w[3], w[4]]);
        w[0] == 0xe8
            && addr
                .wrapping_add(i as u64 + 5)
                .wrapping_add_signed(i64::from(rel))
                == target
    })
}

/// NB: `gcAssistAlloc1` (src/runtime/mgcmark.go, Go 1.19–1.27) times its assist with exactly two
/// `nanotime()` calls (inlined to `call runtime.nanotime1`): `startTime := nanotime()` and, when
/// the work is done, `now := nanotime(); duration := now - startTime`. The offset of the second
/// call is where the assist ends; `None` unless there are exactly two.
///
/// The end probe runs inside the runtime's own timed span (before its second clock read), so
/// the runtime's assist time includes that probe's run: ~1.3 µs per assist on Linux 6.18. When
/// a new per-stack row still cost a per-CPU allocation (~16 µs, see ebpf/goprobe-ebpf/src/maps.rs
/// `row`), that made `/cpu/classes/gc/mark/assist:cpu-seconds` read 33% above goprobe on a
/// recursive allocator, where almost every assist has a new stack.
pub fn assist_end(symbols: &RuntimeSymbols<'_>, name: &str) -> Option<u64> {
    let f = symbols.function(name)?;
    let calls = disasm::calls(f.code, f.addr).ok()?;
    let nanotime: Vec<u64> = calls
        .iter()
        .filter(|&&(_, _, to)| symbols.function_name_at(to) == Some("runtime.nanotime1"))
        .map(|&(at, ..)| at)
        .collect();
    match nanotime[..] {
        [_, end] => Some(end),
        _ => None,
    }
}

/// A plan that probes `sites` (offsets from the function's entry) as its "RETs".
pub fn sites_plan(
    symbol: &'static str,
    file_offset: u64,
    addr: u64,
    sites: Vec<u64>,
) -> FunctionPlan {
    FunctionPlan {
        symbol,
        file_offset,
        sites: FunctionProbes {
            entry: 0,
            rets: sites,
        },
        addr,
    }
}
