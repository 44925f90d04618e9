//! The runtime's allocator structs as the span-refill sampler reads them: `mcache` and `mspan`
//! field offsets per release, and from DWARF.

use super::dwarf::DwarfFields;

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
}
