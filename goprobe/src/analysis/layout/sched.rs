//! Runtime struct offsets for the goroutine count (`runtime.gcount()`): from the target's DWARF
//! when present, else from this per-release table.
//!
//! Checked against the DWARF of binaries built by every tested release in
//! `goprobe/tests/layout.rs`.

use super::dwarf::DwarfFields;

/// Where `gcount()`'s inputs are, besides `runtime.allglen` and `runtime.allp` themselves.
///
/// NB: `gcount()` (src/runtime/proc.go, Go 1.19–1.27) is
/// `allglen - sched.gFree.<counts> - sched.ngsys - Σ allp[i].gFree.<count>`, clamped to ≥ 1;
/// `runtime.NumGoroutine()` returns it (Go 1.26+: `gcount(false)`, still without system
/// goroutines). The counts are int32 and changed concurrently; the runtime reads them racily too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedLayout {
    /// `runtime.schedt.ngsys` (int32; `atomic.Int32` since Go 1.20), src/runtime/runtime2.go.
    pub sched_ngsys: u32,
    /// `runtime.schedt.gFree` (an anonymous struct), src/runtime/runtime2.go.
    pub sched_gfree: u32,
    /// Offsets inside `sched.gFree` of the int32 counts `gcount()` subtracts (0 = none).
    pub sched_gfree_counts: [u32; 2],
    /// `runtime.p.gFree`, src/runtime/runtime2.go.
    pub p_gfree: u32,
    /// Offset inside `p.gFree` of its int32 count.
    pub p_gfree_count: u32,
    /// Whether these offsets were checked against this release's DWARF (the table's, or the
    /// target's own). Unverified offsets are not used: the count is reported unavailable.
    pub verified: bool,
}

impl SchedLayout {
    /// Absolute offsets in `runtime.sched` of the counts to subtract.
    pub fn sched_counts(&self) -> impl Iterator<Item = u32> + '_ {
        self.sched_gfree_counts
            .iter()
            .filter(|&&c| c != 0)
            .map(|c| self.sched_gfree + c)
    }

    /// Absolute offset in `runtime.p` of its free-list count.
    pub fn p_count(&self) -> u32 {
        self.p_gfree + self.p_gfree_count
    }
}

/// The struct fields [`SchedLayout`] reads, as DWARF names them.
pub const DWARF_FIELDS: &[(&str, &str)] = &[
    ("runtime.schedt", "ngsys"),
    ("runtime.schedt", "gFree"),
    ("runtime.p", "gFree"),
];

/// The table layout of Go 1.`minor` (a supported release), or `None`.
pub fn for_minor(minor: u32) -> Option<SchedLayout> {
    // NB: inside the gFree structs (src/runtime/runtime2.go): Go 1.19–1.24
    // `sched.gFree struct { lock mutex; stack gList; noStack gList; n int32 }` (mutex and gList
    // are one word each: n at +24) and `p.gFree struct { gList; n int32 }` (n at +8); Go 1.25+
    // `type gList struct { head guintptr; size int32 }` (16 bytes, proc.go), so
    // `sched.gFree struct { lock mutex; stack gList; noStack gList }` has stack.size at +16 and
    // noStack.size at +32, and `p.gFree gList` its size at +8.
    // Offsets of tested releases from their DWARF (go1.19.8, 1.21.13, 1.23.9, 1.25.5, 1.27.3);
    // 1.24 from shared/research/go-runtime.md §8 (sched.ngsys, sched.gFree.n, p.gFree.n). 1.22
    // (p.gFree) and 1.26 (sched.gFree, p.gFree) are guesses from their neighbours that no
    // DWARF has confirmed: without the target's own DWARF, those releases get no count.
    let old = |ngsys, gfree, p_gfree, verified| SchedLayout {
        sched_ngsys: ngsys,
        sched_gfree: gfree,
        sched_gfree_counts: [24, 0],
        p_gfree,
        p_gfree_count: 8,
        verified,
    };
    let new = |ngsys, gfree, p_gfree, verified| SchedLayout {
        sched_ngsys: ngsys,
        sched_gfree: gfree,
        sched_gfree_counts: [16, 32],
        p_gfree,
        p_gfree_count: 8,
        verified,
    };
    Some(match minor {
        19 => old(72, 152, 2464, true),
        21 => old(72, 160, 2464, true),
        22 => old(72, 160, 2464, false),
        23 | 24 => old(72, 160, 2456, true),
        25 => new(80, 168, 2456, true),
        26 => new(96, 184, 2464, false),
        27 => new(96, 184, 2464, true),
        _ => return None,
    })
}

impl DwarfFields {
    /// `table` with every goroutine-count field DWARF knows replaced by DWARF's offset.
    pub fn apply_sched(&self, table: SchedLayout) -> SchedLayout {
        let own = DWARF_FIELDS.iter().all(|(s, f)| self.get(s, f).is_some());
        SchedLayout {
            verified: table.verified || own,
            sched_ngsys: self
                .get("runtime.schedt", "ngsys")
                .unwrap_or(table.sched_ngsys),
            sched_gfree: self
                .get("runtime.schedt", "gFree")
                .unwrap_or(table.sched_gfree),
            p_gfree: self.get("runtime.p", "gFree").unwrap_or(table.p_gfree),
            ..table
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_where_the_research_measured_them() {
        // NB: shared/research/go-runtime.md §8 (DWARF, amd64): sched.gFree.n 184 (1.21–1.24),
        // stack.size/noStack.size 184/200 (1.25) and 200/216 (1.27); p.gFree.n 2472 (1.21),
        // 2464 (1.24); p.gFree.size 2464 (1.25), 2472 (1.27).
        let c = |m| {
            let l = for_minor(m).unwrap();
            (l.sched_counts().collect::<Vec<_>>(), l.p_count())
        };
        assert_eq!(c(21), (vec![184], 2472));
        assert_eq!(c(24), (vec![184], 2464));
        assert_eq!(c(25), (vec![184, 200], 2464));
        assert_eq!(c(27), (vec![200, 216], 2472));
    }
}
