//! goprobe: an eBPF profiler that watches the Go runtime of running programs from outside.
//!
//! Data flows one way: [`target`] (what the process is, where probes go) → [`probe`] (BPF
//! programs, attached) → [`signal`] (raw events → domain records) → [`report`] (outputs) and
//! [`export`] (metrics, while attached). [`text`] is the one place numbers, durations, dates and
//! stacks become text for people.
//! The `goprobe` binary's command line drives it; see ARCHITECTURE.md for one walk end to end.

pub mod analysis;
pub mod clock;
pub mod daemon;
pub mod discover;
pub mod doctor;
pub mod export;
pub mod live;
pub mod output;
pub mod privileges;
pub mod probe;
pub mod report;
pub mod session;
pub mod signal;
pub mod symbolize;
pub mod text;
