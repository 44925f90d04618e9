//! The perf-event parts of the report: page faults and on-CPU samples, by stack.

use serde::{Deserialize, Serialize};

/// Page faults of the target's threads in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PageFaults {
    pub minor: u64,
    pub major: u64,
    /// By faulting stack, most faults first.
    pub sites: Vec<FaultSite>,
}

/// Page faults of one stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaultSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub minor: u64,
    pub major: u64,
}

/// On-CPU samples of the target's threads in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cpu {
    /// Sampling frequency per CPU.
    pub hz: u32,
    pub samples: u64,
    /// By sampled stack, most samples first.
    pub sites: Vec<CpuSite>,
}

/// Samples of one stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CpuSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub samples: u64,
}
