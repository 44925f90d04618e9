//! `_func` records and the inline tree.
//!
//! NB: Go 1.16–1.27, runtime/runtime2.go `_func` and runtime/symtab.go `inlinedCall`.
//! `_func` is `{entry, nameOff i32, args i32, deferreturn u32, pcsp u32, pcfile u32, pcln u32,
//! npcdata u32, cuOffset u32, [startLine i32 (1.20+)], funcID u8, flag u8, pad u8,
//! nfuncdata u8}`; `entry` is a pointer on Go 1.16/1.17 and a u32 offset from textStart from
//! 1.18 on. It is followed by `u32 pcdata[npcdata]` (offsets into pctab, 0 = none) and
//! `funcdata[nfuncdata]`: pointers (8-byte aligned on 64-bit) on 1.16/1.17, u32 offsets from
//! `moduledata.gofunc` (`!0` = none) from 1.18 on.
//! `inlinedCall` is 20 bytes up to Go 1.19 (`parent i16, funcID u8, pad u8, file i32, line i32,
//! nameOff i32, parentPc i32`) and 16 bytes from Go 1.20 (`funcID u8, pad [3]u8, nameOff i32,
//! parentPc i32, startLine i32`). internal/abi/symtab.go: `PCDATA_InlTreeIndex = 2`,
//! `FUNCDATA_InlTree = 3`.

use crate::{Error, Layout, image::read_u32, locate::Header};

pub(crate) const PCDATA_INL_TREE_INDEX: u32 = 2;
pub(crate) const FUNCDATA_INL_TREE: u32 = 3;

/// The fields of one `_func` record this crate uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    /// Offset of the record in the table.
    pub at: usize,
    pub name_off: u32,
    /// Offset of the pcsp program (SP delta from the entry's SP, per pc) in pctab; 0 = none.
    pub pcsp: u32,
    pub pcfile: u32,
    pub pcln: u32,
    pub npcdata: u32,
    pub cu_offset: u32,
    pub nfuncdata: u8,
    /// Offset of `pcdata[0]` in the table.
    pub pcdata_at: usize,
}

fn corrupt(what: &'static str, offset: usize) -> Error {
    Error::Corrupt {
        what,
        offset: offset as u64,
    }
}

/// Decodes the `_func` record at table offset `at`.
pub(crate) fn record(h: &Header<'_>, layout: Layout, at: usize) -> Result<Record, Error> {
    let f0 = if layout == Layout::Go116 {
        usize::from(h.ptr_size)
    } else {
        4
    };
    // entry, 8 u32/i32 fields, startLine (1.20+), then funcID, flag, pad, nfuncdata.
    let fixed = f0 + 32 + if layout >= Layout::Go120 { 4 } else { 0 } + 4;
    let end = at
        .checked_add(fixed)
        .filter(|&e| e <= h.tab.len())
        .ok_or(corrupt("_func record past the end of the table", at))?;
    let u = |o: usize| read_u32(h.tab, at + o).unwrap_or(0);
    Ok(Record {
        at,
        name_off: u(f0),
        pcsp: u(f0 + 12),
        pcfile: u(f0 + 16),
        pcln: u(f0 + 20),
        npcdata: u(f0 + 24),
        cu_offset: u(f0 + 28),
        nfuncdata: h.tab[end - 1],
        pcdata_at: end,
    })
}

impl Record {
    /// `pcdata[i]`, an offset into pctab; 0 when absent.
    pub fn pcdata(&self, h: &Header<'_>, i: u32) -> u32 {
        if i >= self.npcdata {
            return 0;
        }
        read_u32(h.tab, self.pcdata_at + 4 * i as usize).unwrap_or(0)
    }

    /// The address of `funcdata[i]`, given `gofunc` (Go 1.18+); `Ok(None)` when absent.
    pub fn funcdata(
        &self,
        h: &Header<'_>,
        layout: Layout,
        img: &crate::image::Image<'_>,
        gofunc: u64,
        i: u32,
    ) -> Result<Option<u64>, Error> {
        if i >= u32::from(self.nfuncdata) {
            return Ok(None);
        }
        let base = self
            .pcdata_at
            .checked_add(4 * self.npcdata as usize)
            .ok_or(corrupt("npcdata too large", self.at))?;
        if layout == Layout::Go116 {
            let p = usize::from(h.ptr_size);
            let aligned = if p == 8 && !(h.vaddr as usize).wrapping_add(base).is_multiple_of(8) {
                base + 4
            } else {
                base
            };
            let at = h.vaddr.wrapping_add((aligned + p * i as usize) as u64);
            let v = img
                .ptr(at, h.ptr_size)
                .ok_or(corrupt("funcdata past the end of the table", aligned))?;
            return Ok((v != 0).then_some(v));
        }
        let off = read_u32(h.tab, base + 4 * i as usize)
            .ok_or(corrupt("funcdata past the end of the table", base))?;
        Ok((off != u32::MAX).then(|| gofunc.wrapping_add(u64::from(off))))
    }
}

/// One inline tree entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InlinedCall {
    pub name_off: u32,
    pub parent_pc: i32,
    /// Up to Go 1.19 only: the call site (per-CU file index, line) and the parent's index.
    pub call_site: Option<(i32, i32, i16)>,
}

/// Inline tree entry `idx` of the tree at `tree`.
pub(crate) fn inlined_call(
    img: &crate::image::Image<'_>,
    layout: Layout,
    tree: u64,
    idx: i32,
) -> Result<InlinedCall, Error> {
    let size: u64 = if layout >= Layout::Go120 { 16 } else { 20 };
    let at = u64::try_from(idx)
        .ok()
        .and_then(|i| i.checked_mul(size))
        .and_then(|o| tree.checked_add(o));
    let b = at.and_then(|a| img.bytes(a, size)).ok_or(Error::Corrupt {
        what: "inline tree index out of range",
        offset: tree,
    })?;
    let u = |o: usize| read_u32(b, o).unwrap_or(0);
    Ok(if size == 16 {
        InlinedCall {
            name_off: u(4),
            parent_pc: u(8) as i32,
            call_site: None,
        }
    } else {
        InlinedCall {
            name_off: u(12),
            parent_pc: u(16) as i32,
            call_site: Some((u(4) as i32, u(8) as i32, i16::from_le_bytes([b[0], b[1]]))),
        }
    })
}
