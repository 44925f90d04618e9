//! Where the goroutine probes go: the functions that create goroutines for a `go` statement or
//! a coroutine, and the one that tears an exiting goroutine down.

use super::FunctionPlan;

/// NB: `runtime.newproc` (src/runtime/proc.go, Go 1.19–1.27) runs every `go` statement on the
/// creating goroutine; `runtime.newcoro` (src/runtime/coro.go, Go 1.23+, behind `iter.Pull`)
/// creates coroutine goroutines. Both call `newproc1` on g0, whose other callers
/// (`debugCallWrap`, a debugger's injected calls; `synctest.Run`'s bubble root, Go 1.25+) are
/// not counted.
const NEWPROC: &str = "runtime.newproc";
const NEWCORO: &str = "runtime.newcoro";
/// NB: `runtime.gdestroy` (src/runtime/proc.go, Go 1.22+) tears down every exiting goroutine
/// (called by `goexit0` and, 1.23+, `coroexit`); before 1.22 `goexit0` did it itself.
const GDESTROY: &str = "runtime.gdestroy";
const GOEXIT0: &str = "runtime.goexit0";

/// The goroutine probes of one target.
#[derive(Clone, Debug)]
pub struct GoroutinePlans {
    /// `runtime.newproc`, and `runtime.newcoro` where the binary has it.
    pub create: Vec<FunctionPlan>,
    /// `runtime.gdestroy`, else `runtime.goexit0`.
    pub exit: FunctionPlan,
}

/// The goroutine probes, from `plan` (a function's probe plan, `None` if it cannot be probed);
/// `None` without `newproc` or an exit function.
pub fn plans(plan: &dyn Fn(&'static str) -> Option<FunctionPlan>) -> Option<GoroutinePlans> {
    let newproc = plan(NEWPROC)?;
    let exit = plan(GDESTROY).or_else(|| plan(GOEXIT0))?;
    let mut create = vec![newproc];
    create.extend(plan(NEWCORO));
    Some(GoroutinePlans { create, exit })
}
