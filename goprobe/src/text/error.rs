//! Errors for people: an error and every source behind it on one line.

/// `e` and its sources, `: `-separated (`what failed: why: deeper why`), as the CLI prints errors.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("attaching")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_source_in_order() {
        let e = Outer(std::io::Error::other("permission denied"));
        assert_eq!(chain(&e), "attaching: permission denied");
    }
}
