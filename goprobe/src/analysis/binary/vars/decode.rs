//! The RIP-relative memory operands of one function, classified by how the instruction uses them.
//!
//! NB: the Go linker (cmd/link, amd64, Go 1.19–1.27) addresses every package-level variable of a
//! non-PIE *and* a PIE executable with a RIP-relative operand (`lea r,[rip+X]`, `mov r,[rip+X]`,
//! …): the runtime is never built with `-dynlink`, so there is no GOT indirection for its own
//! variables. Decoding a runtime function therefore yields the link-time addresses it touches.

use iced_x86::{ConditionCode, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// How an instruction uses its RIP-relative memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// `lea r64,[rip+X]`: the address is taken (a pointer receiver or argument).
    Lea,
    /// `mov`/`movzx`/`movsx`/`movsxd r,[rip+X]`, or an ALU instruction (`add`, `sub`, `and`,
    /// `or`, `xor`, `cmp`) with a register destination and this memory source: a read of this
    /// many bytes into a computation (the compiler folds `x - v` into `sub r,[v]`).
    Load(u8),
    /// `mov [rip+X],r|imm` writing this many bytes.
    Store(u8),
    /// `inc [rip+X]` of this many bytes.
    Inc(u8),
    /// `setcc byte [rip+X]`: a bool computed from a comparison.
    SetCc,
    /// `cmp [rip+X],r|imm` of this many bytes.
    Cmp(u8),
    /// `lea r,[rip+X]` followed within [`ATOMIC_WINDOW`] instructions by a `lock`-prefixed or
    /// `xchg` instruction on `[r]` of this many bytes: an atomic read-modify-write or store
    /// (`atomic.Xadd64`, `.Add`, `atomic.Store*` compile to this).
    Atomic(u8),
}

/// How many instructions after a `lea` its register is looked for in an atomic instruction.
pub const ATOMIC_WINDOW: usize = 3;

/// One RIP-relative use, in instruction order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RipUse {
    /// How the instruction uses the operand.
    pub access: Access,
    /// The absolute link-time address the operand refers to.
    pub target: u64,
}

/// Why a function's code could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid instruction at {addr:#x}")]
pub struct InvalidCode {
    /// Link-time address of the undecodable bytes.
    pub addr: u64,
}

/// Decodes `code` (a whole function at link-time address `addr`) and returns every classified
/// RIP-relative memory use. Instructions of other kinds are skipped.
pub fn rip_uses(code: &[u8], addr: u64) -> Result<Vec<RipUse>, InvalidCode> {
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut uses = Vec::new();
    // The last `lea r,[rip+X]`: (r, X, instructions since).
    let mut lea: Option<(Register, u64, usize)> = None;
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            // NB: Go pads between functions with INT3 and never puts data in .text (cmd/link
            // asmb, amd64): an invalid instruction means these bytes are not Go code.
            return Err(InvalidCode { addr: insn.ip() });
        }
        if let Some((reg, target, age)) = lea.as_mut() {
            *age += 1;
            if *age > ATOMIC_WINDOW {
                lea = None;
            } else if let Some(size) = atomic_on(&insn, *reg) {
                uses.push(RipUse {
                    access: Access::Atomic(size),
                    target: *target,
                });
                lea = None;
            }
        }
        if !insn.is_ip_rel_memory_operand() {
            continue;
        }
        if insn.mnemonic() == Mnemonic::Lea {
            lea = Some((insn.op0_register(), insn.ip_rel_memory_address(), 0));
        }
        if let Some(access) = classify(&insn) {
            uses.push(RipUse {
                access,
                target: insn.ip_rel_memory_address(),
            });
        }
    }
    Ok(uses)
}

/// The operand size of `insn` if it is an atomic instruction on `[reg]` exactly.
fn atomic_on(insn: &Instruction, reg: Register) -> Option<u8> {
    let atomic = insn.has_lock_prefix() || insn.mnemonic() == Mnemonic::Xchg;
    let on_reg = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory)
        && insn.memory_base() == reg
        && insn.memory_index() == Register::None
        && insn.memory_displacement64() == 0;
    if atomic && on_reg {
        u8::try_from(insn.memory_size().size()).ok()
    } else {
        None
    }
}

fn classify(insn: &Instruction) -> Option<Access> {
    let size = u8::try_from(insn.memory_size().size()).ok()?;
    let op0_mem = insn.op0_kind() == OpKind::Memory;
    let op1_mem = insn.op_count() > 1 && insn.op1_kind() == OpKind::Memory;
    match insn.mnemonic() {
        Mnemonic::Lea => Some(Access::Lea),
        Mnemonic::Mov
        | Mnemonic::Movzx
        | Mnemonic::Movsx
        | Mnemonic::Movsxd
        | Mnemonic::Add
        | Mnemonic::Sub
        | Mnemonic::And
        | Mnemonic::Or
        | Mnemonic::Xor
        | Mnemonic::Cmp
            if op1_mem && insn.op0_kind() == OpKind::Register =>
        {
            Some(Access::Load(size))
        }
        Mnemonic::Mov if op0_mem => Some(Access::Store(size)),
        Mnemonic::Inc if op0_mem => Some(Access::Inc(size)),
        Mnemonic::Cmp if op0_mem => Some(Access::Cmp(size)),
        // SETcc is the only instruction with a condition code and a 1-byte memory destination.
        _ if op0_mem && size == 1 && insn.condition_code() != ConditionCode::None => {
            Some(Access::SetCc)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_rip_relative_operands() {
        // lea rax,[rip+0x10]; mov ecx,[rip+0x20]; movsxd rcx,[rip+0]; mov [rip+4],rax;
        // inc dword [rip+8]; sete byte [rip+1]; cmp byte [rip+2],0; mov eax,[rbx] (not RIP); ret
        let code = [
            0x48, 0x8d, 0x05, 0x10, 0, 0, 0, // lea   (ends at 0x1007)
            0x8b, 0x0d, 0x20, 0, 0, 0, // mov ecx (ends at 0x100d)
            0x48, 0x63, 0x0d, 0, 0, 0, 0, // movsxd (ends at 0x1014)
            0x48, 0x89, 0x05, 4, 0, 0, 0, // mov [rip+4],rax (ends at 0x101b)
            0xff, 0x05, 8, 0, 0, 0, // inc dword (ends at 0x1021)
            0x0f, 0x94, 0x05, 1, 0, 0, 0, // sete (ends at 0x1028)
            0x80, 0x3d, 2, 0, 0, 0, 0, // cmp byte [rip+2],0 (ends at 0x102f)
            0x8b, 0x03, // mov eax,[rbx]
            0xc3,
        ];
        let uses = rip_uses(&code, 0x1000).unwrap();
        let want = [
            (Access::Lea, 0x1017),
            (Access::Load(4), 0x102d),
            (Access::Load(4), 0x1014),
            (Access::Store(8), 0x101f),
            (Access::Inc(4), 0x1029),
            (Access::SetCc, 0x1029),
            (Access::Cmp(1), 0x1031),
        ];
        let got: Vec<_> = uses.iter().map(|u| (u.access, u.target)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn lea_then_atomic() {
        // lea rdx,[rip+0x100]; lock xadd [rdx],rcx; lea rsi,[rip+0x200]; mov ecx,1;
        // xchg [rsi],ecx; lea rax,[rip+0]; lock xadd [rax+8],rcx (not on [rax])
        let code = [
            0x48, 0x8d, 0x15, 0, 1, 0, 0, // ends at 7
            0xf0, 0x48, 0x0f, 0xc1, 0x0a, // ends at 12
            0x48, 0x8d, 0x35, 0, 2, 0, 0, // ends at 19
            0xb9, 1, 0, 0, 0, // ends at 24
            0x87, 0x0e, // ends at 26
            0x48, 0x8d, 0x05, 0, 0, 0, 0, // ends at 33
            0xf0, 0x48, 0x0f, 0xc1, 0x48, 0x08,
        ];
        let uses = rip_uses(&code, 0).unwrap();
        let atomics: Vec<_> = uses
            .iter()
            .filter(|u| matches!(u.access, Access::Atomic(_)))
            .map(|u| (u.access, u.target))
            .collect();
        assert_eq!(
            atomics,
            [(Access::Atomic(8), 0x107), (Access::Atomic(4), 0x213)]
        );
    }

    #[test]
    fn invalid_code_is_an_error() {
        // 0x06 (push es) is invalid in 64-bit mode.
        assert_eq!(
            rip_uses(&[0x90, 0x06], 0x10),
            Err(InvalidCode { addr: 0x11 })
        );
    }
}
