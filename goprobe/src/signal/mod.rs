//! Signals: what the probes left in their maps and ring buffer, and what the runtime keeps in
//! its memory, turned into typed records — one module per signal. This is the only layer that
//! reads the probes' maps; the report, the live view, the profiles and the exporters consume
//! its records.
//!
//! The stack-attributed signals are read together into one [`Reading`]: the report and the
//! profiles of a window are built from the same one, so their totals agree by construction.

pub mod alloc;
pub mod assist;
pub mod cost;
pub mod cpu;
pub mod cycle;
pub mod gc;
pub mod goroutines;
pub mod pagefault;
pub mod stacks;

use crate::{
    analysis::Target,
    probe::{Options, Probes},
    symbolize::Location,
};

pub use stacks::{Site, Stack, StackNamer};

/// Which parts of a [`Reading`] to read: the live view and the exporters need only some, and
/// each part costs a map read and the symbolization of its new stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    pub alloc: bool,
    pub assist: bool,
    pub page_faults: bool,
    pub cpu: bool,
    pub creations: bool,
}

impl Parts {
    /// Every part (a window's report and profiles).
    pub const ALL: Self = Self {
        alloc: true,
        assist: true,
        page_faults: true,
        cpu: true,
        creations: true,
    };
}

/// One read of the stack-attributed signals of one process: what it counted since attach.
/// A part is `None` when its signal is off (or was not asked for, see [`Parts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub alloc: Option<alloc::Allocations>,
    pub assist: Option<assist::Assists>,
    pub page_faults: Option<pagefault::PageFaults>,
    pub cpu: Option<cpu::CpuSamples>,
    /// Goroutine creation counts and sites (`--goroutine-sites`).
    pub creations: Option<goroutines::Creations>,
}

impl Reading {
    /// Reads the `parts` of `target`'s signals that `options` turned on.
    pub fn read(
        probes: &Probes,
        target: &Target,
        options: &Options,
        parts: Parts,
        namer: &mut StackNamer,
    ) -> Self {
        let pid = target.process.pid;
        Self {
            alloc: parts
                .alloc
                .then(|| alloc::read(probes, target, options.alloc, namer))
                .flatten(),
            assist: parts
                .assist
                .then(|| assist::Assists::read(probes, pid, namer)),
            page_faults: (parts.page_faults && options.page_faults).then(|| {
                pagefault::PageFaults::read(probes, pid, options.page_fault_period, namer)
            }),
            cpu: (parts.cpu && options.cpu_hz > 0)
                .then(|| cpu::CpuSamples::read(probes, pid, options.cpu_hz, namer)),
            creations: (parts.creations && options.goroutines && options.goroutine_sites)
                .then(|| goroutines::Creations::read(probes, pid, namer)),
        }
    }

    /// Every location of every stack read (for the profiles' mappings).
    pub fn locations(&self) -> impl Iterator<Item = &Location> {
        fn of<V>(sites: &[Site<V>]) -> impl Iterator<Item = &Location> {
            sites.iter().flat_map(|s| s.stack.locations.iter())
        }
        let alloc = self.alloc.iter().flat_map(|a| of(&a.sites));
        let assist = self.assist.iter().flat_map(|a| of(&a.by_stack));
        let faults = self.page_faults.iter().flat_map(|p| of(&p.sites));
        let cpu = self.cpu.iter().flat_map(|c| of(&c.sites));
        let creations = self.creations.iter().flat_map(|c| of(&c.sites));
        alloc
            .chain(assist)
            .chain(faults)
            .chain(cpu)
            .chain(creations)
    }
}
