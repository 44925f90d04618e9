//! The `goroutines` part of the report: the goroutine count over the window, and who created
//! goroutines.

use serde::{Deserialize, Serialize};

/// Goroutines in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Goroutines {
    /// The count as `runtime.NumGoroutine()` gives it (system goroutines excluded), over time.
    pub samples: Vec<GoroutineSample>,
    pub max: u64,
    /// Goroutines created and exited in the window.
    pub created: u64,
    pub exited: u64,
    /// By the stack of the `go` statement, most goroutines first.
    pub creation_sites: Vec<CreationSite>,
}

/// One reading of the goroutine count.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GoroutineSample {
    pub t_unix_ns: i64,
    pub count: u64,
}

/// Goroutines created by one stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CreationSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub count: u64,
}
