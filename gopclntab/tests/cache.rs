//! `FrameCache` answers exactly what `Pclntab::frames` answers, on a stream with repeats and
//! set conflicts (a tiny cache), for a real Go 1.27 table (the fuzz seed).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use common::Rng;
use goprobe_gopclntab::{FrameCache, Pclntab};

#[test]
fn cache_matches_frames() {
    let elf = common::seed_elf("go1.27.3-symtest-sw");
    let t = Pclntab::from_elf(&elf).unwrap();
    let lo = t.text_start();
    let hi = t.funcs().last().unwrap().end;
    let mut rng = Rng::new(7);
    let pool: Vec<u64> = (0..300).map(|_| rng.range(lo, hi)).collect();
    for bits in [4, 8, 16] {
        let mut cache = FrameCache::new(bits);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..20_000 {
            let pc = pool[rng.next() as usize % pool.len()];
            a.clear();
            b.clear();
            t.frames(pc, &mut a).unwrap();
            cache.frames(&t, pc, &mut b).unwrap();
            assert_eq!(a, b, "pc {pc:#x}, {bits} bits");
        }
    }
}
