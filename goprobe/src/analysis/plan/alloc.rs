//! Where the allocation probes go and what they read: the allocator's functions per Go release
//! and the `mcache`/`mspan` fields the span-refill sampler reads (from the target's DWARF when
//! present, else this per-release table, checked against DWARF in `goprobe/tests/layout.rs`).

use std::sync::OnceLock;

use super::FunctionPlan;
use crate::analysis::TargetError;

/// NB: the allocator's functions (Go 1.19–1.27): `mallocgc` (src/runtime/malloc.go) is every
/// allocation's entry up to Go 1.26; `profilealloc` (malloc.go) is the heap-profile sampler's
/// hook; `(*mcache).refill` and `(*mcache).allocLarge` (mcache.go) are the slow paths where
/// the runtime accounts small and large allocations (heapStats).
pub const MALLOCGC: &str = "runtime.mallocgc";
pub const PROFILEALLOC: &str = "runtime.profilealloc";
pub const REFILL: &str = "runtime.(*mcache).refill";
pub const ALLOC_LARGE: &str = "runtime.(*mcache).allocLarge";

/// NB: the size-specialized allocation entry points the compiler calls directly for `new(T)`
/// (T ≤ 80 B) and mallocgc dispatches to: Go 1.27 (src/runtime/malloc_generated.go:
/// `mallocgcSmallScanNoHeaderSC1..7`, `mallocgcSmallNoScanSC2..7`, `mallocgcTinySC2`) and 1.26
/// with GOEXPERIMENT=sizespecializedmalloc (`…SC1..26`, `mallocgcTinySize1..15`). Looked up by
/// name; the ones a binary has are probed. The `…SlowPath` functions are called from these
/// and are not entry points.
fn direct_candidates() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let prefixes = [
            "runtime.mallocgcSmallScanNoHeaderSC",
            "runtime.mallocgcSmallNoScanSC",
            "runtime.mallocgcTinySC",
            "runtime.mallocgcTinySize",
        ];
        prefixes
            .iter()
            .flat_map(|p| (1..=40).map(move |n| &*format!("{p}{n}").leak()))
            .collect()
    })
}

/// The allocation probes one target can have; each `None` when its function cannot be probed.
#[derive(Clone, Debug, Default)]
pub struct AllocPlans {
    pub mallocgc: Option<FunctionPlan>,
    /// Run-time `[start, end)` of `runtime.mallocgc`'s code.
    pub mallocgc_range: (u64, u64),
    /// The size-specialized entry points this binary has (empty before Go 1.27).
    pub direct: Vec<FunctionPlan>,
    pub profilealloc: Option<FunctionPlan>,
    pub refill: Option<FunctionPlan>,
    pub alloc_large: Option<FunctionPlan>,
    /// Whether the entry sites are the stack check's `jbe` (Go 1.19's prologue, see
    /// [`crate::analysis::binary::disasm::probe_sites`]) rather than `push rbp`.
    pub entry_on_jbe: bool,
}

/// Plans the allocation probes with `plan` (the target's probe planner) and `len` (a
/// runtime function's code length), logging each function that cannot be probed.
pub fn plans<'d>(
    pid: u32,
    plan: &dyn Fn(&'static str) -> Result<FunctionPlan, TargetError>,
    code: &dyn Fn(&str) -> Option<&'d [u8]>,
) -> AllocPlans {
    let len = |name: &str| code(name).map(|c| c.len() as u64);
    let optional = |name: &'static str| {
        plan(name)
            .inspect_err(|e| tracing::debug!(pid, "no allocation probe in {name}: {e}"))
            .ok()
    };
    let mallocgc = optional(MALLOCGC);
    let mallocgc_range = mallocgc
        .as_ref()
        .zip(len(MALLOCGC))
        .map(|(p, n)| (p.addr, p.addr + n))
        .unwrap_or((0, 0));
    let direct = direct_candidates()
        .iter()
        .filter(|name| len(name).is_some())
        .filter_map(|name| optional(name))
        .collect();
    // NB: `jbe rel8` (0x76) or `jbe rel32` (0x0f 0x86) at the entry site.
    let entry_on_jbe = mallocgc
        .as_ref()
        .zip(code(MALLOCGC))
        .and_then(|(p, c)| c.get(usize::try_from(p.sites.entry).ok()?..))
        .is_some_and(|c| c.first() == Some(&0x76) || c.starts_with(&[0x0f, 0x86]));
    AllocPlans {
        entry_on_jbe,
        mallocgc,
        mallocgc_range,
        direct,
        profilealloc: optional(PROFILEALLOC),
        refill: optional(REFILL),
        alloc_large: optional(ALLOC_LARGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_the_go_1_27_set() {
        let c = direct_candidates();
        for n in [
            "runtime.mallocgcSmallScanNoHeaderSC1",
            "runtime.mallocgcSmallScanNoHeaderSC7",
            "runtime.mallocgcSmallNoScanSC2",
            "runtime.mallocgcSmallNoScanSC7",
            "runtime.mallocgcTinySC2",
        ] {
            assert!(c.contains(&n), "{n}");
        }
        assert!(!c.iter().any(|n| n.ends_with("SlowPath")));
    }
}
