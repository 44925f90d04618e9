//! Files people open: flamegraphs (SVG), pprof profiles, folded stacks, the GC pause timeline and
//! an index page, all derived from one attach's [`Report`](crate::report::Report) and its stack
//! profiles.
//!
//! A [`Profile`] is one stack-attributed signal (allocations, assist time, page faults, CPU,
//! goroutine creation) with its stacks resolved to locations and frames; every format is
//! written from it, so the SVG, the pprof file and the folded file of a signal always agree.
//! Each format is one [`Output`] ([`render`]) in its own module, listed once in [`OUTPUTS`]
//! ([`registry`]).

pub mod flamegraph;
pub mod folded;
pub mod index;
pub mod json;
pub mod pprof;
pub mod profile;
pub mod registry;
pub mod render;
pub mod timeline;
pub mod views;

use std::path::PathBuf;

pub use crate::symbolize::{Frame, Location};
pub use registry::{Format, OUTPUTS, OutputConfig, write_all};
pub use render::{File, Input, Output};

/// Why outputs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rendering the {name} flamegraph")]
    Flamegraph {
        name: String,
        source: std::io::Error,
    },
}

/// A pprof value type: what a sample value counts, in which unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueType {
    pub kind: String,
    pub unit: String,
}

impl ValueType {
    pub fn new(kind: &str, unit: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            unit: unit.to_owned(),
        }
    }
}

/// One stack (leaf first) and its values, one per [`Profile::sample_types`] entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub locations: Vec<Location>,
    pub values: Vec<i64>,
}

impl Sample {
    /// Frame names, root first, as flamegraphs and folded files stack them.
    pub fn names_root_first(&self) -> impl Iterator<Item = &str> {
        self.locations
            .iter()
            .rev()
            .flat_map(|l| l.frames.iter().rev())
            .map(|f| &*f.function)
    }
}

/// A memory mapping of the profiled process that some location is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    pub start: u64,
    pub limit: u64,
    pub file_offset: u64,
    pub path: String,
    /// The build id as text: GNU build ids in hex, Go build ids as the linker prints them.
    pub build_id: String,
}

/// One stack-attributed signal of one process over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// What the signal and its values are.
    pub spec: profile::Spec,
    pub samples: Vec<Sample>,
    pub mappings: Vec<MappingInfo>,
    pub start_unix_ns: i64,
    pub duration_ns: i64,
}

impl Profile {
    /// The sum of `sample_types[index]` over all samples.
    pub fn total(&self, index: usize) -> i64 {
        self.samples
            .iter()
            .map(|s| s.values.get(index).copied().unwrap_or(0))
            .sum()
    }
}
