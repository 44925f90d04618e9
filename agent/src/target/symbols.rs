//! Where the runtime's functions are: the Go function table (`.gopclntab`, which survives
//! `-ldflags=-s -w` and `strip`), else `.symtab`. Both give link-time addresses.

use goprobe_gopclntab::Pclntab;

use super::elf::ElfInfo;

/// One function's machine code at its link-time address.
#[derive(Clone, Copy, Debug)]
pub struct FunctionCode<'d> {
    pub addr: u64,
    pub code: &'d [u8],
}

/// Function look-up over one executable's bytes.
pub struct RuntimeSymbols<'d> {
    data: &'d [u8],
    elf: &'d ElfInfo,
    table: Option<Pclntab<'d>>,
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
        Self { data, elf, table }
    }

    /// The function table, when the binary has a readable one.
    pub fn table(&self) -> Option<&Pclntab<'d>> {
        self.table.as_ref()
    }

    /// The code of function `name` (the runtime's spelling, e.g. `runtime.gcStart`).
    pub fn function(&self, name: &str) -> Option<FunctionCode<'d>> {
        let (addr, len) = match self.table.as_ref().and_then(|t| t.func_by_name(name)) {
            Some(f) => (f.entry, f.end.checked_sub(f.entry)?),
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
