//! `goprobe agent`, the per-host daemon and sidecar: the configuration file, process selection
//! and metadata, the fleet of sessions (one [`crate::session::Session`] per profiled process)
//! and the event loop that attaches, routes and detaches them ([`run::run`]).

pub mod check;
pub mod config;
pub mod fleet;
pub mod meta;
pub mod os;
pub mod pprof;
pub mod run;
pub mod select;
pub mod snapshot;

pub use config::Config;
pub use select::Candidate;
