//! Signals: raw events from the probes turned into domain records, one module per signal.

pub mod alloc;
pub mod cycle;
pub mod gc;
pub mod goroutines;
pub mod stacks;
