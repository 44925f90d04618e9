//! A zero-copy, lazy reader of Go's function table (`.gopclntab`) in an ELF image: function
//! names and ranges, file:line for a pc, and inlined frames, for Go 1.16 through 1.27, in
//! stripped binaries too (the table survives `-ldflags=-s -w` and `strip`).
//!
//! [`Pclntab::from_elf`] only finds and validates the header (and, for Go 1.26+, reads the text
//! start from `moduledata`); every look-up decodes what it needs from the borrowed bytes. All
//! addresses are link-time virtual addresses: the caller removes the PIE load bias, and passes
//! `return address - 1` for caller frames.
//!
//! The format is documented in the Go sources this crate follows (each module names them) and in
//! the project's research notes (`symbolization-and-export.md` §2).

mod frames;
mod func;
mod image;
mod locate;
mod moduledata;
mod pcvalue;
mod version;

use std::sync::OnceLock;

pub use frames::FrameCache;
pub use version::{VersionHint, infer_go_version, layout_range, parse_minor};

use image::{Image, read_u32, read_uint};
use locate::Header;

/// What went wrong reading a table. Look-ups never panic: corrupt data is one of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not an ELF file `object` can parse.
    #[error("not a readable ELF file")]
    Elf(#[source] object::Error),
    /// Only little-endian targets (amd64, arm64, 386, arm, riscv64, loong64) are read.
    #[error("big-endian ELF files are not supported")]
    BigEndian,
    /// No section, symbol or header signature: not a Go binary, or packed (UPX and the like).
    #[error(
        "no Go function table (.gopclntab) found: not a Go binary, or a packed one (unpack it, e.g. `upx -d`)"
    )]
    NotFound,
    /// A Go 1.2–1.15 table (magic 0xfffffffb).
    #[error("unsupported .gopclntab magic {magic:#x}: Go 1.2–1.15 tables are not read")]
    UnsupportedMagic {
        /// The magic found.
        magic: u32,
    },
    /// An offset, count or program in the table does not fit the data.
    #[error("corrupt .gopclntab: {what} (at {offset:#x})")]
    Corrupt {
        /// What is wrong.
        what: &'static str,
        /// Where: an offset in the table, or an address.
        offset: u64,
    },
    /// The inline chain of a pc is longer than any compiler makes: a cycle or corruption.
    #[error("inline chain at pc {pc:#x} is deeper than {max} frames (corrupt table)")]
    InlineTooDeep {
        /// The pc looked up.
        pc: u64,
        /// The limit.
        max: usize,
    },
}

/// The table format, which follows the Go release that linked the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layout {
    /// Go 1.16–1.17 (magic 0xfffffffa): functab holds pointers, funcdata are pointers.
    Go116,
    /// Go 1.18–1.19 (magic 0xfffffff0): u32 entry offsets from textStart, 40-byte `_func`,
    /// 20-byte inline tree records.
    Go118,
    /// Go 1.20–1.25 (magic 0xfffffff1): 44-byte `_func`, 16-byte inline tree records.
    Go120,
    /// Go 1.26+ (magic still 0xfffffff1): textStart zeroed in the header (read from
    /// `.go.module`), funcdata inside `.gopclntab`.
    Go126,
}

/// A function of the table.
#[derive(Clone, Copy, Debug)]
pub struct Func<'a> {
    /// Entry address (link-time).
    pub entry: u64,
    /// End address: the next function's entry, or the end of Go text for the last one.
    pub end: u64,
    /// The runtime's name for it (`main.(*T).M`, `main.F[...]`, `main.main.func1`); `?` when
    /// the name table is corrupt.
    pub name: &'a str,
    /// Offset of its `_func` record in the table.
    rec: usize,
}

/// One source frame at a pc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Function name as the runtime prints it.
    pub function: &'a str,
    /// Source file as recorded by the compiler; `?` when unknown.
    pub file: &'a str,
    /// Line; 0 when unknown.
    pub line: u32,
    /// Whether this frame was inlined into the next one.
    pub inlined: bool,
}

/// A `.gopclntab` borrowed from an ELF image.
pub struct Pclntab<'a> {
    img: Image<'a>,
    h: Header<'a>,
    layout: Layout,
    text_start: u64,
    /// Address of `runtime.moduledata` (`None` inside: could not be found).
    md: OnceLock<Option<u64>>,
    /// `moduledata.gofunc`, the base of funcdata offsets; `None` inside: no inline info.
    gofunc: OnceLock<Option<u64>>,
}

impl std::fmt::Debug for Pclntab<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pclntab")
            .field("vaddr", &format_args!("{:#x}", self.h.vaddr))
            .field("layout", &self.layout)
            .field("text_start", &format_args!("{:#x}", self.text_start))
            .field("nfunc", &self.h.nfunc)
            .finish()
    }
}

impl<'a> Pclntab<'a> {
    /// Finds and validates the table of the ELF file `elf`. Cheap: no function is decoded.
    pub fn from_elf(elf: &'a [u8]) -> Result<Self, Error> {
        let img = Image::parse(elf)?;
        let h = locate::find(&img)?;
        let mut layout = h.base_layout();
        // NB: Go 1.26 (release notes; runtime/symtab.go pcHeader) zeroes pcHeader.textStart and
        // gives moduledata its own section. A zero textStart in a 1.20–1.25 table is an
        // externally linked PIE whose value is a relocation addend, which `Image::ptr` reads.
        if layout == Layout::Go120
            && (h.text_start_word == 0 || img.section(".go.module").is_some())
        {
            layout = Layout::Go126;
        }
        let mut t = Pclntab {
            img,
            h,
            layout,
            text_start: h.text_start_word,
            md: OnceLock::new(),
            gofunc: OnceLock::new(),
        };
        t.text_start = t.find_text_start()?;
        Ok(t)
    }

    fn find_text_start(&self) -> Result<u64, Error> {
        match self.layout {
            // Entries are absolute: the text starts at the first one.
            Layout::Go116 => return Ok(self.raw_entry(0)),
            Layout::Go118 | Layout::Go120 if self.h.text_start_word != 0 => {
                return Ok(self.h.text_start_word);
            }
            _ => {}
        }
        let first = u64::from(read_u32(self.h.tab, self.h.pcln).unwrap_or(0));
        if let Some(md) = self.moduledata()
            && let Some(t) = moduledata::text_start(&self.img, &self.h, md, first)
        {
            return Ok(t);
        }
        self.img
            .symbol("runtime.text")
            .or_else(|| self.img.section(".text").map(|(a, _)| a))
            .ok_or(Error::Corrupt {
                what: "text start: not in the header, moduledata, runtime.text or .text",
                offset: self.h.vaddr,
            })
    }

    fn moduledata(&self) -> Option<u64> {
        *self.md.get_or_init(|| moduledata::find(&self.img, &self.h))
    }

    fn gofunc(&self) -> Option<u64> {
        *self.gofunc.get_or_init(|| {
            if self.layout == Layout::Go116 {
                // Funcdata are absolute pointers; no base needed.
                return Some(0);
            }
            moduledata::gofunc(&self.img, &self.h, self.layout, self.moduledata()?)
        })
    }

    /// The table format.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Link-time virtual address of the start of Go text (`runtime.text`).
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// Link-time virtual address of the table's header.
    pub fn table_vaddr(&self) -> u64 {
        self.h.vaddr
    }

    /// Pointer size recorded in the table (8 on 64-bit targets).
    pub fn ptr_size(&self) -> u8 {
        self.h.ptr_size
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.h.nfunc
    }

    /// Whether the table has no functions (never true for a table `from_elf` accepted).
    pub fn is_empty(&self) -> bool {
        self.h.nfunc == 0
    }

    /// Whether inline frames can be decoded (`moduledata.gofunc` was found).
    pub fn has_inline_info(&self) -> bool {
        self.gofunc().is_some()
    }

    /// functab field `k` (0 entry, 1 funcoff) of pair `i`; the sentinel is `(nfunc, 0)`.
    fn ftab(&self, i: usize, k: usize) -> u64 {
        let f = self.h.ftab_field();
        // In bounds: `locate::parse` checked the functab extent.
        read_uint(self.h.tab, self.h.pcln + (2 * i + k) * f, f as u8).unwrap_or(0)
    }

    fn raw_entry(&self, i: usize) -> u64 {
        self.ftab(i, 0)
    }

    /// Entry address of function `i` (`i == len()` gives the end of Go text).
    fn entry(&self, i: usize) -> u64 {
        match self.layout {
            Layout::Go116 => self.raw_entry(i),
            _ => self.text_start.wrapping_add(self.raw_entry(i)),
        }
    }

    /// Function `i` of the functab, `None` if its record lies outside the table.
    pub fn func_at(&self, i: usize) -> Option<Func<'a>> {
        if i >= self.h.nfunc {
            return None;
        }
        let rec = self
            .h
            .pcln
            .checked_add(usize::try_from(self.ftab(i, 1)).ok()?)?;
        let r = func::record(&self.h, self.layout, rec).ok()?;
        Some(Func {
            entry: self.entry(i),
            end: self.entry(i + 1),
            name: self.name(r.name_off).unwrap_or("?"),
            rec,
        })
    }

    /// Every function, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = Func<'a>> + '_ {
        (0..self.h.nfunc).filter_map(|i| self.func_at(i))
    }

    /// The first function with this exact name (a linear scan).
    pub fn func_by_name(&self, name: &str) -> Option<Func<'a>> {
        (0..self.h.nfunc).find_map(|i| {
            let rec = self
                .h
                .pcln
                .checked_add(usize::try_from(self.ftab(i, 1)).ok()?)?;
            let r = func::record(&self.h, self.layout, rec).ok()?;
            (self.name_bytes(r.name_off)? == name.as_bytes())
                .then(|| self.func_at(i))
                .flatten()
        })
    }

    /// Index of the function containing `vaddr`; `None` outside Go text.
    fn find_index(&self, vaddr: u64) -> Option<usize> {
        let n = self.h.nfunc;
        if vaddr < self.entry(0) || vaddr >= self.entry(n) {
            return None;
        }
        // NB: runtime/symtab.go findfunc: the last entry <= pc (zero-size functions share an
        // entry with their successor).
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid) <= vaddr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// The function containing `vaddr`; `None` outside Go text or at/after the end sentinel.
    pub fn find_func(&self, vaddr: u64) -> Option<Func<'a>> {
        self.func_at(self.find_index(vaddr)?)
    }

    /// Frames for one pc, leaf first: inlined callees (`inlined: true`), then the physical
    /// function. Appends to `out`; appends nothing for a pc outside Go text. On error `out` is
    /// left as it was.
    pub fn frames(&self, vaddr: u64, out: &mut Vec<Frame<'a>>) -> Result<(), Error> {
        let before = out.len();
        let r = frames::frames(self, vaddr, out);
        if r.is_err() {
            out.truncate(before);
        }
        r
    }

    /// The SP delta of function `f` per pc range, as `(start, end, delta)` in address order:
    /// how far SP is below its value at the function's entry (0 at the entry, where `[SP]` is
    /// the return address; the frame size plus 8 in the body of a function with a frame on
    /// amd64). Empty when the function has no pcsp program.
    ///
    /// NB: Go 1.16–1.27, runtime/runtime2.go `_func.pcsp` and runtime/traceback.go (the
    /// unwinder reads `funcspdelta` to find the return address of a frame).
    pub fn sp_deltas(&self, f: &Func<'a>) -> Result<Vec<(u64, u64, i32)>, Error> {
        let r = func::record(&self.h, self.layout, f.rec)?;
        if r.pcsp == 0 {
            return Ok(Vec::new());
        }
        let pctab = self.h.tab.get(self.h.pctab..).unwrap_or_default();
        pcvalue::steps(pctab, r.pcsp as usize, f.entry, f.end, self.h.quantum)
    }

    fn name_bytes(&self, off: u32) -> Option<&'a [u8]> {
        cstr(self.h.tab, self.h.funcname.checked_add(off as usize)?)
    }

    fn name(&self, off: u32) -> Option<&'a str> {
        std::str::from_utf8(self.name_bytes(off)?).ok()
    }
}

/// The NUL-terminated string at `off`.
fn cstr(b: &[u8], off: usize) -> Option<&[u8]> {
    let rest = b.get(off..)?;
    Some(std::ffi::CStr::from_bytes_until_nul(rest).ok()?.to_bytes())
}

// A table is shared between symbolizing threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pclntab<'static>>();
    send_sync::<Func<'static>>();
    send_sync::<Frame<'static>>();
};
