//! The `alloc` part of the report: bytes and objects allocated in the window, by stack.

use serde::{Deserialize, Serialize};

/// Allocations in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Alloc {
    /// `sampled` or `exact` (see `goprobe attach --help`).
    pub mode: String,
    /// How the counts were taken: `exact`, `profilealloc` (the runtime's heap-profile sampler,
    /// weighted as pprof does) or `span-refill` (the allocator's slow paths, see
    /// docs/report-schema.md); `null` when allocations could not be watched.
    #[serde(default)]
    pub sampler: Option<String>,
    /// `runtime.MemProfileRate` (bytes) the profilealloc sampler ran with; `null` otherwise.
    #[serde(default)]
    pub sample_rate: Option<u64>,
    /// Why allocations could not be watched in this target; `null` when they were.
    #[serde(default)]
    pub unavailable: Option<String>,
    pub bytes: u64,
    pub objects: u64,
    /// By allocating stack, most bytes first.
    pub sites: Vec<AllocSite>,
}

/// Allocations of one stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AllocSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub bytes: u64,
    pub objects: u64,
}
