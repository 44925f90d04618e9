//! Where the runtime's functions are: the Go function table (`.gopclntab`, which survives
//! `-ldflags=-s -w` and `strip`), else `.symtab`. Both give link-time addresses.

use std::collections::HashMap;

use goprobe_gopclntab::Pclntab;

use super::{elf::ElfInfo, vars::FunctionCode};

/// Only the runtime's own functions are looked up by name.
const RUNTIME_PREFIX: &str = "runtime.";

/// Function look-up over one executable's bytes.
pub struct RuntimeSymbols<'d> {
    data: &'d [u8],
    elf: &'d ElfInfo,
    table: Option<Pclntab<'d>>,
    /// `runtime.*` functions of the table: name → (entry, end).
    runtime: HashMap<&'d str, (u64, u64)>,
}

impl<'d> RuntimeSymbols<'d> {
    pub fn new(data: &'d [u8], elf: &'d ElfInfo) -> Self {
        let table = match Pclntab::from_elf(data) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::debug!("no usable .gopclntab ({e}); functions from .symtab only");
                None
            }
        };
        let mut runtime: HashMap<&'d str, (u64, u64)> = HashMap::new();
        for f in table.iter().flat_map(|t| t.funcs()) {
            if !f.name.starts_with(RUNTIME_PREFIX) {
                continue;
            }
            // NB: the table names an ABI0 wrapper exactly like the ABIInternal function it
            // wraps (Go 1.17+, cmd/internal/obj ABI wrappers; `.symtab` calls the wrapper
            // `….abi0`): keep the larger, the real body.
            let e = runtime.entry(f.name).or_insert((f.entry, f.end));
            if f.end.saturating_sub(f.entry) > e.1.saturating_sub(e.0) {
                *e = (f.entry, f.end);
            }
        }
        Self {
            data,
            elf,
            table,
            runtime,
        }
    }

    /// The function table, when the binary has a readable one.
    pub fn table(&self) -> Option<&Pclntab<'d>> {
        self.table.as_ref()
    }

    /// Every `runtime.*` function of the function table with its code (none without a table).
    pub fn runtime_functions(&self) -> impl Iterator<Item = (&'d str, FunctionCode<'d>)> + '_ {
        self.runtime.iter().filter_map(|(&name, &(entry, end))| {
            let code = self
                .elf
                .bytes_at(self.data, entry, end.checked_sub(entry)?)?;
            Some((name, FunctionCode { addr: entry, code }))
        })
    }

    /// The name of the table's function containing link-time address `addr`.
    pub fn function_name_at(&self, addr: u64) -> Option<&'d str> {
        Some(self.table.as_ref()?.find_func(addr)?.name)
    }

    /// The code of runtime function `name` (the runtime's spelling, e.g. `runtime.gcStart`).
    pub fn function(&self, name: &str) -> Option<FunctionCode<'d>> {
        let (addr, len) = match self.runtime.get(name) {
            Some(&(entry, end)) => (entry, end.checked_sub(entry)?),
            None => {
                let s = self.elf.symbols.get(name)?;
                (s.address, s.size)
            }
        };
        Some(FunctionCode {
            addr,
            code: self.elf.bytes_at(self.data, addr, len)?,
        })
    }
}
