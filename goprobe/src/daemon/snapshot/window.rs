//! A snapshot's window: what the stack signals counted in it (the difference of two readings
//! since attach), when a cycle ended, the process' CPU time, and the top sites kept.

use std::collections::HashMap;

use super::TOP_SITES;
use crate::{
    report::Report,
    signal::{
        Reading, Site,
        alloc::AllocCounts,
        gc::{Cycle, Stw},
        pagefault::FaultCounts,
    },
};

/// When cycle `c` ended (`work.tEnd`, else the end of its last stop-the-world).
pub(super) fn cycle_end(c: &Cycle) -> i64 {
    c.details
        .end_mono_ns
        .unwrap_or_else(|| c.stw.last().map_or(0, stw_end))
}

/// When stop-the-world `s` ended.
pub(super) fn stw_end(s: &Stw) -> i64 {
    s.start_mono_ns
        .saturating_add(i64::try_from(s.duration_ns).unwrap_or(0))
}

/// Keeps the first [`TOP_SITES`] sites of each signal (sorted heaviest first by the report);
/// the totals stay those of every site.
pub(super) fn top_sites(r: &mut Report) {
    r.gc.assist.sites.truncate(TOP_SITES);
    if let Some(a) = &mut r.alloc {
        a.sites.truncate(TOP_SITES);
    }
    if let Some(c) = &mut r.cpu {
        c.sites.truncate(TOP_SITES);
    }
    if let Some(p) = &mut r.page_faults {
        p.sites.truncate(TOP_SITES);
    }
    if let Some(g) = &mut r.goroutines {
        g.creation_sites.truncate(TOP_SITES);
    }
}

/// Counters that can be added and subtracted (the values of a signal's sites).
pub(super) trait Counts: Copy + Default {
    fn add(self, o: Self) -> Self;
    /// `self − o`, never below zero (a stack evicted and counted again since the baseline).
    fn minus(self, o: Self) -> Self;
    fn is_zero(&self) -> bool;
}

impl Counts for u64 {
    fn add(self, o: Self) -> Self {
        self.saturating_add(o)
    }
    fn minus(self, o: Self) -> Self {
        self.saturating_sub(o)
    }
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl Counts for AllocCounts {
    fn add(self, o: Self) -> Self {
        Self {
            bytes: self.bytes.add(o.bytes),
            objects: self.objects.add(o.objects),
        }
    }
    fn minus(self, o: Self) -> Self {
        Self {
            bytes: self.bytes.minus(o.bytes),
            objects: self.objects.minus(o.objects),
        }
    }
    fn is_zero(&self) -> bool {
        self.bytes == 0 && self.objects == 0
    }
}

impl Counts for FaultCounts {
    fn add(self, o: Self) -> Self {
        Self {
            minor: self.minor.add(o.minor),
            major: self.major.add(o.major),
            samples: self.samples.add(o.samples),
        }
    }
    fn minus(self, o: Self) -> Self {
        Self {
            minor: self.minor.minus(o.minor),
            major: self.major.minus(o.major),
            samples: self.samples.minus(o.samples),
        }
    }
    fn is_zero(&self) -> bool {
        self.minor == 0 && self.major == 0
    }
}

/// What `now`'s sites counted since `base` (both since attach), by the frames they name: the
/// report merges sites that name the same frames, and so does this.
pub(super) fn minus<V: Counts>(now: &[Site<V>], base: &[Site<V>]) -> Vec<Site<V>> {
    let mut before: HashMap<Vec<String>, V> = HashMap::new();
    for s in base {
        let e = before.entry(s.stack.names()).or_default();
        *e = e.add(s.value);
    }
    let mut out: Vec<Site<V>> = Vec::new();
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    for s in now {
        let names = s.stack.names();
        match index.get(&names) {
            Some(&i) => out[i].value = out[i].value.add(s.value),
            None => {
                index.insert(names, out.len());
                out.push(s.clone());
            }
        }
    }
    for (names, &i) in &index {
        if let Some(b) = before.get(names) {
            out[i].value = out[i].value.minus(*b);
        }
    }
    out.retain(|s| !s.value.is_zero());
    out
}

/// The reading of what was counted between `base` and `now` (both read since attach). Mark
/// assist time per cycle is kept whole: the report takes the window's cycles from it.
pub(super) fn since(now: &Reading, base: &Reading) -> Reading {
    Reading {
        alloc: now.alloc.as_ref().map(|a| {
            let mut a = a.clone();
            let b = base.alloc.as_ref().map_or(&[][..], |b| &b.sites);
            a.sites = minus(&a.sites, b);
            a
        }),
        assist: now.assist.as_ref().map(|a| {
            let mut a = a.clone();
            let b = base.assist.as_ref().map_or(&[][..], |b| &b.by_stack);
            a.by_stack = minus(&a.by_stack, b);
            a
        }),
        page_faults: now.page_faults.as_ref().map(|p| {
            let mut p = p.clone();
            let b = base.page_faults.as_ref().map_or(&[][..], |b| &b.sites);
            p.sites = minus(&p.sites, b);
            p
        }),
        cpu: now.cpu.as_ref().map(|c| {
            let mut c = c.clone();
            let b = base.cpu.as_ref().map_or(&[][..], |b| &b.sites);
            c.sites = minus(&c.sites, b);
            c
        }),
        creations: None,
    }
}

/// CPU time (user + system) process `pid` used so far, ns; `None` once it is gone.
pub(super) fn cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 14 and 15 (utime, stime), counted after the parenthesised command name.
    let mut rest = stat[stat.rfind(')')? + 2..].split_whitespace();
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    // SAFETY: plain sysconf query.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&h| h > 0)?;
    Some((utime + stime) * 1_000_000_000 / hz)
}
