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

use goprobe_common::{MAX_FRAMELESS, X86_RET};

/// A pc range `[start, end)` where `[SP]` holds the return address, as offsets from the Go text
/// start ([`Frameless::text_start`]).
pub type Range = (u32, u32);

/// The frameless ranges of one executable, the same in every process that runs it: offsets from
/// its Go text start, so a PIE binary's processes share them (each adds its own load bias).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frameless {
    /// Link-time address of the Go text start (`runtime.text`), which the offsets count from.
    pub text_start: u64,
    /// Bytes of Go text from `text_start` (to the end of the last function).
    pub text_len: u32,
    /// Sorted, disjoint, never touching; at most [`MAX_FRAMELESS`], else empty with `too_many`.
    pub ranges: Vec<Range>,
    /// How many ranges the binary has when that is more than [`MAX_FRAMELESS`]: none are kept,
    /// and the perf-event signals drop (and count) this binary's samples rather than give them
    /// stacks that may miss a caller.
    pub too_many: Option<usize>,
}

/// The frameless ranges of the binary whose table is `table`; `code(addr)` reads the byte at
/// link-time address `addr` (to leave out lone `RET`s, which the BPF side recognizes itself).
/// Empty without a function table.
///
/// Fewer ranges than zero-delta stretches, none of them wrong (hugo, 88k functions: 213k
/// stretches at delta 0 outside its 21k frameless leaves become 69k ranges in all;
/// goprobe/tests/frameless_ranges.rs checks every instruction):
/// - a function's last zero stretch that ends where its code ends (the `morestack` call
///   after the body) is extended over the padding to the next function: the padding (INT3
///   fill) is never executed, so the stretch touches the next function's entry and merges;
/// - a lone one-byte stretch holding `RET` is left out: at a `RET` the return address is at
///   `[SP]` by the instruction's own definition, so the BPF side checks the byte at the sampled
///   IP instead (ebpf/goprobe-ebpf/src/perf.rs).
pub fn ranges(table: Option<&Pclntab<'_>>, code: &dyn Fn(u64) -> Option<u8>) -> Frameless {
    let Some(table) = table else {
        return Frameless::default();
    };
    let started = std::time::Instant::now();
    let text_start = table.text_start();
    let mut text_end = text_start;
    let mut zero: Vec<(u64, u64)> = Vec::with_capacity(table.len() * 3);
    let mut unreadable = 0usize;
    for f in table.funcs() {
        text_end = text_end.max(f.end);
        let steps = match table.sp_deltas(&f) {
            Ok(s) => s,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        let Some(&(_, code_end, _)) = steps.last() else {
            continue;
        };
        let before = zero.len();
        // Consecutive zero steps touch and are merged below.
        zero.extend(steps.iter().filter(|s| s.2 == 0).map(|&(a, b, _)| (a, b)));
        // NB: the pcsp program ends with the function's last instruction; what follows up to
        // the next function's entry is alignment padding (INT3), never executed. A zero
        // stretch ending there (a frameless leaf, or the morestack call that closes a function
        // with a frame) may cover it.
        if zero.len() > before
            && let Some(last) = zero.last_mut()
            && last.1 == code_end
        {
            last.1 = f.end.max(code_end);
        }
    }
    if unreadable > 0 {
        tracing::debug!(unreadable, "functions without a readable pcsp program");
    }
    let steps = zero.len();
    let mut merged = merge(zero);
    // NB: x86-64 RET pops the return address from [SP] (Intel SDM vol. 2, RET); the BPF side
    // reads the opcode at the sampled IP (only ever an instruction boundary) and needs no range.
    merged.retain(|&(a, b)| !(b == a + 1 && code(a) == Some(X86_RET)));
    let offset = |a: u64| u32::try_from(a.saturating_sub(text_start)).unwrap_or(u32::MAX);
    let mut out = Frameless {
        text_start,
        text_len: offset(text_end),
        ranges: merged
            .into_iter()
            .map(|(a, b)| (offset(a), offset(b)))
            .collect(),
        too_many: None,
    };
    if out.ranges.len() > MAX_FRAMELESS as usize {
        out.too_many = Some(out.ranges.len());
        out.ranges = Vec::new();
    }
    tracing::debug!(
        ranges = out.ranges.len(),
        too_many = out.too_many,
        steps,
        functions = table.len(),
        ms = started.elapsed().as_millis() as u64,
        "frameless ranges"
    );
    out
}

/// Sorts and merges overlapping or touching ranges.
fn merge<T: Ord + Copy>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The range of `ranges` (sorted, disjoint) that holds `pc` — the search the BPF side does.
pub fn lookup(ranges: &[Range], pc: u32) -> Option<Range> {
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
    fn merges_offsets() {
        assert_eq!(merge(vec![(5u32, 6), (0, 5)]), [(0, 6)]);
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
