//! Reading the Go internal ABI (ABIInternal) from a uprobe's registers and the target's memory.
//!
//! NB: Go ABIInternal on amd64 (src/cmd/compile/abi-internal.md, stable since Go 1.17) passes
//! integer arguments and results in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11 and keeps the
//! current goroutine (`*g`) in R14. Only amd64 is wired up; other architectures fail to read.

use aya_ebpf::{helpers::bpf_probe_read_user, programs::ProbeContext};

/// Failure to read a register or the target's memory; probes drop the event or flag it.
pub struct ReadError;

/// The integer argument/result register `n` (0 = RAX) of a Go ABIInternal call.
#[inline(always)]
pub fn int_reg(ctx: &ProbeContext, n: usize) -> Result<u64, ReadError> {
    #[cfg(bpf_target_arch = "x86_64")]
    {
        // SAFETY: `regs` points at the pt_regs the kernel passed to this program.
        let regs = unsafe { &*ctx.regs };
        return match n {
            0 => Ok(regs.rax),
            1 => Ok(regs.rbx),
            2 => Ok(regs.rcx),
            3 => Ok(regs.rdi),
            4 => Ok(regs.rsi),
            _ => Err(ReadError),
        };
    }
    #[allow(unreachable_code)]
    {
        let _ = (ctx, n);
        Err(ReadError)
    }
}

/// The current goroutine pointer (`R14` on amd64).
#[inline(always)]
pub fn current_g(ctx: &ProbeContext) -> Result<u64, ReadError> {
    #[cfg(bpf_target_arch = "x86_64")]
    {
        // SAFETY: as in `int_reg`.
        return Ok(unsafe { (*ctx.regs).r14 });
    }
    #[allow(unreachable_code)]
    {
        let _ = ctx;
        Err(ReadError)
    }
}

/// Reads a `T` at `addr` in the current (target) process.
#[inline(always)]
pub fn read_user<T>(addr: u64) -> Result<T, ReadError> {
    // SAFETY: bpf_probe_read_user checks the address; a bad one yields an error, never a fault.
    unsafe { bpf_probe_read_user(addr as *const T) }.map_err(|_| ReadError)
}

/// Whether the stack-bound check just before the probed instruction sent (or is about to send)
/// the function to `runtime.morestack`: then it grows its stack and starts again, hitting an
/// entry probe placed on the check's `jbe` a second time.
///
/// NB: the prologue's `cmp rsp|r12, [r14+0x10|0x18]; jbe morestack` sets CF or ZF exactly when
/// the branch is taken (src/cmd/internal/obj/x86/obj6.go `stacksplit`, Go 1.19–1.27). Go 1.19
/// entry sites are that `jbe` (no `push rbp`, see goprobe/src/analysis/binary/disasm.rs); later releases'
/// sites are the `push rbp` after a `jbe` not taken, where both flags are therefore clear. Only
/// meaningful at sites that follow a stack check.
#[inline(always)]
pub fn stack_check_fails(ctx: &ProbeContext) -> bool {
    #[cfg(bpf_target_arch = "x86_64")]
    {
        const CF: u64 = 1;
        const ZF: u64 = 1 << 6;
        // SAFETY: `regs` points at the pt_regs the kernel passed to this program.
        let flags = unsafe { (*ctx.regs).eflags };
        return flags & (CF | ZF) != 0;
    }
    #[allow(unreachable_code)]
    {
        let _ = ctx;
        false
    }
}
