//! Finding where to put uprobes inside a Go function, by decoding its x86-64 machine code.
//!
//! NB: never a uretprobe on Go code: a uretprobe rewrites the return address on the goroutine
//! stack, and Go moves and scans goroutine stacks (golang/go#22008; shared/research/go-runtime.md
//! §4.1 reproduces SIGSEGV/SIGILL). Exits are probed with plain uprobes on every RET instead.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// How many instructions of a prologue to look at for the stack-bound check.
const PROLOGUE_WINDOW: usize = 8;

/// Where to probe one function: offsets from its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionProbes {
    /// Offset of the "entry" probe: the `push rbp` after the stack-bound check, or on Go
    /// releases whose prologue has no `push rbp` the `jbe` of the stack-bound check.
    pub entry: u64,
    /// Offsets of every RET instruction.
    pub rets: Vec<u64>,
}

/// Why a function's code could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DisasmError {
    #[error("no RET instruction found")]
    NoRet,
    #[error("invalid instruction at +{0:#x}")]
    Invalid(u64),
}

/// Decodes `code` (a whole function, from its entry) and picks the probe sites.
///
/// NB: Go (1.21–1.27, cmd/internal/obj/x86 `stacksplit`) starts functions with
/// `[lea r12,[rsp-N];] cmp rsp|r12,[r14+0x10|0x18]; jbe morestack; push rbp; mov rbp,rsp`.
/// A probe at +0 (`cmp`) is single-stepped out of line (≈10× slower on this VM, go-runtime.md
/// §4.3) and fires again when morestack re-enters the function. `push rbp` is emulated by the
/// kernel, executes once per call, leaves the argument registers untouched, and lets the kernel
/// recover the caller for complete stacks.
///
/// NB: Go 1.19 (go1.19.8 src/cmd/internal/obj/x86/obj6.go:667-704, `preprocess`) saves the
/// frame pointer with `sub rsp,N; mov [rsp+N-8],rbp; lea rbp,[rsp+N-8]` after the `jbe`: none of
/// these is emulated (a tracefs uprobe on go1.19.8 runtime.mallocgc cost 15–30 µs per hit at +0 and at
/// the `sub`, about 1.3 µs at the `jbe`). There the probe goes on the `jbe` itself: emulated (a
/// conditional branch), argument registers untouched, taken once per call except when morestack
/// re-enters the function, which it cannot for g0 functions such as `stopTheWorldWithSema`
/// (asm_amd64.s `morestack` aborts on g0). Functions with neither are probed at +0.
pub fn probe_sites(code: &[u8], entry_vaddr: u64) -> Result<FunctionProbes, DisasmError> {
    let mut decoder = Decoder::with_ip(64, code, entry_vaddr, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut entry = None;
    let mut stack_check_branch = None;
    let mut after_stack_check = false;
    let mut rets = Vec::new();
    let mut index = 0usize;
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        let offset = insn.ip() - entry_vaddr;
        if insn.is_invalid() {
            // NB: Go pads between functions with INT3 (0xCC), never data; an invalid
            // instruction inside the symbol's size means we are not reading Go code.
            return Err(DisasmError::Invalid(offset));
        }
        if index < PROLOGUE_WINDOW {
            if entry.is_none() && is_push_rbp(&insn) {
                entry = Some(offset);
            }
            if after_stack_check && stack_check_branch.is_none() && is_jbe(&insn) {
                stack_check_branch = Some(offset);
            }
            after_stack_check = is_stack_check(&insn);
        }
        if insn.mnemonic() == Mnemonic::Ret {
            rets.push(offset);
        }
        index += 1;
    }
    if rets.is_empty() {
        return Err(DisasmError::NoRet);
    }
    Ok(FunctionProbes {
        entry: entry.or(stack_check_branch).unwrap_or(0),
        rets,
    })
}

/// The direct calls in `code` (a whole function from its entry): (offset of the `call`,
/// offset of the instruction after it, absolute target).
///
/// NB: a `call rel32` is emulated by the kernel's x86 uprobes (arch/x86/kernel/uprobes.c
/// `branch_setup_xol_ops`), so a probe on one costs what an entry probe on `push rbp` costs;
/// the instruction after it is single-stepped like a RET.
pub fn calls(code: &[u8], entry_vaddr: u64) -> Result<Vec<(u64, u64, u64)>, DisasmError> {
    let mut decoder = Decoder::with_ip(64, code, entry_vaddr, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut out = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        let offset = insn.ip() - entry_vaddr;
        if insn.is_invalid() {
            return Err(DisasmError::Invalid(offset));
        }
        if insn.code() == Code::Call_rel32_64 {
            out.push((
                offset,
                insn.next_ip() - entry_vaddr,
                insn.near_branch_target(),
            ));
        }
    }
    Ok(out)
}

/// `cmp rsp|r12, [r14+0x10|0x18]`: the stack-bound check against `g.stackguard0|1`.
///
/// NB: R14 is g in ABIInternal; stackguard0 is at g+0x10, stackguard1 at g+0x18
/// (src/runtime/runtime2.go `type g struct { stack stack; stackguard0, stackguard1 uintptr }`).
fn is_stack_check(insn: &Instruction) -> bool {
    insn.mnemonic() == Mnemonic::Cmp
        && insn.op0_kind() == OpKind::Register
        && matches!(insn.op0_register(), Register::RSP | Register::R12)
        && insn.op1_kind() == OpKind::Memory
        && insn.memory_base() == Register::R14
        && insn.memory_index() == Register::None
        && matches!(insn.memory_displacement64(), 0x10 | 0x18)
}

/// `jbe rel8|rel32`: the branch to morestack that follows the stack-bound check.
fn is_jbe(insn: &Instruction) -> bool {
    matches!(insn.code(), Code::Jbe_rel8_64 | Code::Jbe_rel32_64)
}

fn is_push_rbp(insn: &Instruction) -> bool {
    insn.code() == Code::Push_r64
        && insn.op0_kind() == OpKind::Register
        && insn.op0_register() == Register::RBP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_prologue_and_rets() {
        // cmp rsp,[r14+0x10]; jbe +0x10; push rbp; mov rbp,rsp; mov eax,0xc3c3c3c3;
        // pop rbp; ret; nop; ret; int3 padding
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x76, 0x10, 0x55, 0x48, 0x89, 0xe5, 0xb8, 0xc3, 0xc3, 0xc3,
            0xc3, 0x5d, 0xc3, 0x90, 0xc3, 0xcc,
        ];
        let p = probe_sites(&code, 0x401000).unwrap();
        assert_eq!(p.entry, 6);
        // The 0xc3 bytes inside the mov immediate are not RETs.
        assert_eq!(p.rets, vec![16, 18]);
    }

    #[test]
    fn go119_prologue_probes_the_stack_check_branch() {
        // go1.19.8 runtime.startTheWorldWithSema: cmp rsp,[r14+0x10]; jbe rel32;
        // sub rsp,0x58; mov [rsp+0x50],rbp; lea rbp,[rsp+0x50]; ...; add rsp,0x58; ret
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xb4, 0x01, 0x00, 0x00, 0x48, 0x83, 0xec, 0x58,
            0x48, 0x89, 0x6c, 0x24, 0x50, 0x48, 0x8d, 0x6c, 0x24, 0x50, 0x48, 0x83, 0xc4, 0x58,
            0xc3,
        ];
        let p = probe_sites(&code, 0x43ad60).unwrap();
        assert_eq!(
            p,
            FunctionProbes {
                entry: 4,
                rets: vec![28]
            }
        );
    }

    #[test]
    fn a_jbe_without_stack_check_is_not_an_entry() {
        // cmp rax,rbx; jbe +0; ret
        let p = probe_sites(&[0x48, 0x39, 0xd8, 0x76, 0x00, 0xc3], 0).unwrap();
        assert_eq!(p.entry, 0);
    }

    #[test]
    fn no_prologue_means_entry_at_zero() {
        let p = probe_sites(&[0x31, 0xc0, 0xc3], 0).unwrap();
        assert_eq!(
            p,
            FunctionProbes {
                entry: 0,
                rets: vec![2]
            }
        );
    }

    #[test]
    fn direct_calls_and_what_follows() {
        // push rbp; call +0 (to 0x106); mov rbp,rsp; call rax; ret
        let code = [
            0x55, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x48, 0x89, 0xe5, 0xff, 0xd0, 0xc3,
        ];
        // The indirect `call rax` is not a direct call.
        assert_eq!(calls(&code, 0x100).unwrap(), vec![(1, 6, 0x106)]);
    }

    #[test]
    fn errors() {
        assert_eq!(probe_sites(&[0x90, 0x90], 0), Err(DisasmError::NoRet));
        assert_eq!(probe_sites(&[0x06], 0), Err(DisasmError::Invalid(0)));
    }
}
