//! Durations for people, from nanoseconds (the unit of every timestamp goprobe reads).

/// Formats nanoseconds for people: `850ns`, `12.3µs`, `4.56ms`, `1.20s`.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// Nanoseconds in milliseconds with three decimals, spaced: `0.250 ms` (doctor's longest pause,
/// comparable across runs in one unit).
pub fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_ns(850), "850ns");
        assert_eq!(human_ns(12_345), "12.3µs");
        assert_eq!(human_ns(4_560_000), "4.56ms");
        assert_eq!(human_ns(1_200_000_000), "1.20s");
    }

    #[test]
    fn milliseconds() {
        assert_eq!(ms(0), "0.000 ms");
        assert_eq!(ms(250_000), "0.250 ms");
        assert_eq!(ms(1_234_567_890), "1234.568 ms");
    }
}
