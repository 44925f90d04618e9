//! One Go executable, mapped once and shared by every process that runs it: its `.gopclntab`
//! (through `goprobe-gopclntab`) and the `PT_LOAD` table that turns file offsets into the
//! link-time addresses the table is keyed by.

use std::{fs, path::Path};

use goprobe_gopclntab::Pclntab;
use object::{Object as _, ObjectSegment as _};

type PclntabOf<'a> = Pclntab<'a>;

self_cell::self_cell!(
    /// The mapped file and the table that borrows it.
    struct Table {
        owner: memmap2::Mmap,
        #[covariant]
        dependent: PclntabOf,
    }
);

/// A Go executable's symbol table.
pub struct GoBinary {
    table: Table,
    /// `(file offset, vaddr, file size)` of each `PT_LOAD` segment.
    segments: Vec<(u64, u64, u64)>,
}

impl std::fmt::Debug for GoBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoBinary")
            .field("functions", &self.table.borrow_dependent().len())
            .finish()
    }
}

impl GoBinary {
    /// Opens `path`; `None` when it is not an ELF file with a Go function table.
    pub fn open(path: &Path) -> Option<Self> {
        let file = fs::File::open(path).ok()?;
        // SAFETY: read-only private mapping; see analysis::Process::map_exe.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let segments = {
            let elf = object::File::parse(&*map).ok()?;
            elf.segments()
                .map(|s| {
                    let (off, size) = s.file_range();
                    (off, s.address(), size)
                })
                .collect()
        };
        let table = Table::try_new(map, |m| Pclntab::from_elf(m)).ok()?;
        Some(Self { table, segments })
    }

    /// The table.
    pub fn table(&self) -> &Pclntab<'_> {
        self.table.borrow_dependent()
    }

    /// The link-time address of file offset `off`.
    pub fn vaddr_of(&self, off: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(o, _, size)| off >= *o && off < o + size)
            .map(|(o, va, _)| off - o + va)
    }
}
