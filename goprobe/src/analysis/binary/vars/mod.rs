//! Finding the Go runtime's variables (`runtime.work`, `runtime.memstats`, …) without `.symtab`,
//! by decoding the machine code of runtime functions that use them (linux/amd64).
//!
//! Stripped binaries (`-ldflags=-s`, `strip`) keep their functions in the gopclntab but lose
//! every data symbol. Runtime functions address package variables with RIP-relative operands,
//! so the operands of known instructions in known functions give the variables' link-time
//! addresses ([`recipes`] says which, per Go release, citing the runtime source lines). A
//! variable is only reported when at least two recipes in different functions agree on one
//! address; anything else is an error, never a guess.

pub mod decode;
pub mod recipes;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
};

use decode::{InvalidCode, RipUse};
use recipes::Recipe;
pub use recipes::Var;

use super::version::GoVersion;
use crate::analysis::layout::RuntimeLayout;

/// In how many distinct functions (by entry address) recipes must run and agree for a variable
/// to be accepted.
const MIN_RECIPES: usize = 2;

/// One function's machine code at its link-time address.
#[derive(Clone, Copy, Debug)]
pub struct FunctionCode<'a> {
    /// Link-time (unbiased) address of the function's entry.
    pub addr: u64,
    /// The function's bytes, from its entry to its end.
    pub code: &'a [u8],
}

/// Link-time (unbiased) addresses of runtime variables. Add the PIE load bias to read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeVars {
    /// `runtime.work` (`runtime.workType`, src/runtime/mgc.go).
    pub work: u64,
    /// `runtime.memstats` (`runtime.mstats`, src/runtime/mstats.go).
    pub memstats: u64,
    /// `runtime.allglen` (uintptr, src/runtime/proc.go): goroutines ever allocated.
    pub allglen: Option<u64>,
    /// `runtime.sched` (`runtime.schedt`, src/runtime/runtime2.go).
    pub sched: Option<u64>,
    /// `runtime.gcController` (`runtime.gcControllerState`, src/runtime/mgcpacer.go).
    pub gc_controller: Option<u64>,
    /// `runtime.MemProfileRate` (int, src/runtime/mprof.go).
    pub mem_profile_rate: Option<u64>,
    /// `runtime.gomaxprocs` (int32, src/runtime/runtime2.go).
    pub gomaxprocs: Option<u64>,
    /// `runtime.ncpu` (int32; `runtime.numCPUStartup` since Go 1.25).
    pub ncpu: Option<u64>,
    /// `runtime.allp` (`[]*p`, src/runtime/runtime2.go): every P.
    pub allp: Option<u64>,
    /// Which recipes agreed on each variable found.
    pub evidence: Vec<Evidence>,
}

/// The recipes that located one variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The variable's Go symbol name.
    pub symbol: &'static str,
    /// Its link-time address.
    pub address: u64,
    /// Names of the recipes that ran and agreed.
    pub recipes: Vec<&'static str>,
}

impl RuntimeVars {
    /// The same variables with `bias` (the PIE load bias) added: run-time addresses.
    pub fn biased(&self, bias: u64) -> Self {
        let b = |a: Option<u64>| a.map(|a| a.wrapping_add(bias));
        Self {
            work: self.work.wrapping_add(bias),
            memstats: self.memstats.wrapping_add(bias),
            allglen: b(self.allglen),
            sched: b(self.sched),
            gc_controller: b(self.gc_controller),
            mem_profile_rate: b(self.mem_profile_rate),
            gomaxprocs: b(self.gomaxprocs),
            ncpu: b(self.ncpu),
            allp: b(self.allp),
            evidence: self.evidence.clone(),
        }
    }
}

/// Candidate addresses per recipe, for error messages.
#[derive(Debug, PartialEq, Eq)]
pub struct Candidates(pub Vec<(&'static str, Vec<u64>)>);

impl fmt::Display for Candidates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (recipe, addrs)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{recipe}: [")?;
            for (j, a) in addrs.iter().enumerate() {
                write!(f, "{}{a:#x}", if j > 0 { ", " } else { "" })?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// Why a runtime variable could not be located.
#[derive(Debug, thiserror::Error)]
pub enum VarsError {
    /// The Go release is not one whose runtime sources the recipes were checked against.
    #[error(
        "no recipe locates {symbol} in {version} binaries (checked: Go 1.19 and 1.21 to 1.27); \
         profile an unstripped build"
    )]
    Unsupported {
        symbol: &'static str,
        version: String,
    },
    /// Fewer than two distinct functions with recipes exist in the binary.
    #[error(
        "cannot locate {symbol}: recipes could run in {ran} distinct function(s), {MIN_RECIPES} \
         needed (functions not found: {missing:?})"
    )]
    TooFewRecipes {
        symbol: &'static str,
        ran: usize,
        missing: Vec<&'static str>,
    },
    /// A function's bytes do not decode: not Go code, or the wrong bytes for the name.
    #[error("cannot locate {symbol}: {function} is not valid x86-64 code")]
    InvalidCode {
        symbol: &'static str,
        function: &'static str,
        source: InvalidCode,
    },
    /// The recipes that ran share no address, or several: the runtime or the layout is not
    /// what the recipes expect.
    #[error(
        "cannot locate {symbol}: its recipes do not agree on exactly one address \
         (candidates: {candidates}); the runtime differs from what goprobe knows for {version}"
    )]
    Disagree {
        symbol: &'static str,
        version: String,
        candidates: Candidates,
    },
}

/// Locates the runtime variables of a Go binary from its code.
///
/// `code(name)` returns the bytes of a runtime function by its Go name (`runtime.gcStart`), from
/// `.symtab` or the gopclntab, or `None` when the binary does not have it (the linker drops
/// unreachable functions; recipes in missing functions are skipped). NB: the gopclntab names an
/// ABI0 wrapper exactly like the ABIInternal function it wraps (`runtime.osinit`,
/// `runtime.newproc`, … are called from assembly; `.symtab` calls the wrapper `….abi0`); `code`
/// must return the function's body, the larger of the two, not the 32-byte wrapper.
///
/// `layout` gives the struct field offsets some recipes anchor on; it must be the target's own
/// (DWARF-corrected when DWARF exists, else the per-release table). `work` and `memstats` are
/// required; the other variables are `None` when they cannot be located with certainty.
/// Addresses are link-time: add the PIE load bias before reading the process.
pub fn locate<'a>(
    code: &dyn Fn(&str) -> Option<FunctionCode<'a>>,
    version: &GoVersion,
    layout: &RuntimeLayout,
) -> Result<RuntimeVars, VarsError> {
    let mut locator = Locator {
        code,
        version,
        layout,
        decoded: HashMap::new(),
        evidence: Vec::new(),
    };
    let work = locator.var(Var::Work)?;
    let memstats = locator.var(Var::Memstats)?;
    let mut optional = |var: Var| match locator.var(var) {
        Ok(addr) => Some(addr),
        Err(e @ VarsError::Disagree { .. }) => {
            tracing::warn!("{e}");
            None
        }
        Err(e) => {
            tracing::debug!("{e}");
            None
        }
    };
    let allglen = optional(Var::Allglen);
    let sched = optional(Var::Sched);
    let gc_controller = optional(Var::GcController);
    let mem_profile_rate = optional(Var::MemProfileRate);
    let gomaxprocs = optional(Var::Gomaxprocs);
    let ncpu = optional(Var::Ncpu);
    let allp = optional(Var::Allp);
    Ok(RuntimeVars {
        work,
        memstats,
        allglen,
        sched,
        gc_controller,
        mem_profile_rate,
        gomaxprocs,
        ncpu,
        allp,
        evidence: locator.evidence,
    })
}

struct Locator<'c, 'a> {
    code: &'c dyn Fn(&str) -> Option<FunctionCode<'a>>,
    version: &'c GoVersion,
    layout: &'c RuntimeLayout,
    /// Decoded functions by name, with their entry address; `None` when not found.
    decoded: HashMap<&'static str, Option<(u64, Vec<RipUse>)>>,
    evidence: Vec<Evidence>,
}

impl Locator<'_, '_> {
    fn var(&mut self, var: Var) -> Result<u64, VarsError> {
        let symbol = var.symbol();
        let minor = self.version.minor;
        let applicable: Vec<&Recipe> = recipes::recipes(var)
            .iter()
            .filter(|r| recipes::CHECKED_MINORS.contains(&minor) && r.minors.contains(&minor))
            .collect();
        if applicable.is_empty() {
            return Err(VarsError::Unsupported {
                symbol,
                version: self.version.raw.clone(),
            });
        }
        let mut ran = Vec::new();
        let mut missing = Vec::new();
        // Entry addresses of the functions that ran: agreement must come from distinct code.
        let mut entries = BTreeSet::new();
        let layout = self.layout;
        for recipe in applicable {
            match self.uses(symbol, recipe.function)? {
                Some((entry, uses)) => {
                    entries.insert(entry);
                    ran.push((recipe, bases(uses, recipe, layout)));
                }
                None => missing.push(recipe.function),
            }
        }
        if entries.len() < MIN_RECIPES {
            return Err(VarsError::TooFewRecipes {
                symbol,
                ran: entries.len(),
                missing,
            });
        }
        let mut agreed = ran[0].1.clone();
        for (_, b) in &ran[1..] {
            agreed.retain(|a| b.contains(a));
        }
        let mut agreed = agreed.into_iter();
        match (agreed.next(), agreed.next()) {
            (Some(address), None) => {
                let names = ran.iter().map(|(r, _)| r.name).collect();
                tracing::debug!(symbol, address, recipes = ?names, "located");
                self.evidence.push(Evidence {
                    symbol,
                    address,
                    recipes: names,
                });
                Ok(address)
            }
            _ => Err(VarsError::Disagree {
                symbol,
                version: self.version.raw.clone(),
                candidates: Candidates(
                    ran.into_iter()
                        .map(|(r, b)| (r.name, b.into_iter().collect()))
                        .collect(),
                ),
            }),
        }
    }

    /// The entry and RIP-relative uses of `function`, decoded once; `None` when it is not in
    /// the binary.
    fn uses(
        &mut self,
        symbol: &'static str,
        function: &'static str,
    ) -> Result<Option<(u64, &[RipUse])>, VarsError> {
        if !self.decoded.contains_key(function) {
            let uses = match (self.code)(function) {
                Some(f) => Some((
                    f.addr,
                    decode::rip_uses(f.code, f.addr).map_err(|source| VarsError::InvalidCode {
                        symbol,
                        function,
                        source,
                    })?,
                )),
                None => None,
            };
            self.decoded.insert(function, uses);
        }
        Ok(self
            .decoded
            .get(function)
            .and_then(|u| u.as_ref())
            .map(|(entry, uses)| (*entry, uses.as_slice())))
    }
}

/// Every base address for which `uses` satisfies all of `recipe`'s anchors.
fn bases(uses: &[RipUse], recipe: &Recipe, layout: &RuntimeLayout) -> BTreeSet<u64> {
    let targets = |anchor: &recipes::Anchor| -> Vec<u64> {
        let matching = uses
            .iter()
            .filter(|u| u.access == anchor.access)
            .map(|u| u.target);
        if anchor.first {
            matching.take(1).collect()
        } else {
            matching.collect()
        }
    };
    let Some((head, rest)) = recipe.anchors.split_first() else {
        return BTreeSet::new();
    };
    let off = head.field.offset(layout);
    let mut found: BTreeSet<u64> = targets(head)
        .into_iter()
        .filter_map(|t| t.checked_sub(off))
        .collect();
    for anchor in rest {
        let have: HashSet<u64> = targets(anchor).into_iter().collect();
        let off = anchor.field.offset(layout);
        found.retain(|b| b.checked_add(off).is_some_and(|t| have.contains(&t)));
    }
    found
}

#[cfg(test)]
mod tests;
