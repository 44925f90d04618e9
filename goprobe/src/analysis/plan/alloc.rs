//! Where the allocation probes go and what they read: the allocator's functions per Go release
//! and the `mcache`/`mspan` fields the span-refill sampler reads (from the target's DWARF when
//! present, else this per-release table, checked against DWARF in `goprobe/tests/layout.rs`).

use std::sync::OnceLock;

use super::FunctionPlan;
use crate::analysis::{TargetError, layout::dwarf::DwarfFields};

/// NB: the allocator's functions (Go 1.19–1.27): `mallocgc` (src/runtime/malloc.go) is every
/// allocation's entry up to Go 1.26; `profilealloc` (malloc.go) is the heap-profile sampler's
/// hook; `(*mcache).refill` and `(*mcache).allocLarge` (mcache.go) are the slow paths where
/// the runtime accounts small and large allocations (heapStats).
pub const MALLOCGC: &str = "runtime.mallocgc";
pub const PROFILEALLOC: &str = "runtime.profilealloc";
pub const REFILL: &str = "runtime.(*mcache).refill";
pub const ALLOC_LARGE: &str = "runtime.(*mcache).allocLarge";

/// Offsets of the `mcache` and `mspan` fields the span-refill sampler reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocLayout {
    /// `runtime.mcache.alloc` ([numSpanClasses]*mspan), src/runtime/mcache.go.
    pub mcache_alloc: Option<u32>,
    /// `runtime.mcache.tinyAllocs` (uintptr).
    pub mcache_tiny_allocs: Option<u32>,
    /// `runtime.mspan.allocCount` (uint16), src/runtime/mheap.go.
    pub span_alloc_count: Option<u32>,
    /// `runtime.mspan.allocCountBeforeCache` (uint16).
    pub span_alloc_count_before_cache: Option<u32>,
    /// `runtime.mspan.elemsize` (uintptr).
    pub span_elemsize: Option<u32>,
}

impl AllocLayout {
    /// Every offset, when all are known.
    pub fn complete(&self) -> Option<[u32; 5]> {
        Some([
            self.mcache_alloc?,
            self.mcache_tiny_allocs?,
            self.span_alloc_count?,
            self.span_alloc_count_before_cache?,
            self.span_elemsize?,
        ])
    }
}

/// The struct fields [`AllocLayout`] reads, as DWARF names them.
pub const DWARF_FIELDS: &[(&str, &str)] = &[
    ("runtime.mcache", "alloc"),
    ("runtime.mcache", "tinyAllocs"),
    ("runtime.mspan", "allocCount"),
    ("runtime.mspan", "allocCountBeforeCache"),
    ("runtime.mspan", "elemsize"),
];

/// The table layout of Go 1.`minor`; offsets of releases no binary was available to verify
/// against are `None` (the span-refill sampler then needs the target's DWARF).
pub fn for_minor(minor: u32) -> AllocLayout {
    // NB: from the DWARF of binaries built by go1.19.8, 1.21.13, 1.23.9, 1.25.5, 1.27.3:
    // mspan.nelems shrank from uintptr to uint16 in 1.22 (allocCount 104 -> 96); 1.25 added
    // mcache.memProfRate (src/runtime/mcache.go) before tinyAllocs and alloc.
    let l = |alloc, tiny, count| AllocLayout {
        mcache_alloc: Some(alloc),
        mcache_tiny_allocs: Some(tiny),
        span_alloc_count: Some(count),
        span_alloc_count_before_cache: Some(count + 6),
        span_elemsize: Some(count + 8),
    };
    match minor {
        19 | 23 => l(40, 32, 96),
        21 => l(40, 32, 104),
        25 | 27 => l(48, 40, 96),
        _ => AllocLayout::default(),
    }
}

impl DwarfFields {
    /// `table` with every allocation field DWARF knows replaced by DWARF's offset.
    pub fn apply_alloc(&self, table: AllocLayout) -> AllocLayout {
        let c = |f, t: Option<u32>| self.get("runtime.mcache", f).or(t);
        let s = |f, t: Option<u32>| self.get("runtime.mspan", f).or(t);
        AllocLayout {
            mcache_alloc: c("alloc", table.mcache_alloc),
            mcache_tiny_allocs: c("tinyAllocs", table.mcache_tiny_allocs),
            span_alloc_count: s("allocCount", table.span_alloc_count),
            span_alloc_count_before_cache: s(
                "allocCountBeforeCache",
                table.span_alloc_count_before_cache,
            ),
            span_elemsize: s("elemsize", table.span_elemsize),
        }
    }
}

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
    fn tested_releases_have_every_offset() {
        for minor in [19, 21, 23, 25, 27] {
            assert!(for_minor(minor).complete().is_some(), "1.{minor}");
        }
        assert!(for_minor(22).complete().is_none());
    }

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
