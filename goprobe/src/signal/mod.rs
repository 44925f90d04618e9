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

    /// Adds `later`, a read of what came after this one (the agent's takes), to this reading:
    /// values of equal stacks summed, the other fields `later`'s. At most [`MAX_SUMMED_SITES`]
    /// stacks per signal; the weight of further new stacks goes to one site without a stack.
    pub fn add(&mut self, later: Reading) {
        fn part<T>(mine: &mut Option<T>, later: Option<T>, merge: impl FnOnce(&mut T, T)) {
            match (mine.as_mut(), later) {
                (Some(m), Some(l)) => merge(m, l),
                (None, l) => *mine = l,
                (Some(_), None) => {}
            }
        }
        part(&mut self.alloc, later.alloc, |m, l| {
            let sites = sum_sites(std::mem::take(&mut m.sites), l.sites, |a, b| {
                alloc::AllocCounts {
                    bytes: a.bytes + b.bytes,
                    objects: a.objects + b.objects,
                }
            });
            *m = alloc::Allocations { sites, ..l };
        });
        part(&mut self.assist, later.assist, |m, l| {
            m.by_stack = sum_sites(std::mem::take(&mut m.by_stack), l.by_stack, |a, b| a + b);
        });
        part(&mut self.page_faults, later.page_faults, |m, l| {
            let add =
                |a: pagefault::FaultCounts, b: pagefault::FaultCounts| pagefault::FaultCounts {
                    minor: a.minor + b.minor,
                    major: a.major + b.major,
                    samples: a.samples + b.samples,
                };
            let sites = sum_sites(std::mem::take(&mut m.sites), l.sites, add);
            // The totals are the kernel's since attach: the later read's.
            *m = pagefault::PageFaults {
                sites,
                sampled: add(m.sampled, l.sampled),
                ..l
            };
        });
        part(&mut self.cpu, later.cpu, |m, l| {
            m.sites = sum_sites(std::mem::take(&mut m.sites), l.sites, |a, b| a + b);
        });
        part(&mut self.creations, later.creations, |m, l| {
            m.sites = sum_sites(std::mem::take(&mut m.sites), l.sites, |a, b| a + b);
            m.counts = l.counts.or(m.counts);
        });
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

/// Stacks per signal a summed [`Reading`] keeps ([`Reading::add`]).
pub const MAX_SUMMED_SITES: usize = 1 << 16;

/// `a` and `b` with the values of equal stacks (same addresses and frames) summed by `sum`;
/// past [`MAX_SUMMED_SITES`] stacks, new ones are summed into one site without a stack.
fn sum_sites<V: Copy>(a: Vec<Site<V>>, b: Vec<Site<V>>, sum: impl Fn(V, V) -> V) -> Vec<Site<V>> {
    use std::collections::HashMap;
    let key = |s: &Stack| -> (Vec<u64>, usize) {
        let addrs = s.locations.iter().map(|l| l.address).collect();
        (addrs, s.locations.first().map_or(0, |l| l.frames.len()))
    };
    let mut index: HashMap<(Vec<u64>, usize), usize> = HashMap::with_capacity(a.len());
    let mut out: Vec<Site<V>> = Vec::with_capacity(a.len().max(b.len()));
    for site in a.into_iter().chain(b) {
        let mut k = key(&site.stack);
        if !index.contains_key(&k) && index.len() >= MAX_SUMMED_SITES {
            k = (Vec::new(), 0);
        }
        match index.get(&k) {
            Some(&i) => out[i].value = sum(out[i].value, site.value),
            None => {
                index.insert(k.clone(), out.len());
                let stack = if k.0.is_empty() {
                    Stack::default()
                } else {
                    site.stack
                };
                out.push(Site {
                    stack,
                    value: site.value,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::symbolize::{Frame, FrameKind};

    fn stack(addrs: &[u64]) -> Stack {
        Stack {
            locations: addrs
                .iter()
                .map(|&address| Location {
                    address,
                    frames: Arc::new([Frame {
                        function: "main.f".into(),
                        file: None,
                        line: 0,
                        inlined: false,
                        kind: FrameKind::Go,
                    }]),
                })
                .collect::<Vec<_>>()
                .into(),
        }
    }

    fn cpu(sites: &[(&[u64], u64)]) -> Reading {
        Reading {
            cpu: Some(cpu::CpuSamples {
                hz: 19,
                sites: sites
                    .iter()
                    .map(|(a, v)| Site {
                        stack: stack(a),
                        value: *v,
                    })
                    .collect(),
            }),
            ..Reading::default()
        }
    }

    #[test]
    fn added_readings_sum_equal_stacks() {
        let mut r = cpu(&[(&[1, 2], 3), (&[1, 3], 1)]);
        r.add(cpu(&[(&[1, 2], 4), (&[4], 2)]));
        r.add(Reading::default());
        let c = r.cpu.unwrap();
        let mut got: Vec<(Vec<u64>, u64)> = c
            .sites
            .iter()
            .map(|s| {
                (
                    s.stack.locations.iter().map(|l| l.address).collect(),
                    s.value,
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, [(vec![1, 2], 7), (vec![1, 3], 1), (vec![4], 2)]);
    }

    #[test]
    fn summed_sites_are_bounded_and_keep_every_count() {
        let many: Vec<Site<u64>> = (0..MAX_SUMMED_SITES as u64 + 10)
            .map(|i| Site {
                stack: stack(&[i + 1]),
                value: 1,
            })
            .collect();
        let out = sum_sites(many, vec![], |a, b| a + b);
        // The named ones, and one site without a stack for the rest.
        assert_eq!(out.len(), MAX_SUMMED_SITES + 1);
        assert_eq!(
            out.iter().map(|s| s.value).sum::<u64>(),
            MAX_SUMMED_SITES as u64 + 10
        );
        let rest = out.iter().find(|s| s.stack.locations.is_empty()).unwrap();
        assert_eq!(rest.value, 10);
    }
}
