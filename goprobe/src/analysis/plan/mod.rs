//! Probe plans: where each probe of a binary goes (file offsets of entries and RET sites) and
//! which functions each signal needs.

pub mod alloc;
pub mod exits;
pub mod goroutines;

use super::binary::disasm::FunctionProbes;

/// Where the probes of one function go.
#[derive(Clone, Debug)]
pub struct FunctionPlan {
    pub symbol: &'static str,
    /// File offset of the function's entry.
    pub file_offset: u64,
    pub sites: FunctionProbes,
    /// Run-time address of the function's entry (load bias applied).
    pub addr: u64,
}
