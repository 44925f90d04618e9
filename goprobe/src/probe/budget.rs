//! The per-second cap on each signal's BPF work (ebpf/goprobe-ebpf/src/budget.rs): the caps
//! user space writes into `BUDGET_CAPS`, and the program runs each cap turned away.

use aya::maps::Array;
use goprobe_common::{budget_signal, counter};

use super::{ProbeError, Probes};

/// The capped signals, by the names `--budget` and the report use, with their
/// [`budget_signal`] index.
pub const SIGNALS: [(&str, u32); budget_signal::LEN as usize] = [
    ("page_faults", budget_signal::PAGE_FAULT),
    ("cpu", budget_signal::CPU),
    ("alloc", budget_signal::ALLOC),
    ("goroutines", budget_signal::GOROUTINE),
    ("assist", budget_signal::ASSIST),
    ("stacks", budget_signal::STACK),
];

/// Program runs allowed per CPU and second (2^30 ns) for each signal; 0 is no cap.
///
/// The defaults bound each signal's BPF work at a few milliseconds per CPU-second (a run with
/// a stack walk costs about 2–5 µs, `goprobe attach --bpf-stats`), well above what the
/// defaults ask for: CPU is sampled at 97 Hz per CPU, page faults once per
/// `--page-fault-period` 32 faults, so their cap bites at 32,000 faults per CPU-second (a fault
/// storm; the totals stay exact). Allocation samples (one per 512 KiB allocated) reach 2000 a
/// second at about 1 GiB/s of allocation on one CPU; the span-refill sampler is never capped
/// (each refill stands for a whole span: a skipped one could not be scaled back). Over a cap the rest of the window's runs are
/// skipped, so in a burst the later stacks are under-represented: `skipped` says by how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Indexed by [`budget_signal`].
    pub caps: [u32; budget_signal::LEN as usize],
}

impl Default for Budget {
    fn default() -> Self {
        let mut caps = [0; budget_signal::LEN as usize];
        caps[budget_signal::PAGE_FAULT as usize] = 1000;
        caps[budget_signal::CPU as usize] = 1000;
        // Allocation samples, goroutine creations and assists are not capped by default: a
        // skipped one is a loss their totals cannot scale back (alloc estimates, created
        // counts, assist time per stack); `--budget` caps them when bounded work matters more.
        caps[budget_signal::STACK as usize] = 1000;
        Self { caps }
    }
}

impl Budget {
    /// Sets the cap of the signal named `name` ([`SIGNALS`]); false if there is none.
    pub fn set(&mut self, name: &str, cap: u32) -> bool {
        match SIGNALS.iter().find(|(n, _)| *n == name) {
            Some(&(_, i)) => {
                self.caps[i as usize] = cap;
                true
            }
            None => false,
        }
    }

    /// Parses `NAME=N` (`--budget`) into this budget.
    pub fn parse_one(&mut self, arg: &str) -> Result<(), String> {
        let names = || SIGNALS.map(|(n, _)| n).join(", ");
        let (name, cap) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected SIGNAL=RUNS_PER_SECOND ({})", names()))?;
        let cap: u32 = cap
            .parse()
            .map_err(|_| format!("{arg:?}: {cap:?} is not a count of runs per second"))?;
        if self.set(name, cap) {
            Ok(())
        } else {
            Err(format!("{arg:?}: no signal {name:?} (have {})", names()))
        }
    }
}

impl Probes {
    /// Writes `budget`'s caps into the kernel (for every attached process: the budget is per
    /// CPU, not per process).
    pub(super) fn set_budget(&mut self, budget: &Budget) -> Result<(), ProbeError> {
        let map_err = |source| ProbeError::Map {
            map: "BUDGET_CAPS",
            source,
        };
        let map = self
            .ebpf
            .map_mut("BUDGET_CAPS")
            .ok_or(ProbeError::MissingMap { map: "BUDGET_CAPS" })?;
        let mut caps: Array<_, u32> = Array::try_from(map).map_err(map_err)?;
        for (i, &cap) in budget.caps.iter().enumerate() {
            caps.set(i as u32, cap, 0).map_err(map_err)?;
        }
        Ok(())
    }

    /// Program runs each signal's cap turned away since the probes were loaded, indexed by
    /// [`budget_signal`].
    pub fn budget_skipped(&self) -> [u64; budget_signal::LEN as usize] {
        std::array::from_fn(|i| self.counter(counter::BUDGET_SKIPPED + i as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_budget_arguments() {
        let mut b = Budget::default();
        b.parse_one("page_faults=5").unwrap();
        assert_eq!(b.caps[budget_signal::PAGE_FAULT as usize], 5);
        b.parse_one("alloc=0").unwrap();
        assert_eq!(b.caps[budget_signal::ALLOC as usize], 0);
        assert!(b.parse_one("faults=5").unwrap_err().contains("page_faults"));
        assert!(b.parse_one("cpu").is_err());
        assert!(b.parse_one("cpu=-1").is_err());
    }
}
