//! goprobe's kernel-side programs: uprobes on the Go runtime, and perf-event programs
//! (page faults, CPU samples).
//!
//! One module per signal. Each `#[uprobe]` entry point is a thin wrapper over a `try_*` function
//! that returns `Result`; no panics, no unwraps. All structs that reach user space are defined in
//! `goprobe-common`.
#![no_std]
#![no_main]
// NB: `asm!` on the BPF target (maps.rs `add`, the atomic add) is behind this gate; the eBPF
// crate is built with nightly anyway (`-Z build-std`, see goprobe/build.rs).
#![feature(asm_experimental_arch)]

mod alloc;
mod budget;
mod cycle;
mod gc;
mod goabi;
mod goroutines;
mod lifecycle;
mod maps;
mod perf;
mod pidns;
mod sites;
mod stacks;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // NB: unreachable in a verified program; the verifier rejects code that could get here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
