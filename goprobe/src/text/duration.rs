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

/// Parses a duration for people into nanoseconds: a number and a unit, `ns`, `us` (or `µs`),
/// `ms` or `s` (`"10ms"`, `"2.5 ms"`, `"16777216ns"`).
pub fn parse_ns(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return Err(format!("{text:?}: expected a number and ns, us, ms or s")),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and ns, us, ms or s"))?;
    let ns = (n * scale).round();
    if !(0.0..=u64::MAX as f64).contains(&ns) {
        return Err(format!("{text:?}: out of range"));
    }
    Ok(ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_ns("10ms"), Ok(10_000_000));
        assert_eq!(parse_ns(" 2.5 ms"), Ok(2_500_000));
        assert_eq!(parse_ns("16777216ns"), Ok(16_777_216));
        assert_eq!(parse_ns("40us"), Ok(40_000));
        assert_eq!(parse_ns("1s"), Ok(1_000_000_000));
        assert!(parse_ns("10").is_err());
        assert!(parse_ns("ms").is_err());
        assert!(parse_ns("10 minutes").is_err());
    }

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
