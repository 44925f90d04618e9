//! goprobe: an eBPF profiler that watches the Go runtime of running programs from outside.
//!
//! Data flows one way: [`analysis`] (what the process and its binary are, where probes go) →
//! [`probe`] (BPF programs, attached; their maps) → [`signal`] (raw rows → typed records, read
//! once; [`symbolize`] beside it) → [`report`], [`live`], [`output`] and [`export`], which
//! consume records only. [`session`] is the engine that runs it for one process, in one watch
//! loop; `goprobe attach` and `goprobe doctor` observe one window with it, [`daemon`] runs one
//! session per process of the host. [`text`] is the one place numbers, durations, dates and
//! stacks become text for people. `cargo xtask structure` checks that arrows point down.
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
