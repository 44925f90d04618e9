//! Go function names as tables abbreviate them; shared by this crate's golden tests and the
//! agent's symbolizer tests (through `#[path]`).

/// `name` with each outermost bracket group (type arguments, array lengths) replaced by
/// `[...]`, the way Go linkers abbreviate some names in the function table
/// (cmd/link/internal/ld/pcln.go).
pub fn abbreviate_brackets(name: &str) -> String {
    let (mut out, mut depth) = (String::new(), 0u32);
    for c in name.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push_str("[...]");
                }
                depth += 1;
            }
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}
