//! Byte quantities in binary units (KiB = 1 << 10, MiB = 1 << 20, GiB = 1 << 30 bytes), as the
//! Go runtime's own MemStats and gctrace count them.

/// Bytes in a KiB.
pub const KIB: u64 = 1 << 10;
/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;
/// Bytes in a GiB.
pub const GIB: u64 = 1 << 30;

/// The units [`human`] and [`human_spaced`] choose from, each 1024 times the one before.
const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

/// `bytes` in the largest unit of `UNITS[..=max]` that it reaches: (value, unit index).
fn scaled(bytes: u64, max: usize) -> (f64, usize) {
    let mut v = bytes as f64;
    let mut unit = 0;
    // NB: dividing by a power of two is exact, so this equals `bytes / 1024^unit`.
    while v >= KIB as f64 && unit < max {
        v /= KIB as f64;
        unit += 1;
    }
    (v, unit)
}

/// `bytes` with the largest binary unit it reaches, compact, one decimal: `850B`, `512.0KiB`,
/// `12.3MiB`, `4.7GiB`, `1.2TiB` (the allocation summary).
pub fn human(bytes: u64) -> String {
    match scaled(bytes, UNITS.len() - 1) {
        (_, 0) => format!("{bytes}B"),
        (v, unit) => format!("{v:.1}{}", UNITS[unit]),
    }
}

/// `bytes` with the largest binary unit up to GiB, spaced: `850 B`, `12.3 KiB`, `14.3 MiB`,
/// `4.66 GiB` (two decimals in GiB; index.html's profile totals).
pub fn human_spaced(bytes: u64) -> String {
    match scaled(bytes, 3) {
        (_, 0) => format!("{bytes} B"),
        (v, 3) => format!("{v:.2} GiB"),
        (v, unit) => format!("{v:.1} {}", UNITS[unit]),
    }
}

/// `bytes` in MiB.
pub fn in_mib(bytes: f64) -> f64 {
    bytes / MIB as f64
}

/// `bytes` in MiB with one decimal, spaced: `12.3 MiB` (doctor, the live view's headings; a
/// rate as `format!("{}/s", mib(rate))`).
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", in_mib(bytes))
}

/// `bytes` in MiB with one decimal, compact: `12.3MiB` (the live GC cycle line, like gctrace's
/// `4->5->2 MB`).
pub fn mib_compact(bytes: u64) -> String {
    format!("{:.1}MiB", in_mib(bytes as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_picks_the_unit() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(1024), "1.0KiB");
        assert_eq!(human(512 * KIB), "512.0KiB");
        assert_eq!(human(MIB - 1), "1024.0KiB");
        assert_eq!(human(12 * MIB + 300 * KIB), "12.3MiB");
        assert_eq!(human(5_000_000_000), "4.7GiB");
        assert_eq!(human(3 << 40), "3.0TiB");
        assert_eq!(human(u64::MAX), "16777216.0TiB");
    }

    #[test]
    fn human_spaced_stops_at_gib() {
        assert_eq!(human_spaced(850), "850 B");
        assert_eq!(human_spaced(1024), "1.0 KiB");
        assert_eq!(human_spaced(15_000_000), "14.3 MiB");
        assert_eq!(human_spaced(GIB - 1), "1024.0 MiB");
        assert_eq!(human_spaced(5_000_000_000), "4.66 GiB");
        assert_eq!(human_spaced(3 << 40), "3072.00 GiB");
    }

    #[test]
    fn mib_is_binary() {
        assert_eq!(mib(MIB as f64), "1.0 MiB");
        // 1e6 bytes is not a MiB.
        assert_eq!(mib(1e6), "1.0 MiB");
        assert_eq!(mib(2e6), "1.9 MiB");
        assert_eq!(mib(64.0 * MIB as f64), "64.0 MiB");
        assert_eq!(format!("{}/s", mib(1.5 * MIB as f64)), "1.5 MiB/s");
        assert_eq!(mib_compact(4 * MIB), "4.0MiB");
        assert_eq!(mib_compact(0), "0.0MiB");
        assert_eq!(in_mib(MIB as f64), 1.0);
    }
}
