//! Source frames for a pc: file:line from the pcfile/pcln programs, inlined callees from the
//! inline tree, and a small per-pc cache for callers that look up the same pcs again.
//!
//! NB: Go 1.20–1.27 runtime/symbol.go `inlineUnwinder` (Go 1.18/1.19: runtime/symtab.go
//! `Frames.Next` / `tracebackPCs`): the leaf frame is the inlined callee at inline index
//! `pcvalue(pcdata[PCDATA_InlTreeIndex], pc)`, with file:line of `pc`; its caller is found at
//! `entry + inlinedCall.parentPc`, and so on until the index is negative; the physical function
//! comes last, with file:line at that last pc. The file for a pc is
//! `filetab[cutab[cuOffset + pcvalue(pcfile, pc)]]` (runtime/symtab.go `funcfile`).

use crate::{
    Error, Frame, Pclntab,
    func::{self, FUNCDATA_INL_TREE, PCDATA_INL_TREE_INDEX, Record},
    image::read_u32,
    pcvalue,
};

/// Longest inline chain accepted; the compiler's inlining budget keeps real chains far shorter.
pub(crate) const MAX_INLINE_DEPTH: usize = 256;

/// Implements [`Pclntab::frames`].
pub(crate) fn frames<'a>(t: &Pclntab<'a>, pc: u64, out: &mut Vec<Frame<'a>>) -> Result<(), Error> {
    let Some(idx) = t.find_index(pc) else {
        return Ok(());
    };
    let Some(f) = t.func_at(idx) else {
        return Err(Error::Corrupt {
            what: "functab points outside the table",
            offset: pc,
        });
    };
    let r = func::record(&t.h, t.layout, f.rec)?;
    let pctab = t.h.tab.get(t.h.pctab..).unwrap_or_default();
    let inl_prog = r.pcdata(&t.h, PCDATA_INL_TREE_INDEX);
    let tree = match (inl_prog, t.gofunc()) {
        (0, _) | (_, None) => None,
        (_, Some(gofunc)) => r.funcdata(&t.h, t.layout, &t.img, gofunc, FUNCDATA_INL_TREE)?,
    };
    let inl_index = |at: u64| -> Result<Option<(u64, i32)>, Error> {
        let Some(tree) = tree else { return Ok(None) };
        Ok(
            pcvalue::value(pctab, inl_prog as usize, f.entry, at, t.h.quantum)?
                .filter(|&i| i >= 0)
                .map(|i| (tree, i)),
        )
    };
    let mut pos = file_line(t, &r, pctab, f.entry, pc)?;
    let mut inl = inl_index(pc)?;
    for _ in 0..MAX_INLINE_DEPTH {
        let (file, line) = pos;
        let Some((tree, i)) = inl else {
            out.push(Frame {
                function: f.name,
                file,
                line,
                inlined: false,
            });
            return Ok(());
        };
        let call = func::inlined_call(&t.img, t.layout, tree, i)?;
        out.push(Frame {
            function: t.name(call.name_off).ok_or(Error::Corrupt {
                what: "inlined function name out of range",
                offset: u64::from(call.name_off),
            })?,
            file,
            line,
            inlined: true,
        });
        match call.call_site {
            // NB: Go 1.16–1.19 (runtime/symtab.go inlinedCall) record the call site and the
            // parent entry; DWARF's DW_AT_call_line comes from the same data. The pc at
            // parentPc can carry another line (seen: the `func` line of the caller).
            Some((file_idx, line, parent)) => {
                pos = (cu_file(t, &r, file_idx), u32::try_from(line).unwrap_or(0));
                inl = (parent >= 0).then_some((tree, i32::from(parent)));
            }
            None => {
                let cur = u64::try_from(call.parent_pc)
                    .ok()
                    .and_then(|p| f.entry.checked_add(p))
                    .filter(|&p| p < f.end)
                    .ok_or(Error::Corrupt {
                        what: "inline parentPc outside its function",
                        offset: pc,
                    })?;
                pos = file_line(t, &r, pctab, f.entry, cur)?;
                inl = inl_index(cur)?;
                // [observed: hugo, Go 1.27.2, a package init at its entry pc] The parentPc of
                // the entry's own inline index can resolve to that same index; the runtime's
                // inlineUnwinder would loop. Such a record is taken as the outermost inlined
                // call. Longer cycles are corrupt data (`InlineTooDeep`).
                if inl.is_some_and(|(_, j)| j == i) {
                    inl = None;
                }
            }
        }
    }
    Err(Error::InlineTooDeep {
        pc,
        max: MAX_INLINE_DEPTH,
    })
}

/// File and line of `pc` in the function `r` starting at `entry`.
fn file_line<'a>(
    t: &Pclntab<'a>,
    r: &Record,
    pctab: &[u8],
    entry: u64,
    pc: u64,
) -> Result<(&'a str, u32), Error> {
    let q = t.h.quantum;
    let line = match r.pcln {
        0 => None,
        off => pcvalue::value(pctab, off as usize, entry, pc, q)?,
    };
    let fileno = match r.pcfile {
        0 => None,
        off => pcvalue::value(pctab, off as usize, entry, pc, q)?,
    };
    let file = fileno.map_or("?", |n| cu_file(t, r, n));
    let line = line.and_then(|l| u32::try_from(l).ok()).unwrap_or(0);
    Ok((file, line))
}

/// File `n` of the function's compilation unit: `filetab[cutab[cuOffset + n]]`; `?` if absent.
fn cu_file<'a>(t: &Pclntab<'a>, r: &Record, n: i32) -> &'a str {
    let name = || {
        let i = r.cu_offset.checked_add(u32::try_from(n).ok()?)? as usize;
        let off = read_u32(t.h.tab, t.h.cu.checked_add(i.checked_mul(4)?)?)?;
        if off == u32::MAX {
            return None;
        }
        let s = crate::cstr(t.h.tab, t.h.filetab.checked_add(off as usize)?)?;
        std::str::from_utf8(s).ok()
    };
    name().unwrap_or("?")
}

/// A two-way set-associative cache of [`Pclntab::frames`] results, for hot pcs (profiles
/// repeat them). Each set holds two pcs; a miss replaces the one used less recently.
pub struct FrameCache<'a> {
    slots: Vec<Slot<'a>>,
    /// Per set: which of its two slots was used last.
    recent: Vec<u8>,
    mask: usize,
}

#[derive(Clone)]
struct Slot<'a> {
    pc: u64,
    frames: Vec<Frame<'a>>,
}

impl<'a> FrameCache<'a> {
    /// A cache of `2^bits` slots (clamped to 4–20 bits), in sets of two.
    pub fn new(bits: u32) -> Self {
        let n = 1usize << bits.clamp(4, 20);
        FrameCache {
            slots: vec![
                Slot {
                    pc: u64::MAX,
                    frames: Vec::new(),
                };
                n
            ],
            recent: vec![0; n / 2],
            mask: n / 2 - 1,
        }
    }

    /// Like [`Pclntab::frames`], answered from the cache when `vaddr` is in its set. The cache
    /// must be used with one table only. Errors are not cached.
    pub fn frames(
        &mut self,
        t: &Pclntab<'a>,
        vaddr: u64,
        out: &mut Vec<Frame<'a>>,
    ) -> Result<(), Error> {
        let set = (vaddr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & self.mask;
        for way in 0..2 {
            let slot = &self.slots[2 * set + way];
            if slot.pc == vaddr {
                out.extend_from_slice(&slot.frames);
                self.recent[set] = way as u8;
                return Ok(());
            }
        }
        let way = 1 - usize::from(self.recent[set] & 1);
        let slot = &mut self.slots[2 * set + way];
        slot.frames.clear();
        slot.pc = u64::MAX;
        t.frames(vaddr, &mut slot.frames)?;
        slot.pc = vaddr;
        self.recent[set] = way as u8;
        out.extend_from_slice(&slot.frames);
        Ok(())
    }
}
