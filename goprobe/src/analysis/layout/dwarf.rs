//! Runtime struct field offsets from the target's own DWARF, when it has DWARF.
//!
//! Preferred over the per-release table in [`super`]: GOEXPERIMENTs, `-race` and the
//! occasional point release move runtime fields, and the binary's DWARF is the one source that
//! is always right about itself. Stripped binaries (`-ldflags=-w` or `-s`) fall back to the table.

use std::{borrow::Cow, collections::HashMap};

use gimli::{AttributeValue, EndianSlice, RunTimeEndian};
use object::{Object, ObjectSection};

use super::{RuntimeLayout, dwarf_fields as all_fields};

/// Field offsets found in DWARF, keyed by (struct, field).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DwarfFields(HashMap<(&'static str, &'static str), u32>);

impl DwarfFields {
    /// Reads the offsets of every field goprobe reads ([`super::dwarf_fields`]) from `data`'s DWARF. `Ok(None)` when it has no DWARF.
    pub fn read(data: &[u8]) -> Result<Option<Self>, gimli::Error> {
        let Ok(file) = object::File::parse(data) else {
            return Ok(None);
        };
        if file.section_by_name(".debug_info").is_none() {
            return Ok(None);
        }
        let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
            Ok(file
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .unwrap_or(Cow::Borrowed(&[])))
        };
        let sections = gimli::DwarfSections::load(load)?;
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let dwarf = sections.borrow(|s| EndianSlice::new(s, endian));
        let mut found = HashMap::new();
        let mut units = dwarf.units();
        while let Some(header) = units.next()? {
            let unit = dwarf.unit(header)?;
            let mut cursor = unit.entries();
            // The wanted struct we are inside of, and its depth.
            let mut current: Option<(&'static str, isize)> = None;
            while cursor.next_dfs()?.is_some() {
                let depth = cursor.depth();
                let Some(entry) = cursor.current() else {
                    continue;
                };
                if current.is_some_and(|(_, d)| depth <= d) {
                    current = None;
                }
                let name = || -> Option<String> {
                    let attr = entry.attr_value(gimli::DW_AT_name)?;
                    let s = dwarf.attr_string(&unit, attr).ok()?;
                    Some(String::from_utf8_lossy(s.slice()).into_owned())
                };
                match entry.tag() {
                    gimli::DW_TAG_structure_type => {
                        let n = name();
                        current = all_fields()
                            .find(|(s, _)| n.as_deref() == Some(*s))
                            .map(|(s, _)| (*s, depth));
                    }
                    gimli::DW_TAG_member => {
                        let Some((st, d)) = current else { continue };
                        if depth != d + 1 {
                            continue;
                        }
                        let Some(field) = name() else { continue };
                        let Some(&(s, f)) = all_fields().find(|(s, f)| *s == st && *f == field)
                        else {
                            continue;
                        };
                        if let Some(off) =
                            member_offset(entry.attr_value(gimli::DW_AT_data_member_location))
                        {
                            found.insert((s, f), off);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Some(Self(found)))
    }

    /// The offset of `struct.field`, if DWARF has it.
    pub fn get(&self, st: &str, field: &str) -> Option<u32> {
        self.0.get(&(st, field)).copied()
    }

    /// `table` with every field DWARF knows replaced by DWARF's offset.
    pub fn apply(&self, table: RuntimeLayout) -> RuntimeLayout {
        let get = |s, f, fallback| self.get(s, f).unwrap_or(fallback);
        RuntimeLayout {
            work_cycles: get("runtime.workType", "cycles", table.work_cycles),
            work_user_forced: get("runtime.workType", "userForced", table.work_user_forced),
            work_pause_ns: get("runtime.workType", "pauseNS", table.work_pause_ns),
            work_pause_start: table
                .work_pause_start
                .map(|t| get("runtime.workType", "pauseStart", t)),
            memstats_numgc: get("runtime.mstats", "numgc", table.memstats_numgc),
            g_m: get("runtime.g", "m", table.g_m),
            m_curg: get("runtime.m", "curg", table.m_curg),
            m_preemptoff: table
                .m_preemptoff
                .map(|t| get("runtime.m", "preemptoff", t)),
            stw_abi: table.stw_abi,
            cycle: self.apply_cycle(table.cycle),
            sched: self.apply_sched(table.sched),
            alloc: self.apply_alloc(table.alloc),
        }
    }

    /// Number of fields found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no field was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn member_offset(v: Option<AttributeValue<EndianSlice<'_, RunTimeEndian>>>) -> Option<u32> {
    match v? {
        AttributeValue::Udata(u) => u32::try_from(u).ok(),
        AttributeValue::Data1(u) => Some(u32::from(u)),
        AttributeValue::Data2(u) => Some(u32::from(u)),
        AttributeValue::Data4(u) => Some(u),
        AttributeValue::Data8(u) => u32::try_from(u).ok(),
        AttributeValue::Sdata(s) => u32::try_from(s).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_dwarf_is_none_not_an_error() {
        assert_eq!(DwarfFields::read(b"not an elf").unwrap(), None);
    }
}
