//! What one executable file holds, the same for every process that runs it: ELF sections and
//! symbols, Go build info and version, the runtime functions' code (disassembled for probe
//! sites), frameless ranges and the addresses of the runtime variables goprobe reads.

pub mod buildinfo;
pub mod disasm;
pub mod elf;
pub mod frameless;
pub mod symbols;
pub mod vars;
pub mod version;
