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

impl Goroutines {
    /// The report section from the count `samples`, the probes' created/exited `counts` and
    /// the named creation `sites` (`a` = goroutines created; see
    /// [`goprobe_common::site_kind::GOROUTINE_CREATE`]).
    pub fn build(
        samples: &[crate::signal::goroutines::Sample],
        counts: Option<goprobe_common::GoroutineCounts>,
        sites: Vec<super::sites::NamedSite>,
    ) -> Self {
        let samples: Vec<GoroutineSample> = samples
            .iter()
            .map(|s| GoroutineSample {
                t_unix_ns: s.t_unix_ns,
                count: s.count,
            })
            .collect();
        let counts = counts.unwrap_or_default();
        Self {
            max: samples.iter().map(|s| s.count).max().unwrap_or(0),
            samples,
            created: counts.created,
            exited: counts.exited,
            creation_sites: sites
                .into_iter()
                .map(|s| CreationSite {
                    stack: strip_runtime_leaf(s.stack),
                    count: s.a,
                })
                .collect(),
        }
    }
}

/// NB: creation stacks are taken at the entry of `runtime.newproc` / `runtime.newcoro`
/// (src/runtime/proc.go, coro.go): that frame is the same for every site and not the user's
/// code, so it is dropped; the leaf is then the function with the `go` statement.
fn strip_runtime_leaf(mut stack: Vec<String>) -> Vec<String> {
    if stack
        .first()
        .is_some_and(|f| f == "runtime.newproc" || f == "runtime.newcoro")
    {
        stack.remove(0);
    }
    stack
}
