//! Loading the BPF object at the cost of what it uses: the kernel's BTF is parsed only when the
//! object has CO-RE relocations to resolve against it.

use aya::{Btf, Ebpf, EbpfError, EbpfLoader};
use object::{Object as _, ObjectSection as _};

/// Loads `object` (its maps created, no program verified yet). `Ebpf::load` parses
/// /sys/kernel/btf/vmlinux twice (once in `EbpfLoader::new`, once more for `.btf`), about 70 ms
/// each on Linux 6.18; the kernel's BTF serves only CO-RE relocations (aya-obj
/// `Object::relocate_btf`), which goprobe's programs have none of (they read user memory at
/// offsets from the analysis, and the kernel only through helpers). So it is not parsed at all
/// unless the object has some, then once.
/// `frameless_pool` sizes the `FRAMELESS` pool (see probe/frameless.rs).
pub(super) fn load(object: &[u8], frameless_pool: u32) -> Result<Ebpf, EbpfError> {
    let btf = core_relocations(object)
        .then(|| Btf::from_sys_fs().ok())
        .flatten();
    EbpfLoader::new()
        .btf(btf.as_ref())
        .map_max_entries("FRAMELESS", frameless_pool)
        .load(object)
}

/// Whether the BPF ELF `object` carries CO-RE relocations (`.BTF.ext`'s `core_relo_len`); true
/// when that cannot be told, so the kernel's BTF is then parsed as before.
fn core_relocations(object: &[u8]) -> bool {
    let Ok(file) = object::File::parse(object) else {
        return true;
    };
    let Some(ext) = file.section_by_name(".BTF.ext") else {
        return false; // no BTF.ext: no relocations of any kind
    };
    ext.data().map_or(true, core_relocations_in)
}

/// Whether `.BTF.ext` section data `data` has CO-RE relocations; true when it cannot be read.
fn core_relocations_in(data: &[u8]) -> bool {
    // NB: struct btf_ext_header (tools/lib/bpf/libbpf_internal.h): magic u16 0xeB9F, version u8,
    // flags u8, hdr_len u32, func_info_off/len and line_info_off/len (u32 each), then
    // core_relo_off/len when hdr_len >= 32. Little-endian (bpfel).
    let word = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match (data.get(..2), word(4)) {
        (Some([0x9f, 0xeb]), Some(hdr_len)) if hdr_len < 32 => false,
        (Some([0x9f, 0xeb]), Some(_)) => word(28).is_none_or(|len| len > 0),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goprobes_object_has_no_core_relocations() {
        let object = super::super::BPF_OBJECT;
        if object.is_empty() {
            return; // AYA_BUILD_SKIP: nothing to look at
        }
        assert!(object::File::parse(object).is_ok());
        assert!(!core_relocations(object));
    }

    #[test]
    fn btf_ext_headers() {
        let header = |hdr_len: u32, core_len: u32| {
            let mut h = vec![0x9f, 0xeb, 1, 0];
            for w in [hdr_len, 0, 0, 0, 0, 0, core_len] {
                h.extend_from_slice(&w.to_le_bytes());
            }
            h
        };
        assert!(!core_relocations_in(&header(32, 0)));
        assert!(core_relocations_in(&header(32, 24)));
        // An older header without the CO-RE fields.
        assert!(!core_relocations_in(&header(24, 0)[..24]));
        // Not a BTF.ext header, or cut short: assume relocations.
        assert!(core_relocations_in(b"\0\0\0\0"));
        assert!(core_relocations_in(&header(32, 0)[..20]));
    }
}
