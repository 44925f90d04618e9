//! Synthetic functions: agreement, disagreement, garbage and missing code.

use super::*;
use crate::analysis::layout;

const WORK: u64 = 0x57_0000;
const MEMSTATS: u64 = 0x5a_0000;

/// Assembles `op` (opcode and ModRM of a `[rip+disp32]` form) at `at`, pointing at `target`.
fn rip(out: &mut Vec<u8>, base: u64, op: &[u8], imm: &[u8], target: u64) {
    let at = base + out.len() as u64;
    let end = at + (op.len() + 4 + imm.len()) as u64;
    let disp = i32::try_from(target as i64 - end as i64).unwrap();
    out.extend_from_slice(op);
    out.extend_from_slice(&disp.to_le_bytes());
    out.extend_from_slice(imm);
}

const MOV_EAX: &[u8] = &[0x8b, 0x05];
const SETE: &[u8] = &[0x0f, 0x94, 0x05];
const LEA_RAX: &[u8] = &[0x48, 0x8d, 0x05];
const INC_DWORD: &[u8] = &[0xff, 0x05];
const CMP_BYTE: &[u8] = &[0x80, 0x3d];

struct Binary(HashMap<&'static str, (u64, Vec<u8>)>);

impl Binary {
    fn new(l: &RuntimeLayout, user_forced_skew: u64) -> Self {
        let mut funcs = HashMap::new();
        let mut f = |name, base, build: &dyn Fn(&mut Vec<u8>, u64)| {
            let mut code = Vec::new();
            build(&mut code, base);
            code.push(0xc3);
            funcs.insert(name, (base, code));
        };
        let cycles = WORK + u64::from(l.work_cycles);
        let numgc = MEMSTATS + u64::from(l.memstats_numgc);
        let user_forced = WORK + u64::from(l.work_user_forced);
        f("runtime.GC", 0x41_0000, &|c, b| {
            rip(c, b, MOV_EAX, &[], cycles);
            rip(c, b, MOV_EAX, &[], 0x58_0014); // another 32-bit load (sweep.active)
            rip(c, b, MOV_EAX, &[], cycles);
        });
        f("runtime.gcStart", 0x42_0000, &|c, b| {
            rip(c, b, LEA_RAX, &[], WORK + 0x20);
            rip(c, b, SETE, &[], user_forced + user_forced_skew);
        });
        f("runtime.readmemstats_m", 0x43_0000, &|c, b| {
            rip(c, b, LEA_RAX, &[], 0x4c_e238); // a funcval
            rip(c, b, LEA_RAX, &[], MEMSTATS);
            rip(c, b, MOV_EAX, &[], numgc);
            rip(c, b, MOV_EAX, &[], numgc + 4);
        });
        f("runtime.gcMarkTermination", 0x44_0000, &|c, b| {
            rip(c, b, CMP_BYTE, &[0], user_forced); // if work.userForced
            rip(c, b, INC_DWORD, &[], numgc + 4); // numforcedgc++
            rip(c, b, INC_DWORD, &[], numgc);
        });
        Self(funcs)
    }

    fn code(&self, name: &str) -> Option<FunctionCode<'_>> {
        self.0
            .get(name)
            .map(|(addr, code)| FunctionCode { addr: *addr, code })
    }
}

/// A distinct, 16-byte aligned entry address per function name (FNV-1a).
fn entry_of(name: &str) -> u64 {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    0x40_0000 + (h & 0xf_fff0)
}

/// Every function some recipe reads.
const FUNCTIONS: &[&str] = &[
    "runtime.GC",
    "runtime.gcStart",
    "runtime.gcTrigger.test",
    "runtime.gcMarkTermination",
    "runtime.putfull",
    "runtime.gcDrain",
    "runtime.gcWaitOnMark",
    "runtime.readmemstats_m",
    "runtime.(*mcache).refill",
    "runtime.(*mheap).allocSpan",
];

fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    })
}

fn go(v: &str) -> GoVersion {
    GoVersion::parse(v).unwrap()
}

#[test]
fn two_agreeing_recipes_locate_work_and_memstats() {
    for minor in [21, 25, 27] {
        let l = layout::for_minor(minor).unwrap();
        let bin = Binary::new(&l, 0);
        let vars = locate(&|n| bin.code(n), &go(&format!("go1.{minor}.1")), &l).unwrap();
        assert_eq!((vars.work, vars.memstats), (WORK, MEMSTATS), "1.{minor}");
        assert_eq!(vars.allglen, None);
        assert_eq!(vars.evidence.len(), 2);
        // work: GC, gcStart, gcMarkTermination; memstats: readmemstats_m, gcMarkTermination.
        assert_eq!(vars.evidence[0].recipes.len(), 3);
        assert_eq!(vars.evidence[1].recipes.len(), 2);
    }
}

#[test]
fn disagreeing_recipes_are_an_error_not_a_guess() {
    let l = layout::for_minor(27).unwrap();
    let bin = Binary::new(&l, 8);
    let err = locate(&|n| bin.code(n), &go("go1.27.3"), &l).unwrap_err();
    assert!(
        matches!(
            err,
            VarsError::Disagree {
                symbol: "runtime.work",
                ..
            }
        ),
        "{err}"
    );
    // The message lists each recipe's candidates.
    assert!(err.to_string().contains("runtime.GC: first"), "{err}");
}

#[test]
fn a_wrong_layout_is_an_error() {
    let l = layout::for_minor(27).unwrap();
    let bin = Binary::new(&l, 0);
    // Go 1.21's offsets applied to code built for 1.27's.
    let wrong = layout::for_minor(21).unwrap();
    assert!(matches!(
        locate(&|n| bin.code(n), &go("go1.27.3"), &wrong),
        Err(VarsError::Disagree { .. })
    ));
}

#[test]
fn garbage_code_is_an_error() {
    let l = layout::for_minor(23).unwrap();
    for seed in 1..=32u64 {
        // Random bytes, different in every function.
        let garbage: HashMap<&str, Vec<u8>> = FUNCTIONS
            .iter()
            .map(|&n| {
                (
                    n,
                    xorshift(seed ^ entry_of(n))
                        .take(4096)
                        .map(|x| x as u8)
                        .collect(),
                )
            })
            .collect();
        let code = |name: &str| {
            Some(FunctionCode {
                addr: entry_of(name),
                code: garbage.get(name)?,
            })
        };
        let err = locate(&code, &go("go1.23.9"), &l).unwrap_err();
        assert!(
            matches!(
                err,
                VarsError::InvalidCode { .. } | VarsError::Disagree { .. }
            ),
            "seed {seed}: {err}"
        );
        // Valid code made only of the instruction forms the recipes look for, with random
        // operands in a 64 KiB window: no address may be agreed on.
        let valid: HashMap<&str, Vec<u8>> = FUNCTIONS
            .iter()
            .map(|&n| {
                let base = entry_of(n);
                let mut rng = xorshift(seed.wrapping_mul(31) ^ base);
                let mut c = Vec::new();
                for _ in 0..256 {
                    let (op, imm): (&[u8], &[u8]) = match rng.next().unwrap_or(0) % 6 {
                        0 => (LEA_RAX, &[]),
                        1 => (MOV_EAX, &[]),
                        2 => (SETE, &[]),
                        3 => (INC_DWORD, &[]),
                        4 => (CMP_BYTE, &[0]),
                        _ => (&[0x48, 0x83, 0x3d], &[0]), // cmp qword [rip+X],0
                    };
                    let target = 0x57_0000 + rng.next().unwrap_or(0) % 0x1_0000;
                    rip(&mut c, base, op, imm, target);
                }
                c.push(0xc3);
                (n, c)
            })
            .collect();
        let code = |name: &str| {
            Some(FunctionCode {
                addr: entry_of(name),
                code: valid.get(name)?,
            })
        };
        let err = locate(&code, &go("go1.23.9"), &l).unwrap_err();
        assert!(
            matches!(err, VarsError::Disagree { .. }),
            "seed {seed}: {err}"
        );
    }
    // Valid code that never touches the variables.
    let nops = [0x90u8; 64];
    let code = |name: &str| {
        Some(FunctionCode {
            addr: entry_of(name),
            code: &nops,
        })
    };
    let err = locate(&code, &go("go1.23.9"), &l).unwrap_err();
    assert!(matches!(err, VarsError::Disagree { .. }), "{err}");
    // The same function under every name is one witness, not several.
    let code = |_: &str| {
        Some(FunctionCode {
            addr: 0x40_1000,
            code: &nops,
        })
    };
    let err = locate(&code, &go("go1.23.9"), &l).unwrap_err();
    assert!(
        matches!(err, VarsError::TooFewRecipes { ran: 1, .. }),
        "{err}"
    );
}

#[test]
fn one_recipe_is_not_enough() {
    let l = layout::for_minor(25).unwrap();
    let bin = Binary::new(&l, 0);
    let only_gc = |n: &str| (n == "runtime.GC").then(|| bin.code(n)).flatten();
    let err = locate(&only_gc, &go("go1.25.5"), &l).unwrap_err();
    assert!(
        matches!(err, VarsError::TooFewRecipes { ran: 1, .. }),
        "{err}"
    );
}

#[test]
fn unchecked_releases_are_refused() {
    let l = layout::for_minor(27).unwrap();
    let bin = Binary::new(&l, 0);
    for v in ["go1.20.14", "go1.28.0", "go1.18"] {
        let err = locate(&|n| bin.code(n), &go(v), &l).unwrap_err();
        assert!(matches!(err, VarsError::Unsupported { .. }), "{v}: {err}");
    }
}
