//! Go runtime facts per release, as data: struct field offsets goprobe reads from the target.
//!
//! A new Go release should be a table edit plus a test run. Offsets are for linux/amd64 default
//! builds (no GOEXPERIMENT changing runtime structs, no -race); they were read from the DWARF of
//! binaries built with each release (shared/research/dwarf-offsets-amd64.txt) and are checked
//! against the live process at attach time (`analysis::Target::check_layout`).

use goprobe_common::stw_abi;

pub mod alloc;
pub mod cycle;
pub mod dwarf;
pub mod sched;

use alloc::AllocLayout;
use cycle::CycleLayout;
use sched::SchedLayout;

/// NB: the runtime struct types and fields goprobe reads, named as the Go linker names them in
/// DWARF (src/cmd/link/internal/ld/dwarf.go: package-qualified type names).
const FIELDS: &[(&str, &str)] = &[
    ("runtime.workType", "cycles"),
    ("runtime.workType", "userForced"),
    ("runtime.workType", "pauseNS"),
    ("runtime.workType", "pauseStart"),
    ("runtime.mstats", "numgc"),
    ("runtime.g", "m"),
    ("runtime.m", "curg"),
    ("runtime.m", "preemptoff"),
];

/// Every field read from DWARF ([`dwarf::DwarfFields`]): [`FIELDS`] and those of each layout
/// table.
fn dwarf_fields() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    [
        FIELDS,
        cycle::DWARF_FIELDS,
        sched::DWARF_FIELDS,
        alloc::DWARF_FIELDS,
    ]
    .into_iter()
    .flatten()
}

/// Field offsets and calling conventions of one Go release's runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeLayout {
    /// See [`goprobe_common::stw_abi`].
    pub stw_abi: u32,
    /// `runtime.workType.cycles` (atomic.Uint32), src/runtime/mgc.go.
    pub work_cycles: u32,
    /// `runtime.workType.userForced` (bool).
    pub work_user_forced: u32,
    /// `runtime.workType.pauseNS` (int64).
    pub work_pause_ns: u32,
    /// `runtime.workType.pauseStart` (int64), removed in Go 1.22.
    pub work_pause_start: Option<u32>,
    /// `runtime.mstats.numgc` (uint32), src/runtime/mstats.go.
    pub memstats_numgc: u32,
    /// `runtime.g.m` (*m), src/runtime/runtime2.go.
    pub g_m: u32,
    /// `runtime.m.curg` (*g), src/runtime/runtime2.go.
    pub m_curg: u32,
    /// `runtime.m.preemptoff` (string), read only where it carries the stop-the-world reason
    /// (Go 1.19, [`stw_abi::GO119`]).
    pub m_preemptoff: Option<u32>,
    /// What is read at a cycle's final stop-the-world (phases, heap, settings).
    pub cycle: CycleLayout,
    /// What the goroutine count is computed from (`gcount()`'s inputs).
    pub sched: SchedLayout,
    /// What the span-refill allocation sampler reads (`mcache`, `mspan`).
    pub alloc: AllocLayout,
}

/// The layout of Go 1.`minor`, or `None` outside the supported range.
pub fn for_minor(minor: u32) -> Option<RuntimeLayout> {
    // NB: Go 1.21 has no `worldStop`; its GC pause accounting uses work.pauseStart (mgc.go
    // gcStart/gcMarkDone: `work.pauseNS += now - work.pauseStart`). 1.22 introduced
    // `worldStop` and dropped pauseStart; 1.23 grew workType (cycles 400 -> 424); 1.25 moved
    // m.curg (192 -> 184) and grew workType again (cycles 512); 1.26 grew workType (cycles 648)
    // with the goroutine-leak detector; 1.25 also shrank mstats (numgc 7704 -> 7680).
    let l = |stw_abi, work_cycles, work_user_forced, work_pause_ns, memstats_numgc, m_curg| {
        RuntimeLayout {
            stw_abi,
            work_cycles,
            work_user_forced,
            work_pause_ns,
            work_pause_start: None,
            memstats_numgc,
            g_m: 48,
            m_curg,
            m_preemptoff: None,
            cycle: CycleLayout::default(),
            sched: SchedLayout::default(),
            alloc: AllocLayout::default(),
        }
    };
    let mut layout = match minor {
        // NB: Go 1.19 (src/runtime/mgc.go workType, mstats.go, runtime2.go; DWARF of go1.19.8):
        // workType is smaller than 1.21's (cycles 344), the accounting is 1.21's (pauseStart),
        // and the stop-the-world reason is the string m.preemptoff (proc.go:1089).
        19 => RuntimeLayout {
            work_pause_start: Some(400),
            m_preemptoff: Some(248),
            ..l(stw_abi::GO119, 344, 280, 392, 7704, 192)
        },
        // NB: Go 1.20 is refused: no 1.20 toolchain or unstripped 1.20 binary was available to
        // verify its offsets and its stop-the-world reason against.
        21 => RuntimeLayout {
            work_pause_start: Some(456),
            ..l(stw_abi::GO121, 400, 344, 448, 7704, 192)
        },
        22 => l(stw_abi::GO122, 400, 344, 448, 7704, 192),
        23 | 24 => l(stw_abi::GO122, 424, 336, 472, 7704, 192),
        25 => l(stw_abi::GO122, 512, 400, 560, 7680, 184),
        26 | 27 => l(stw_abi::GO122, 648, 536, 696, 7680, 184),
        _ => return None,
    };
    layout.cycle = cycle::for_minor(minor)?;
    layout.sched = sched::for_minor(minor)?;
    layout.alloc = alloc::for_minor(minor);
    Some(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::binary::version::SUPPORTED_MINORS;

    #[test]
    fn exactly_the_supported_releases_have_a_layout() {
        for minor in 0..100 {
            let Some(l) = for_minor(minor) else {
                assert!(!SUPPORTED_MINORS.contains(&minor), "1.{minor}");
                continue;
            };
            assert!(SUPPORTED_MINORS.contains(&minor), "1.{minor}");
            assert_eq!(
                l.work_pause_start.is_some(),
                stw_abi::probes_stop(l.stw_abi),
                "1.{minor}"
            );
            assert_eq!(
                l.m_preemptoff.is_some(),
                l.stw_abi == stw_abi::GO119,
                "1.{minor}"
            );
        }
    }
}
