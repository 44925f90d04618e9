//! The goroutine count over time, read from the target's memory the way
//! `runtime.NumGoroutine()` computes it: no probe, nothing runs in the target.
//!
//! NB: `gcount()` (src/runtime/proc.go, Go 1.19–1.27; `gcount(includeSys bool)` since 1.26,
//! `NumGoroutine` passing `false`) is `allglen − sched.gFree counts − sched.ngsys −
//! Σ allp[i].gFree count`, clamped to ≥ 1. Every goroutine ever allocated stays in `allgs`;
//! dead ones wait on the free lists, and system goroutines are counted in `ngsys`. The runtime
//! reads these without a lock, and so does this sampler (through `/proc/<pid>/mem`).

use std::{fs::File, io, os::unix::fs::FileExt};

use goprobe_common::{GoroutineCounts, site_kind};

use super::stacks::{Site, StackNamer};
use crate::{
    analysis::{Target, layout::sched::SchedLayout},
    clock::Clock,
    probe::Probes,
};

/// NB: `_MaxGomaxprocs` is 1<<10 (src/runtime/runtime2.go, Go 1.19–1.27); anything larger read
/// as `len(allp)` is a torn or wrong read, not a P count.
const MAX_PROCS: u64 = 1 << 10;

/// Why the goroutine count cannot be sampled.
#[derive(Debug, thiserror::Error)]
pub enum GoroutineError {
    /// A runtime variable gcount() reads could not be located (stripped binary whose recipes
    /// did not agree).
    #[error("pid {pid}: {var} could not be located; the goroutine count is unavailable")]
    MissingVar { pid: u32, var: &'static str },
    /// The struct offsets for this Go release are not verified and the binary has no DWARF.
    #[error(
        "pid {pid}: goprobe has no verified runtime.schedt/runtime.p offsets for {version} \
         without DWARF; the goroutine count is unavailable (profile an unstripped build)"
    )]
    Unverified { pid: u32, version: String },
    /// The first reading is implausible: the offsets do not fit this binary (a GOEXPERIMENT or
    /// -race build without DWARF).
    #[error(
        "pid {pid}: the goroutine count's inputs read as implausible ({what}); the runtime \
         layout differs from what goprobe knows for {version}: the count is unavailable"
    )]
    Implausible {
        pid: u32,
        version: String,
        what: String,
    },
    /// `/proc/<pid>/mem` could not be opened.
    #[error("pid {pid}: opening /proc/{pid}/mem")]
    Mem {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// One reading of the goroutine count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Unix time of the reading (the middle of its reads).
    pub t_unix_ns: i64,
    pub count: u64,
}

/// Reads `runtime.NumGoroutine()`'s value from a live process, periodically.
#[derive(Debug)]
pub struct GoroutineSampler {
    mem: File,
    /// Run-time addresses of `runtime.allglen`, `runtime.sched` and `runtime.allp`.
    allglen: u64,
    sched: u64,
    allp: u64,
    layout: SchedLayout,
    samples: Vec<Sample>,
    /// Readings per kept sample (doubles each time [`MAX_SAMPLES`] is reached), the largest
    /// of the readings not yet kept, and how many there are.
    stride: u32,
    pending: Option<Sample>,
    pending_n: u32,
    /// The last reading.
    latest: Option<Sample>,
    stopped: bool,
}

/// Samples kept: beyond, neighbours are merged (the larger count stays, so the maximum is
/// exact) and later readings kept at half the rate; a long `goprobe attach` (10 readings a
/// second, 36,000 an hour) stays within this.
pub const MAX_SAMPLES: usize = 1 << 14;

/// `a` or `b`, whichever counted more goroutines (the earlier on a tie).
fn larger(a: Sample, b: Sample) -> Sample {
    if b.count > a.count { b } else { a }
}

impl GoroutineSampler {
    /// A sampler for `target`; fails when a variable is missing or its memory is unreadable.
    pub fn new(target: &Target) -> Result<Self, GoroutineError> {
        let pid = target.process.pid;
        let v = &target.vars;
        let need = |addr: Option<u64>, var| addr.ok_or(GoroutineError::MissingVar { pid, var });
        let allglen = need(v.allglen, "runtime.allglen")?;
        let sched = need(v.sched, "runtime.sched")?;
        let allp = need(v.allp, "runtime.allp")?;
        let version = target.go_version.raw.clone();
        if !target.layout.sched.verified {
            return Err(GoroutineError::Unverified { pid, version });
        }
        let mem = File::open(format!("/proc/{pid}/mem"))
            .map_err(|source| GoroutineError::Mem { pid, source })?;
        let sampler = Self {
            mem,
            allglen,
            sched,
            allp,
            layout: target.layout.sched,
            samples: Vec::new(),
            stride: 1,
            pending: None,
            pending_n: 0,
            latest: None,
            stopped: false,
        };
        let gomaxprocs = v
            .gomaxprocs
            .and_then(|a| sampler.i32_at(a).ok())
            .and_then(|n| u64::try_from(n).ok());
        sampler
            .check(gomaxprocs)
            .map_err(|what| GoroutineError::Implausible { pid, version, what })?;
        Ok(sampler)
    }

    /// A live check of the layout: every count subtracted lies in `0..=allglen`, and `allp`
    /// has one P per `gomaxprocs` when that is known (src/runtime/proc.go procresize keeps
    /// `len(allp) == gomaxprocs` outside a resize, Go 1.19–1.27).
    fn check(&self, gomaxprocs: Option<u64>) -> Result<(), String> {
        let l = &self.layout;
        let read = |r: io::Result<i32>| r.map_err(|e| e.to_string());
        let allglen = self.u64_at(self.allglen).map_err(|e| e.to_string())?;
        let mut counts = vec![(
            "sched.ngsys",
            read(self.i32_at(self.sched + u64::from(l.sched_ngsys)))?,
        )];
        for off in l.sched_counts() {
            counts.push((
                "sched.gFree",
                read(self.i32_at(self.sched + u64::from(off)))?,
            ));
        }
        let len = self.u64_at(self.allp + 8).map_err(|e| e.to_string())?;
        if len == 0 || gomaxprocs.is_some_and(|g| g != len) {
            return Err(format!("len(allp) {len}, gomaxprocs {gomaxprocs:?}"));
        }
        let array = self.u64_at(self.allp).map_err(|e| e.to_string())?;
        let first = self.u64_at(array).map_err(|e| e.to_string())?;
        counts.push((
            "allp[0].gFree",
            read(self.i32_at(first + u64::from(l.p_count())))?,
        ));
        for (what, n) in counts {
            if !(0..=allglen as i64).contains(&i64::from(n)) {
                return Err(format!("{what} = {n} with allglen {allglen}"));
            }
        }
        Ok(())
    }

    /// The count as `runtime.NumGoroutine()` would return it now.
    pub fn read_count(&self) -> io::Result<u64> {
        let l = &self.layout;
        let allglen = self.u64_at(self.allglen)? as i64;
        let mut n = allglen - i64::from(self.i32_at(self.sched + u64::from(l.sched_ngsys))?);
        for off in l.sched_counts() {
            n -= i64::from(self.i32_at(self.sched + u64::from(off))?);
        }
        let array = self.u64_at(self.allp)?;
        let len = self.u64_at(self.allp + 8)?;
        if len > MAX_PROCS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("len(runtime.allp) = {len}"),
            ));
        }
        let mut ptrs = vec![0u8; len as usize * 8];
        self.mem.read_exact_at(&mut ptrs, array)?;
        for p in ptrs.chunks_exact(8) {
            let p = u64::from_le_bytes(p.try_into().unwrap_or_default());
            if p != 0 {
                n -= i64::from(self.i32_at(p + u64::from(l.p_count()))?);
            }
        }
        // NB: gcount() clamps to 1: "at least the current goroutine is running".
        Ok(n.max(1) as u64)
    }

    /// Takes one sample; once a read fails (the target is exiting) sampling stops for good.
    /// Returns whether sampling goes on.
    pub fn sample(&mut self, clock: &Clock) -> bool {
        if self.stopped {
            return false;
        }
        let before = clock.now_unix();
        match self.read_count() {
            Ok(count) => {
                let after = clock.now_unix();
                self.keep(Sample {
                    t_unix_ns: before + (after - before) / 2,
                    count,
                });
            }
            Err(e) => {
                tracing::debug!("goroutine count unreadable, sampling ends: {e}");
                self.stopped = true;
            }
        }
        !self.stopped
    }

    /// Whether sampling goes on (no read has failed yet).
    pub fn active(&self) -> bool {
        !self.stopped
    }

    /// Every sample kept, oldest first (at most [`MAX_SAMPLES`], see there).
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The last reading.
    pub fn latest(&self) -> Option<Sample> {
        self.latest
    }

    fn keep(&mut self, s: Sample) {
        self.latest = Some(s);
        let merged = self.pending.map_or(s, |p| larger(p, s));
        self.pending_n += 1;
        if self.pending_n < self.stride {
            self.pending = Some(merged);
            return;
        }
        self.pending = None;
        self.pending_n = 0;
        self.samples.push(merged);
        if self.samples.len() >= MAX_SAMPLES {
            self.samples = self
                .samples
                .chunks(2)
                .map(|c| c.iter().copied().reduce(larger).unwrap_or(c[0]))
                .collect();
            self.stride *= 2;
        }
    }

    fn u64_at(&self, addr: u64) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.mem.read_exact_at(&mut b, addr)?;
        Ok(u64::from_le_bytes(b))
    }

    fn i32_at(&self, addr: u64) -> io::Result<i32> {
        let mut b = [0u8; 4];
        self.mem.read_exact_at(&mut b, addr)?;
        Ok(i32::from_le_bytes(b))
    }
}

/// Goroutines created and exited since attach, and by whom (`--goroutine-sites`: entry probes
/// on `runtime.newproc` and goroutine exit, ebpf/goprobe-ebpf/src/goroutines.rs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Creations {
    /// Created and exited, summed over CPUs; `None` when the probes are not attached.
    pub counts: Option<GoroutineCounts>,
    /// Goroutines created per stack of the `go` statement, the runtime's entry frame trimmed
    /// ([`runtime_leaf_frames`]).
    pub sites: Vec<Site<u64>>,
}

impl Creations {
    /// The creation counts and sites of process `pid`.
    pub fn read(probes: &Probes, pid: u32, namer: &mut StackNamer) -> Self {
        let raw = probes.sites(pid, site_kind::GOROUTINE_CREATE);
        Self {
            counts: probes.goroutine_counts(pid),
            sites: namer
                .sites(probes, raw, |c| c.a)
                .into_iter()
                .map(|s| Site {
                    stack: s.stack.trim_leaf(runtime_leaf_frames),
                    value: s.value,
                })
                .collect(),
        }
    }
}

/// How many leaf frames of a creation stack (names leaf first) are the runtime's entry point.
///
/// NB: creation stacks are taken at the entry of `runtime.newproc` / `runtime.newcoro`
/// (src/runtime/proc.go, coro.go): that frame is the same for every site and not the user's
/// code, so it is dropped; the leaf is then the function with the `go` statement.
pub fn runtime_leaf_frames(names: &[&str]) -> usize {
    usize::from(
        names
            .first()
            .is_some_and(|f| *f == "runtime.newproc" || *f == "runtime.newcoro"),
    )
}

#[cfg(test)]
mod tests {
    use super::runtime_leaf_frames;

    #[test]
    fn only_the_runtime_entry_frame_is_dropped() {
        assert_eq!(runtime_leaf_frames(&["runtime.newproc", "main.leak"]), 1);
        assert_eq!(runtime_leaf_frames(&["runtime.newcoro", "iter.Pull"]), 1);
        assert_eq!(runtime_leaf_frames(&["runtime.gcBgMarkStartWorkers"]), 0);
        assert_eq!(runtime_leaf_frames(&[]), 0);
    }
}
