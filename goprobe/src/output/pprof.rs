//! pprof profiles (`NAME.pb.gz`): gzipped `profile.proto` (github.com/google/pprof
//! proto/profile.proto), as `go tool pprof` and Pyroscope read them.
//!
//! The encoder is written out here (the message is small and stable) rather than generated.
//! Each distinct address is one `Location` whose `Line`s are its frames, inlined calls first and
//! the function containing the address last, as pprof represents inlining; each location points
//! at the mapping it lies in, with the binary's build id.

use std::{collections::HashMap, io::Write as _};

use super::{
    OutputError, Profile, ValueType,
    render::{File, Input, Output},
};

/// The `pprof` output: `NAME.pb.gz` per profile (every sample type in one file).
pub struct Pprof;

impl Output for Pprof {
    fn name(&self) -> &'static str {
        "pprof"
    }

    fn profile(&self, _input: &Input<'_>, p: &Profile) -> Result<Vec<File>, OutputError> {
        Ok(vec![(format!("{}.pb.gz", p.spec.name), encode_gz(p))])
    }
}

/// `p` as an uncompressed `profile.proto` message.
pub fn encode(p: &Profile) -> Vec<u8> {
    let mut strings = Strings::default();
    let mut out = Pb::default();
    let value_type = |pb: &mut Pb, strings: &mut Strings, field: u32, v: &ValueType| {
        let (kind, unit) = (strings.id(&v.kind), strings.id(&v.unit));
        pb.msg(field, |m| {
            m.uint(1, kind);
            m.uint(2, unit);
        });
    };
    for t in &p.spec.sample_types {
        value_type(&mut out, &mut strings, 1, t);
    }
    let mut functions: HashMap<(String, String), u64> = HashMap::new();
    let mut function_msgs = Pb::default();
    let mut locations: HashMap<(u64, *const ()), u64> = HashMap::new();
    let mut location_msgs = Pb::default();
    for s in &p.samples {
        let mut ids = Vec::with_capacity(s.locations.len());
        for loc in &s.locations {
            let key = (loc.address, loc.frames.as_ptr().cast::<()>());
            if let Some(&id) = locations.get(&key) {
                ids.push(id);
                continue;
            }
            let id = locations.len() as u64 + 1;
            locations.insert(key, id);
            ids.push(id);
            let mut lines = Vec::with_capacity(loc.frames.len());
            for f in loc.frames.iter() {
                let file = f.file.as_deref().unwrap_or("").to_owned();
                let fkey = (f.function.to_string(), file);
                let fid = match functions.get(&fkey) {
                    Some(&fid) => fid,
                    None => {
                        let fid = functions.len() as u64 + 1;
                        let (name, file) = (strings.id(&fkey.0), strings.id(&fkey.1));
                        function_msgs.msg(5, |m| {
                            m.uint(1, fid);
                            m.uint(2, name);
                            m.uint(3, name);
                            m.uint(4, file);
                        });
                        functions.insert(fkey, fid);
                        fid
                    }
                };
                lines.push((fid, u64::from(f.line)));
            }
            let mapping = p
                .mappings
                .iter()
                .position(|m| (m.start..m.limit).contains(&loc.address))
                .map_or(0, |i| i as u64 + 1);
            location_msgs.msg(4, |m| {
                m.uint(1, id);
                m.uint(2, mapping);
                m.uint(3, loc.address);
                for &(fid, line) in &lines {
                    m.msg(4, |l| {
                        l.uint(1, fid);
                        l.uint(2, line);
                    });
                }
            });
        }
        out.msg(2, |m| {
            m.packed(1, ids.iter().copied());
            m.packed(2, s.values.iter().map(|&v| v as u64));
        });
    }
    for (i, mp) in p.mappings.iter().enumerate() {
        let (file, build_id) = (strings.id(&mp.path), strings.id(&mp.build_id));
        out.msg(3, |m| {
            m.uint(1, i as u64 + 1);
            m.uint(2, mp.start);
            m.uint(3, mp.limit);
            m.uint(4, mp.file_offset);
            m.uint(5, file);
            m.uint(6, build_id);
            m.uint(7, 1); // has_functions
            m.uint(8, 1); // has_filenames
            m.uint(9, 1); // has_line_numbers
            m.uint(10, 1); // has_inline_frames
        });
    }
    out.buf.extend_from_slice(&location_msgs.buf);
    out.buf.extend_from_slice(&function_msgs.buf);
    if let Some((t, period)) = &p.spec.period {
        value_type(&mut out, &mut strings, 11, t);
        out.uint(12, *period as u64);
    }
    out.uint(9, p.start_unix_ns as u64);
    out.uint(10, p.duration_ns as u64);
    let default_type = p
        .spec
        .sample_types
        .get(p.spec.default_type)
        .map_or(0, |t| strings.id(&t.kind));
    out.uint(14, default_type);
    // The string table last: every id above is known by now.
    for s in &strings.list {
        out.bytes(6, s.as_bytes());
    }
    out.buf
}

/// `p` encoded and gzipped, as `go tool pprof` expects a `.pb.gz`. Deterministic: the gzip
/// header carries no time.
pub fn encode_gz(p: &Profile) -> Vec<u8> {
    let raw = encode(p);
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

/// The string table: index 0 is the empty string, as the format requires.
struct Strings {
    list: Vec<String>,
    ids: HashMap<String, u64>,
}

impl Default for Strings {
    fn default() -> Self {
        Self {
            list: vec![String::new()],
            ids: HashMap::from([(String::new(), 0)]),
        }
    }
}

impl Strings {
    fn id(&mut self, s: &str) -> u64 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.list.len() as u64;
        self.list.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }
}

/// A protobuf writer: just the wire types profile.proto uses (varint, length-delimited).
#[derive(Default)]
struct Pb {
    buf: Vec<u8>,
}

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    /// A varint field; zero (the default) is left out, as proto3 does.
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v);
        }
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    fn packed(&mut self, field: u32, values: impl Iterator<Item = u64>) {
        let mut inner = Pb::default();
        for v in values {
            inner.varint(v);
        }
        if !inner.buf.is_empty() {
            self.bytes(field, &inner.buf);
        }
    }

    fn msg(&mut self, field: u32, f: impl FnOnce(&mut Pb)) {
        let mut inner = Pb::default();
        f(&mut inner);
        self.bytes(field, &inner.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_base_128_little_endian() {
        let mut pb = Pb::default();
        pb.varint(1);
        pb.varint(300);
        pb.varint(u64::MAX);
        assert_eq!(
            pb.buf,
            [
                1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
    }
}
