//! Turning the runtime's own heap-profile sampler on for the attached window (`--alloc sampled`
//! on a program whose `runtime.MemProfileRate` is 0), and off again on detach.
//!
//! A binary that does not link `runtime.MemProfile` (no runtime/pprof import) starts with
//! `MemProfileRate` 0: the linker sets `runtime.disableMemoryProfiling` and `schedinit` zeroes
//! the rate (src/runtime/proc.go, Go 1.21–1.27; Go 1.19 initializes it to 0 through
//! `defaultMemProfileRate`, mprof.go:587). Writing the runtime's default, 512 KiB, into it makes
//! the allocator call `runtime.profilealloc` about once per 512 KiB again, which goprobe probes:
//! about 1% cost instead of the span-refill sampler's 1.4–2.5× (docs/report-schema.md).
//!
//! NB: no per-P state needs re-arming; `mcache.nextSample` (the bytes left before the next
//! sample) is finite on every release, so the new rate takes effect by itself:
//! - Go 1.19–1.23: `mallocgc` samples when `MemProfileRate > 0` and the allocation reaches
//!   `c.nextSample` (1.19 malloc.go:1109–1115, 1.21:1207–1213, 1.22:1259–1268,
//!   1.23:1245–1254). `nextSample()` with rate 0 is `fastexprand(0)`, which returns 0
//!   (1.19 malloc.go:1274, 1.21:1400, 1.22:1462, 1.23:1495), and `mcache0`, made in
//!   `mallocinit` before `schedinit` zeroes the rate (1.21 malloc.go:436, 1.23:452), holds a
//!   draw of mean 512 KiB: the first allocations after the write call `profilealloc`, which
//!   draws the next distance at the new rate (1.19 malloc.go:1237, 1.21:1363, 1.23:1458).
//! - Go 1.24–1.27: `nextSample()` with rate 0 is `maxInt64` (1.24 malloc.go:1825, 1.25:1847,
//!   1.26:2256, 1.27:2240), but every allocation path tests `c.nextSample < 0 ||
//!   MemProfileRate != c.memProfRate` (1.24 malloc.go:1224, 1.25:1236, 1.26:1328, 1.27:1334,
//!   malloc_generated.go) and `profilealloc` stores the rate it drew with (1.24 malloc.go:1812,
//!   1.25:1833, 1.26:2243, 1.27:2227): a changed rate triggers `profilealloc` on each P.
//!
//! Either way each P's first allocation after the write (and, from Go 1.24, after the restore) is
//! sampled at once, whatever its size: at most GOMAXPROCS samples, each weighted as about 512 KiB.

use super::Memory;
use crate::analysis::{Target, TargetError, binary::vars::Var};

/// The rate goprobe writes: the runtime's default (src/runtime/mprof.go `MemProfileRate`).
pub const DEFAULT_RATE: u64 = 512 * 1024;

/// Why goprobe did not turn the runtime's sampler on.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    #[error("runtime.MemProfileRate was not located")]
    NotLocated,
    #[error(
        "the address of runtime.MemProfileRate ({addr:#x}) comes neither from .symtab nor from \
         two agreeing recipes"
    )]
    Unproven { addr: u64 },
    #[error("runtime.MemProfileRate is {value}, not 0")]
    NotZero { value: i64 },
    #[error("runtime.MemProfileRate reads {value} right after goprobe wrote {rate}")]
    NotTaken { value: i64, rate: u64 },
    #[error("cannot write runtime.MemProfileRate")]
    Memory(#[source] TargetError),
}

/// `runtime.MemProfileRate` set by goprobe ([`DEFAULT_RATE`] unless asked otherwise); dropping it
/// restores 0, if the
/// value is still the one goprobe wrote (the program may have set its own since). A target that
/// exited needs nothing.
#[derive(Debug)]
pub struct RateOverride {
    pid: u32,
    addr: u64,
    /// The rate goprobe wrote.
    rate: u64,
    mem: Memory,
}

impl RateOverride {
    /// Writes `rate` (bytes per sample) into `target`'s `runtime.MemProfileRate`, only when its
    /// address
    /// is certain (from `.symtab`, or two recipes in different functions agreed on it) and it
    /// reads exactly 0.
    pub fn enable(target: &Target, rate: u64) -> Result<Self, RateError> {
        let addr = target.vars.mem_profile_rate.ok_or(RateError::NotLocated)?;
        if !address_is_certain(target) {
            return Err(RateError::Unproven { addr });
        }
        let pid = target.process.pid;
        let mem = target.process.open_memory().map_err(RateError::Memory)?;
        // NB: `MemProfileRate int` (src/runtime/mprof.go, Go 1.19–1.27): 8 bytes, 8-aligned.
        let value = mem.read_u64(addr).map_err(RateError::Memory)?;
        if value != 0 {
            return Err(RateError::NotZero {
                value: value as i64,
            });
        }
        mem.write_u64(addr, rate).map_err(RateError::Memory)?;
        let written = rate;
        let rate = Self {
            pid,
            addr,
            rate: written,
            mem,
        };
        match rate.mem.read_u64(addr) {
            Ok(v) if v == written => {}
            // The program stored its own rate in between: it is the program's now; nothing to
            // restore (`rate` restores only the rate it wrote).
            Ok(value) => {
                return Err(RateError::NotTaken {
                    value: value as i64,
                    rate: written,
                });
            }
            Err(e) => return Err(RateError::Memory(e)),
        }
        tracing::info!(
            pid,
            rate = written,
            "runtime.MemProfileRate was 0: turned the runtime's heap-profile sampler on for the \
             window"
        );
        Ok(rate)
    }

    /// The pid whose rate this is.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The rate goprobe wrote (bytes per sample).
    pub fn rate(&self) -> u64 {
        self.rate
    }
}

impl Drop for RateOverride {
    fn drop(&mut self) {
        let pid = self.pid;
        // NB: a read-compare-write, not atomic: a program storing its own rate in the
        // microseconds between the two would see it replaced by 0.
        match self.mem.read_u64(self.addr) {
            Ok(v) if v == self.rate => match self.mem.write_u64(self.addr, 0) {
                Ok(()) => tracing::info!(pid, "runtime.MemProfileRate restored to 0"),
                Err(e) => tracing::warn!(
                    pid,
                    "cannot restore runtime.MemProfileRate to 0 ({e}); the runtime keeps \
                     sampling allocations every 512 KiB"
                ),
            },
            Ok(value) => tracing::info!(
                pid,
                value = value as i64,
                "runtime.MemProfileRate was changed by the program while attached; left as is"
            ),
            Err(e) => tracing::debug!(pid, "runtime.MemProfileRate not restored: {e}"),
        }
    }
}

/// Whether `target.vars.mem_profile_rate` came from `.symtab` or from at least two agreeing
/// recipes. NB: [`crate::analysis::runtime_vars`] returns no evidence when it read `.symtab`, and
/// [`crate::analysis::binary::vars::locate`] records the recipes behind every variable it returns.
fn address_is_certain(target: &Target) -> bool {
    let symbol = Var::MemProfileRate.symbol();
    match target.vars.evidence.iter().find(|e| e.symbol == symbol) {
        Some(e) => e.recipes.len() >= 2,
        None => target.vars.evidence.is_empty() && !target.stripped,
    }
}
