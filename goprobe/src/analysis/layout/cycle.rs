//! Runtime struct offsets for the per-cycle readings (phases, heap sizes, GOGC, GOMEMLIMIT, heap
//! goal): from the target's DWARF when present, else from this per-release table.
//!
//! Checked against the DWARF of binaries built by every tested release in
//! `goprobe/tests/layout.rs`.

use super::dwarf::DwarfFields;

/// Offsets of the fields read at a cycle's final stop-the-world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CycleLayout {
    /// `runtime.workType.tSweepTerm`, `tMark`, `tMarkTerm`, `tEnd` (int64), src/runtime/mgc.go.
    pub work_t: [u32; 4],
    /// `runtime.workType.heap0`, `heap1`, `heap2` (uint64), src/runtime/mgc.go.
    pub work_heap: [u32; 3],
    /// `runtime.gcControllerState.gcPercent` (int32 / atomic.Int32), src/runtime/mgcpacer.go.
    pub gcc_gc_percent: u32,
    /// `runtime.gcControllerState.memoryLimit` (atomic.Int64), src/runtime/mgcpacer.go.
    pub gcc_memory_limit: u32,
    /// `runtime.gcControllerState.lastHeapGoal` (uint64), src/runtime/mgcpacer.go; `None` for
    /// releases whose offset could not be verified (reported unavailable without DWARF).
    pub gcc_last_heap_goal: Option<u32>,
}

/// The struct fields [`CycleLayout`] reads, as DWARF names them.
pub const DWARF_FIELDS: &[(&str, &str)] = &[
    ("runtime.workType", "tSweepTerm"),
    ("runtime.workType", "tMark"),
    ("runtime.workType", "tMarkTerm"),
    ("runtime.workType", "tEnd"),
    ("runtime.workType", "heap0"),
    ("runtime.workType", "heap1"),
    ("runtime.workType", "heap2"),
    ("runtime.gcControllerState", "gcPercent"),
    ("runtime.gcControllerState", "memoryLimit"),
    ("runtime.gcControllerState", "lastHeapGoal"),
];

/// The table layout of Go 1.`minor` (a supported release), or `None`.
pub fn for_minor(minor: u32) -> Option<CycleLayout> {
    // NB: workType declares `tSweepTerm, tMark, tMarkTerm, tEnd int64` and `heap0, heap1, heap2
    // uint64` on one line each, so they are consecutive (src/runtime/mgc.go, Go 1.19–1.27).
    // gcControllerState begins with `gcPercent` then `memoryLimit` (mgcpacer.go, 1.19–1.27).
    // Offsets of tested releases from their DWARF (go1.19.8, 1.21.13, 1.23.9, 1.25.5, 1.27.3);
    // 1.22, 1.24, 1.26 from shared/research/dwarf-offsets-amd64.txt (tSweepTerm, heap0), with
    // no verified lastHeapGoal.
    let l = |t0: u32, heap0: u32, last_heap_goal: Option<u32>| CycleLayout {
        work_t: [t0, t0 + 8, t0 + 16, t0 + 24],
        work_heap: [heap0, heap0 + 8, heap0 + 16],
        gcc_gc_percent: 0,
        gcc_memory_limit: 8,
        gcc_last_heap_goal: last_heap_goal,
    };
    Some(match minor {
        19 => l(360, 408, Some(128)),
        21 => l(416, 464, Some(96)),
        22 => l(416, 456, None),
        23 => l(440, 480, Some(96)),
        24 => l(440, 480, None),
        25 => l(528, 568, Some(96)),
        26 => l(664, 704, None),
        27 => l(664, 704, Some(96)),
        _ => return None,
    })
}

impl DwarfFields {
    /// `table` with every cycle field DWARF knows replaced by DWARF's offset.
    pub fn apply_cycle(&self, table: CycleLayout) -> CycleLayout {
        let w = |f, fallback| self.get("runtime.workType", f).unwrap_or(fallback);
        let c = |f| self.get("runtime.gcControllerState", f);
        CycleLayout {
            work_t: [
                w("tSweepTerm", table.work_t[0]),
                w("tMark", table.work_t[1]),
                w("tMarkTerm", table.work_t[2]),
                w("tEnd", table.work_t[3]),
            ],
            work_heap: [
                w("heap0", table.work_heap[0]),
                w("heap1", table.work_heap[1]),
                w("heap2", table.work_heap[2]),
            ],
            gcc_gc_percent: c("gcPercent").unwrap_or(table.gcc_gc_percent),
            gcc_memory_limit: c("memoryLimit").unwrap_or(table.gcc_memory_limit),
            gcc_last_heap_goal: c("lastHeapGoal").or(table.gcc_last_heap_goal),
        }
    }
}
