//! Where a frame-pointer walk misses the caller: the pc ranges of a Go binary at which SP is
//! still where the function's entry left it, so `[SP]` is the return address into the caller
//! and RBP is still the caller's frame pointer.
//!
//! A perf-event sample (page fault, cpu-clock tick) can interrupt any instruction. The kernel
//! walks the user stack by frame pointers: the sampled IP, then `[RBP+8]`, … At a pc where the
//! function has not pushed RBP — all of a frameless assembly leaf such as `memmove` or
//! `memclrNoHeapPointers`, and a frameful function's entry, before `push rbp` — RBP still belongs
//! to the caller, so the walk goes from the leaf straight to the caller's caller. The BPF side
//! (ebpf/goprobe-ebpf/src/perf.rs) looks the sampled IP up in these ranges and, on a hit, keeps
//! `[SP]` as [`goprobe_common::CallerStack::ret`], which user space inserts as the second frame.
//!
//! NB: the signal is the function table's pcsp program (runtime/runtime2.go `_func.pcsp`,
//! Go 1.16–1.27; the runtime's own unwinder, runtime/traceback.go, finds a frame's return
//! address at `SP + funcspdelta`): delta 0 is exactly "the return address is at `[SP]`". It
//! covers assembly functions too (their pcsp comes from the assembler, which tracks every
//! SP adjustment), unlike a frame-size-only test, and needs no list of names.

use goprobe_gopclntab::Pclntab;

use goprobe_common::MAX_FRAMELESS;

/// A pc range `[start, end)` (run-time addresses) where `[SP]` holds the return address.
pub type Range = (u64, u64);

/// The frameless pc ranges of the binary whose table is `table`, moved by the load `bias`,
/// sorted, merged where adjacent, and at most [`MAX_FRAMELESS`] of them (whole frameless
/// functions first, then function entries, as they fit). Empty without a function table.
pub fn ranges(table: Option<&Pclntab<'_>>, bias: u64) -> Vec<Range> {
    let Some(table) = table else {
        return Vec::new();
    };
    let started = std::time::Instant::now();
    // Whole frameless functions (every step 0: leaves such as memmove, memclrNoHeapPointers,
    // Syscall6) and the zero-delta stretches of functions with a frame (entry, RETs).
    let (mut leaves, mut entries) = (Vec::new(), Vec::new());
    let mut unreadable = 0usize;
    for f in table.funcs() {
        let steps = match table.sp_deltas(&f) {
            Ok(s) => s,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        let zero = steps.iter().filter(|s| s.2 == 0).map(|&(a, b, _)| (a, b));
        if !steps.is_empty() && steps.iter().all(|s| s.2 == 0) {
            // NB: the padding after the last step (INT3 fill up to the next function's
            // alignment) is never executed: the function's whole range can be taken.
            leaves.push((f.entry, f.end));
        } else {
            entries.extend(zero);
        }
    }
    if unreadable > 0 {
        tracing::debug!(unreadable, "functions without a readable pcsp program");
    }
    let leaves = merge(leaves);
    let entries = merge(entries);
    let max = MAX_FRAMELESS as usize;
    let mut out = leaves;
    if out.len() > max {
        tracing::warn!(
            frameless = out.len(),
            max,
            "too many frameless functions: samples in the rest miss their caller"
        );
        out.truncate(max);
    } else if out.len() + entries.len() <= max {
        out.extend(entries);
        out = merge(out);
    } else {
        tracing::info!(
            entries = entries.len(),
            max,
            "function entries left out of the frameless ranges (table full): samples there \
             miss their caller"
        );
    }
    tracing::debug!(
        ranges = out.len(),
        functions = table.len(),
        ms = started.elapsed().as_millis() as u64,
        "frameless ranges"
    );
    out.into_iter()
        .map(|(a, b)| (a.wrapping_add(bias), b.wrapping_add(bias)))
        .collect()
}

/// Sorts and merges overlapping or touching ranges.
fn merge(mut v: Vec<Range>) -> Vec<Range> {
    v.sort_unstable();
    let mut out: Vec<Range> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The range of `ranges` (sorted, disjoint) that holds `pc` — the search the BPF side does.
pub fn lookup(ranges: &[Range], pc: u64) -> Option<Range> {
    let i = ranges.partition_point(|r| r.0 <= pc).checked_sub(1)?;
    let r = ranges[i];
    (pc < r.1).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_touching_and_overlapping() {
        assert_eq!(
            merge(vec![(10, 20), (0, 5), (20, 25), (22, 23), (30, 31)]),
            [(0, 5), (10, 25), (30, 31)]
        );
    }

    #[test]
    fn lookup_is_half_open() {
        let r = [(0x10, 0x20), (0x30, 0x31)];
        assert_eq!(lookup(&r, 0x10), Some((0x10, 0x20)));
        assert_eq!(lookup(&r, 0x1f), Some((0x10, 0x20)));
        assert_eq!(lookup(&r, 0x20), None);
        assert_eq!(lookup(&r, 0x30), Some((0x30, 0x31)));
        assert_eq!(lookup(&r, 0x0f), None);
        assert_eq!(lookup(&r, 0x40), None);
    }
}
