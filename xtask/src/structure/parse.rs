//! Reads the paths a Rust source file uses, as text: no rustc, no syn.
//!
//! Comments and string/char literals are blanked first (newlines kept, so line numbers hold),
//! then the rest is cut into identifiers and punctuation, and every path that starts with
//! `crate`, `super`, `self` or (in the binary) `goprobe` is read, `use` trees expanded:
//! `use crate::{a::x, b::{y, z}}` gives `a::x`, `b::y` and `b::z`.

/// Where a path starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// `crate::…`: the root of the file's own crate.
    Crate,
    /// `goprobe::…` in the binary: the library's root.
    Library,
    /// `super::…` (`ups` = how many `super`s) or `self::…` (`ups` = 0), relative to the inline
    /// module the path is written in.
    Relative { ups: usize },
}

/// One path found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedPath {
    pub line: usize,
    pub anchor: Anchor,
    /// The segments after the anchor (`a::b::Item` → `["a", "b", "Item"]`).
    pub segments: Vec<String>,
    /// The names of the inline modules (`mod tests { … }`) the path is written in, outermost
    /// first: `super` counts from there.
    pub inline: Vec<String>,
}

impl UsedPath {
    /// The path as written, its tree expanded: `super::screen::Section`.
    pub fn text(&self) -> String {
        let mut parts: Vec<&str> = match self.anchor {
            Anchor::Crate => vec!["crate"],
            Anchor::Library => vec!["goprobe"],
            Anchor::Relative { ups: 0 } => vec!["self"],
            Anchor::Relative { ups } => vec!["super"; ups],
        };
        parts.extend(self.segments.iter().map(String::as_str));
        parts.join("::")
    }
}

/// `src` with comments and the contents of string and char literals replaced by spaces.
pub fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, s: &[char]| {
        out.extend(s.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
    };
    let mut i = 0;
    while i < c.len() {
        let ident_before = i > 0 && is_ident(c[i - 1]);
        let end = if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len())
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            block_comment_end(&c, i)
        } else if c[i] == '"' {
            quoted_end(&c, i + 1, '"')
        } else if c[i] == '\'' {
            match char_literal_end(&c, i) {
                Some(end) => end,
                None => {
                    out.push('\'');
                    i += 1;
                    continue;
                }
            }
        } else if !ident_before && let Some((open, hashes)) = raw_string_start(&c, i) {
            raw_string_end(&c, open + 1, hashes)
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        blank(&mut out, &c[i..end]);
        i = end;
    }
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The index after the `*/` closing the (possibly nested) comment opened at `start`.
fn block_comment_end(c: &[char], start: usize) -> usize {
    let (mut depth, mut i) = (0usize, start);
    while i + 1 < c.len() {
        match (c[i], c[i + 1]) {
            ('/', '*') => (depth, i) = (depth + 1, i + 2),
            ('*', '/') => {
                (depth, i) = (depth - 1, i + 2);
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    c.len()
}

/// The index after the unescaped `close` at or after `from`.
fn quoted_end(c: &[char], from: usize, close: char) -> usize {
    let mut i = from;
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            ch if ch == close => return i + 1,
            _ => i += 1,
        }
    }
    c.len()
}

/// A char literal (`'x'`, `'\''`, `'\u{7f}'`) starting at `i`, or `None` for a lifetime.
fn char_literal_end(c: &[char], i: usize) -> Option<usize> {
    match (c.get(i + 1), c.get(i + 2)) {
        (Some('\\'), _) => Some(quoted_end(c, i + 1, '\'')),
        (Some(_), Some('\'')) => Some(i + 3),
        _ => None,
    }
}

/// `r"`, `r#"`, `br"`, `cr#"` … at `i`: the index of the opening quote and the number of `#`.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if matches!(c.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        // b"…" and c"…" are plain strings with a prefix.
        return (j > i && c.get(j) == Some(&'"')).then_some((j, usize::MAX));
    }
    let hashes = c[j + 1..].iter().take_while(|&&ch| ch == '#').count();
    (c.get(j + 1 + hashes) == Some(&'"')).then_some((j + 1 + hashes, hashes))
}

/// The index after the raw string whose contents start at `from` (`usize::MAX` hashes: an
/// escaped string with a prefix).
fn raw_string_end(c: &[char], from: usize, hashes: usize) -> usize {
    if hashes == usize::MAX {
        return quoted_end(c, from, '"');
    }
    let mut i = from;
    while i < c.len() {
        if c[i] == '"'
            && c[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&h| h == '#')
                .count()
                == hashes
        {
            return i + 1 + hashes;
        }
        i += 1;
    }
    c.len()
}

/// A token of stripped source: an identifier (or number), `::`, or one punctuation character.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Token {
    text: String,
    line: usize,
}

fn tokens(stripped: &str) -> Vec<Token> {
    let c: Vec<char> = stripped.chars().collect();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < c.len() {
        let start = i;
        if c[i] == '\n' {
            line += 1;
        } else if is_ident(c[i]) {
            while i + 1 < c.len() && is_ident(c[i + 1]) {
                i += 1;
            }
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            i += 1;
        }
        if !c[start].is_whitespace() {
            let text = c[start..=i].iter().collect();
            out.push(Token { text, line });
        }
        i += 1;
    }
    out
}

/// Every path in `src` anchored at `crate`, `super` or `self`, and at `goprobe` when
/// `library_anchor` (the binary's files).
pub fn used_paths(src: &str, library_anchor: bool) -> Vec<UsedPath> {
    let t = tokens(&strip(src));
    let (mut out, mut depth, mut i) = (Vec::new(), 0usize, 0);
    // Inline modules open: (name, the brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    while i < t.len() {
        let text = t[i].text.as_str();
        let next_is = |k: usize, s: &str| t.get(i + k).is_some_and(|n| n.text == s);
        match text {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "mod" if next_is(2, "{") => {
                inline.push((t[i + 1].text.clone(), depth + 1));
                depth += 1;
                i += 3;
                continue;
            }
            _ => {}
        }
        let after_path = i > 0 && (t[i - 1].text == "::" || t[i - 1].text == ".");
        let anchor = match text {
            "crate" => Some(Anchor::Crate),
            "goprobe" if library_anchor => Some(Anchor::Library),
            "self" => Some(Anchor::Relative { ups: 0 }),
            "super" => Some(Anchor::Relative { ups: 1 }),
            _ => None,
        };
        let Some(mut anchor) = anchor.filter(|_| !after_path && next_is(1, "::")) else {
            i += 1;
            continue;
        };
        let (line, mut j) = (t[i].line, i + 2);
        while let Anchor::Relative { ups } = &mut anchor
            && *ups > 0
            && t.get(j).is_some_and(|n| n.text == "super")
            && t.get(j + 1).is_some_and(|n| n.text == "::")
        {
            *ups += 1;
            j += 2;
        }
        let mut trees = Vec::new();
        i = tree(&t, j, Vec::new(), line, &mut trees);
        let names: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
        out.extend(trees.into_iter().map(|(segments, line)| UsedPath {
            line,
            anchor,
            segments,
            inline: names.clone(),
        }));
    }
    out
}

/// Reads the use tree (or plain path) at `i` below `prefix` into `out` as full segment lists,
/// each with its line (`line`, or in a group the line of its own first segment); returns the
/// index after it.
fn tree(
    t: &[Token],
    mut i: usize,
    prefix: Vec<String>,
    line: usize,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let Some(first) = t.get(i) else {
        out.push((prefix, line));
        return i;
    };
    if first.text == "{" {
        i += 1;
        while let Some(element) = t.get(i).filter(|n| n.text != "}") {
            i = tree(t, i, prefix.clone(), element.line, out);
            match t.get(i).map(|n| n.text.as_str()) {
                Some(",") => i += 1,
                Some("}") => {}
                _ => return i,
            }
        }
        return i + 1;
    }
    if first.text == "*"
        || !first
            .text
            .starts_with(|ch: char| ch.is_alphabetic() || ch == '_')
    {
        out.push((prefix, line));
        return i + usize::from(first.text == "*");
    }
    let mut path = prefix;
    if first.text != "self" {
        path.push(first.text.clone());
    }
    i += 1;
    if t.get(i).is_some_and(|n| n.text == "::") && t.get(i + 1).is_some_and(|n| n.text != "<") {
        return tree(t, i + 1, path, line, out);
    }
    if t.get(i).is_some_and(|n| n.text == "as") {
        i += 2;
    }
    out.push((path, line));
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, anchor as written, segments) of every path in `src`.
    fn paths(src: &str, library: bool) -> Vec<(usize, String)> {
        let found = used_paths(src, library);
        found.iter().map(|p| (p.line, p.text())).collect()
    }

    #[test]
    fn grouped_uses_give_every_first_level_name() {
        let src = "use crate::{\n    clock::Clock,\n    signal::{cycle::Phases, gc},\n    \
                   report::{self, Report as R},\n};\nuse super::{*, x::{y, z}};\n";
        assert_eq!(
            paths(src, false),
            [
                (2, "crate::clock::Clock".into()),
                (3, "crate::signal::cycle::Phases".into()),
                (3, "crate::signal::gc".into()),
                (4, "crate::report".into()),
                (4, "crate::report::Report".into()),
                (6, "super".into()),
                (6, "super::x::y".into()),
                (6, "super::x::z".into()),
            ]
        );
    }

    #[test]
    fn paths_in_code_count_and_end_at_generics() {
        let src = "pub(crate) fn f() { let v: Vec<crate::probe::stats::ProgramStats> = \
                   crate::a::B::<T>::new(); }\npub(in crate::report) struct S;\nx.self_y; \
                   a::crate_b; super::super::up::Item;";
        assert_eq!(
            paths(src, false),
            [
                (1, "crate::probe::stats::ProgramStats".into()),
                (1, "crate::a::B".into()),
                (2, "crate::report".into()),
                (3, "super::super::up::Item".into()),
            ]
        );
    }

    #[test]
    fn comments_are_ignored() {
        let src = "// use crate::probe;\n/// [`crate::probe::Probes`]\n//! crate::probe\n\
                   /* crate::probe /* nested crate::probe */ still crate::probe */ use crate::clock;";
        assert_eq!(paths(src, false), [(4, "crate::clock".into())]);
    }

    #[test]
    fn string_and_char_literals_are_ignored() {
        let src = "let a = \"crate::probe \\\" crate::probe\";\nlet b = r#\"crate::probe \"x\" \"#;\n\
                   let c = b\"crate::probe\"; let q = '\"'; let e = '\\''; fn f<'a>(s: &'a str) {}\n\
                   use crate::clock; let s = \"\nmultiline crate::probe\";\nuse crate::text;";
        assert_eq!(
            paths(src, false),
            [(4, "crate::clock".into()), (6, "crate::text".into())]
        );
    }

    #[test]
    fn library_anchor_only_in_the_binary_and_not_after_a_dot() {
        let src = "use goprobe::{report::Report, probe};\nlet n = r.goprobe.attach_ms;";
        assert_eq!(
            paths(src, true),
            [
                (1, "goprobe::report::Report".into()),
                (1, "goprobe::probe".into())
            ]
        );
        assert!(paths(src, false).is_empty());
    }

    #[test]
    fn inline_modules_are_tracked() {
        let src = "mod tests {\n    use super::*;\n    mod deeper { use super::super::X; }\n}\n\
                   use self::y;";
        let found = used_paths(src, false);
        let inline: Vec<(Vec<String>, Anchor)> =
            found.into_iter().map(|p| (p.inline, p.anchor)).collect();
        let tests = vec!["tests".to_string()];
        let deeper = vec!["tests".to_string(), "deeper".to_string()];
        assert_eq!(
            inline,
            [
                (tests, Anchor::Relative { ups: 1 }),
                (deeper, Anchor::Relative { ups: 2 }),
                (vec![], Anchor::Relative { ups: 0 }),
            ]
        );
    }
}
