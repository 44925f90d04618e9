//! Text for people, shared by every place that prints it: byte quantities, durations,
//! percentiles, call chains, error chains, HTML escaping and UTC dates — one definition of each, so the summary,
//! the live view, doctor and the files written agree (one MiB is 1 << 20 bytes everywhere).
//!
//! Leaf modules: nothing here imports from the rest of the crate.

pub mod bytes;
pub mod chain;
pub mod duration;
pub mod error;
pub mod html;
pub mod percentile;
pub mod utc;
