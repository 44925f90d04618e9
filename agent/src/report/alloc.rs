//! The `alloc` part of the report: bytes and objects allocated in the window, by stack.

use serde::{Deserialize, Serialize};

/// Allocations in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Alloc {
    /// `sampled` or `exact` (see `goprobe attach --help`).
    pub mode: String,
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
