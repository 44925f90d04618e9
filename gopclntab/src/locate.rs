//! Finding the table in an image and validating its header (`runtime.pcHeader`).
//!
//! NB: Go 1.16–1.27, runtime/symtab.go `pcHeader` and internal/abi/symtab.go magics. Order of
//! attempts: section `.gopclntab` (every non-PIE build; PIE from Go 1.26 on), section
//! `.data.rel.ro.gopclntab` (internally linked PIE up to Go 1.25), symbols `runtime.pclntab` /
//! `runtime.epclntab` (unstripped externally linked builds), then a scan of the loaded
//! segments for the header signature (stripped external-link PIE, section headers removed).

use crate::{Error, Layout, image::Image, image::read_uint};

/// Go 1.16–1.17: functab entries are absolute pointers, no textStart in the header.
pub(crate) const MAGIC_GO116: u32 = 0xffff_fffa;
/// Go 1.18–1.19: functab entries are u32 offsets from textStart.
pub(crate) const MAGIC_GO118: u32 = 0xffff_fff0;
/// Go 1.20 and later (still current in Go 1.27).
pub(crate) const MAGIC_GO120: u32 = 0xffff_fff1;
/// Go 1.2–1.15, which this crate does not read.
const MAGIC_GO12: u32 = 0xffff_fffb;

/// A validated header: where each sub-table starts, as offsets into `tab`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header<'a> {
    pub tab: &'a [u8],
    pub vaddr: u64,
    pub magic: u32,
    pub quantum: u8,
    pub ptr_size: u8,
    pub nfunc: usize,
    /// The header's textStart word (Go 1.18+), relocation addend applied; 0 on Go 1.26+.
    pub text_start_word: u64,
    pub funcname: usize,
    pub cu: usize,
    pub filetab: usize,
    pub pctab: usize,
    pub pcln: usize,
}

impl Header<'_> {
    /// Size of one functab field: pointers before Go 1.18, u32 offsets from then on.
    pub fn ftab_field(&self) -> usize {
        if self.magic == MAGIC_GO116 {
            usize::from(self.ptr_size)
        } else {
            4
        }
    }

    /// End of the functab (after the sentinel), as an offset into `tab`.
    pub fn functab_end(&self) -> usize {
        // Validated in `parse` not to overflow.
        self.pcln + (2 * self.nfunc + 1) * self.ftab_field()
    }

    /// The layout family the magic implies before the Go 1.26 check.
    pub fn base_layout(&self) -> Layout {
        match self.magic {
            MAGIC_GO116 => Layout::Go116,
            MAGIC_GO118 => Layout::Go118,
            _ => Layout::Go120,
        }
    }
}

/// Finds and validates the table.
pub(crate) fn find<'a>(img: &Image<'a>) -> Result<Header<'a>, Error> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some((vaddr, data)) = img.section(name) {
            return parse(img, vaddr, data);
        }
    }
    if let (Some(start), Some(end)) = (
        img.symbol("runtime.pclntab"),
        img.symbol("runtime.epclntab"),
    ) && let Some(data) = end.checked_sub(start).and_then(|len| img.bytes(start, len))
        && let Ok(h) = parse(img, start, data)
    {
        return Ok(h);
    }
    scan(img)
}

/// Scans every loaded segment, at 8-byte alignment, for a valid header with functions. When
/// none is valid, the error of the first header-shaped match, else `NotFound`.
fn scan<'a>(img: &Image<'a>) -> Result<Header<'a>, Error> {
    let mut unsupported = None;
    for seg in img.segments.iter().filter(|s| !s.executable()) {
        let Some(data) = img.bytes_to_segment_end(seg.vaddr) else {
            continue;
        };
        let mut off = 0usize;
        while off + 8 <= data.len() {
            let w = &data[off..off + 8];
            if w[1..4] == [0xff; 3]
                && matches!(w[0], 0xf0 | 0xf1 | 0xfa | 0xfb)
                && w[4..6] == [0, 0]
                && matches!(w[6], 1 | 2 | 4)
                && matches!(w[7], 4 | 8)
            {
                let vaddr = seg.vaddr.wrapping_add(off as u64);
                match parse(img, vaddr, &data[off..]) {
                    Ok(h) => return Ok(h),
                    // Keep scanning, but report what the first signature match had wrong.
                    Err(e) => {
                        unsupported.get_or_insert(e);
                    }
                }
            }
            off += 8;
        }
    }
    Err(unsupported.unwrap_or(Error::NotFound))
}

/// Validates a header at `vaddr` whose table bytes are `tab` (up to the end of what is known).
pub(crate) fn parse<'a>(img: &Image<'a>, vaddr: u64, tab: &'a [u8]) -> Result<Header<'a>, Error> {
    let bad = |what: &'static str| Error::Corrupt { what, offset: 0 };
    let head = tab.get(..8).ok_or(bad("table shorter than its header"))?;
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    match magic {
        MAGIC_GO116 | MAGIC_GO118 | MAGIC_GO120 => {}
        MAGIC_GO12 => return Err(Error::UnsupportedMagic { magic }),
        _ => return Err(bad("bad magic")),
    }
    let (quantum, ptr_size) = (head[6], head[7]);
    if head[4] != 0 || head[5] != 0 || !matches!(quantum, 1 | 2 | 4) || !matches!(ptr_size, 4 | 8) {
        return Err(bad("bad header padding, quantum or pointer size"));
    }
    let p = usize::from(ptr_size);
    let word = |i: usize| read_uint(tab, 8 + i * p, ptr_size).ok_or(bad("truncated header"));
    let nfunc = usize::try_from(word(0)?).map_err(|_| bad("nfunc too large"))?;
    // Go 1.16/1.17 have no textStart word; every later field comes one word earlier.
    let (text_start_word, first) = if magic == MAGIC_GO116 {
        (0, 2)
    } else {
        let at = vaddr.wrapping_add(8 + 2 * p as u64);
        (img.ptr(at, ptr_size).unwrap_or(word(2)?), 3)
    };
    let off = |i: usize| -> Result<usize, Error> {
        let v = usize::try_from(word(first + i)?).map_err(|_| bad("offset too large"))?;
        if v >= tab.len() {
            return Err(bad("sub-table offset past the end of the table"));
        }
        Ok(v)
    };
    let h = Header {
        tab,
        vaddr,
        magic,
        quantum,
        ptr_size,
        nfunc,
        text_start_word,
        funcname: off(0)?,
        cu: off(1)?,
        filetab: off(2)?,
        pctab: off(3)?,
        pcln: off(4)?,
    };
    if nfunc == 0 {
        return Err(bad("table has no functions"));
    }
    let ftab_len = nfunc
        .checked_mul(2)
        .and_then(|n| n.checked_add(1))
        .and_then(|n| n.checked_mul(h.ftab_field()))
        .and_then(|n| n.checked_add(h.pcln))
        .ok_or(bad("nfunc too large"))?;
    if ftab_len > tab.len() {
        return Err(Error::Corrupt {
            what: "functab runs past the end of the table (nfunc too large)",
            offset: h.pcln as u64,
        });
    }
    Ok(h)
}
