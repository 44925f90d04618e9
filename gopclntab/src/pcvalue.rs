//! pcvalue programs: the run-length tables that map a pc inside a function to a value (line,
//! file index, inline tree index, ...).
//!
//! NB: Go 1.16–1.27, runtime/symtab.go `pcvalue` and `step`. A program is a list of
//! (zig-zag varint value delta, uvarint pc delta × quantum) pairs; the value starts at -1 and
//! the pc at the function entry; a value delta of 0 ends the program, except in the first pair.
//! The value at `pc` is the value of the first step whose pc passes `pc`.

use crate::Error;

/// Reads a uvarint of at most 32 bits at `*pos`; one-byte values (most deltas) inline.
#[inline(always)]
fn uvarint(p: &[u8], pos: &mut usize) -> Result<u32, Error> {
    if let Some(&b) = p.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(u32::from(b));
    }
    uvarint_slow(p, pos)
}

#[cold]
fn uvarint_slow(p: &[u8], pos: &mut usize) -> Result<u32, Error> {
    let mut v: u32 = 0;
    let mut shift = 0u32;
    loop {
        let b = *p.get(*pos).ok_or(Error::Corrupt {
            what: "pcvalue program runs past the end of pctab",
            offset: *pos as u64,
        })?;
        *pos += 1;
        if shift >= 32 {
            return Err(Error::Corrupt {
                what: "pcvalue varint longer than 32 bits",
                offset: *pos as u64,
            });
        }
        v |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
    }
}

/// The value of the program at `pctab[off..]` for `target`, in a function starting at
/// `entry`. `Ok(None)` when the program ends before `target` (the runtime's -1).
pub(crate) fn value(
    pctab: &[u8],
    off: usize,
    entry: u64,
    target: u64,
    quantum: u8,
) -> Result<Option<i32>, Error> {
    let mut pos = off;
    let mut pc = entry;
    let mut val: i32 = -1;
    loop {
        let first = pc == entry;
        let start = pos;
        let uv = uvarint(pctab, &mut pos)?;
        if uv == 0 && !first {
            return Ok(None);
        }
        let delta = (-((uv & 1) as i32)) ^ ((uv >> 1) as i32);
        val = val.wrapping_add(delta);
        let pcd = uvarint(pctab, &mut pos)?;
        pc = pc.saturating_add(u64::from(pcd) * u64::from(quantum));
        if target < pc {
            return Ok(Some(val));
        }
        // Every step consumes at least two bytes, so the loop ends with the data; a program
        // whose pc never advances past `target` runs into the end of pctab and fails there.
        debug_assert!(pos > start);
    }
}

/// Every step of the program at `pctab[off..]` in a function `[entry, end)`, as
/// `(start, end, value)` pc ranges in address order; stops at the program's end or at `end`.
pub(crate) fn steps(
    pctab: &[u8],
    off: usize,
    entry: u64,
    end: u64,
    quantum: u8,
) -> Result<Vec<(u64, u64, i32)>, Error> {
    let mut out = Vec::new();
    let mut pos = off;
    let mut pc = entry;
    let mut val: i32 = -1;
    while pc < end {
        let first = pc == entry;
        let uv = uvarint(pctab, &mut pos)?;
        if uv == 0 && !first {
            break;
        }
        let delta = (-((uv & 1) as i32)) ^ ((uv >> 1) as i32);
        val = val.wrapping_add(delta);
        let pcd = uvarint(pctab, &mut pos)?;
        let next = pc
            .saturating_add(u64::from(pcd) * u64::from(quantum))
            .min(end);
        if next > pc {
            out.push((pc, next, val));
        }
        pc = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_runtime_example() {
        // value -1+1=0 for [entry, entry+2), then +2 → 2 for [entry+2, entry+5), end.
        let prog = [0x02, 0x02, 0x04, 0x03, 0x00];
        assert_eq!(value(&prog, 0, 100, 100, 1).unwrap(), Some(0));
        assert_eq!(value(&prog, 0, 100, 101, 1).unwrap(), Some(0));
        assert_eq!(value(&prog, 0, 100, 102, 1).unwrap(), Some(2));
        assert_eq!(value(&prog, 0, 100, 104, 1).unwrap(), Some(2));
        assert_eq!(value(&prog, 0, 100, 105, 1).unwrap(), None);
    }

    #[test]
    fn steps_of_runtime_example() {
        let prog = [0x02, 0x02, 0x04, 0x03, 0x00];
        assert_eq!(
            steps(&prog, 0, 100, 200, 1).unwrap(),
            [(100, 102, 0), (102, 105, 2)]
        );
        // Clipped at the function's end.
        assert_eq!(
            steps(&prog, 0, 100, 103, 1).unwrap(),
            [(100, 102, 0), (102, 103, 2)]
        );
    }

    #[test]
    fn endless_program_is_an_error() {
        // Value deltas that never end and pc deltas of zero: runs off the end of the data.
        let prog = [0x02, 0x00, 0x02, 0x00, 0x02, 0x00];
        assert!(value(&prog, 0, 0, 10, 1).is_err());
        // A varint that never terminates.
        let prog = [0xff; 16];
        assert!(value(&prog, 0, 0, 10, 1).is_err());
    }
}
