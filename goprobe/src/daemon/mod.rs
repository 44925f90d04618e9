//! `goprobe agent`'s library side: the configuration file, process selection and metadata.
//! The event loop that runs the targets is in the binary (goprobe/src/cli/agent/).

pub mod config;
pub mod meta;
pub mod select;

pub use config::Config;
pub use select::Candidate;
