//! Collapsed stacks (`NAME.folded`): one line per distinct stack, frames root first separated by
//! `;`, then a space and the value — the format of Brendan Gregg's stackcollapse scripts, which
//! inferno, speedscope and flamegraph.pl read.

use std::collections::BTreeMap;

use super::{
    OutputError, Profile,
    render::{File, Input, Output},
    views,
};

/// The `folded` output: `NAME.folded` (and `NAME-objects.folded` …) per profile, one per view.
pub struct Folded;

impl Output for Folded {
    fn name(&self) -> &'static str {
        "folded"
    }

    fn profile(&self, _input: &Input<'_>, p: &Profile) -> Result<Vec<File>, OutputError> {
        Ok(views::of(p)
            .into_iter()
            .map(|(suffix, index)| {
                let name = format!("{}{suffix}.folded", p.spec.name);
                (name, render(p, index).into_bytes())
            })
            .collect())
    }
}

/// The stack frames of `p`, root first, with values of sample type `index`; stacks with equal
/// names merged, zero values left out, lines sorted.
pub fn render(p: &Profile, index: usize) -> String {
    let mut lines: BTreeMap<String, i64> = BTreeMap::new();
    for s in &p.samples {
        let value = s.values.get(index).copied().unwrap_or(0);
        if value == 0 {
            continue;
        }
        let mut stack = String::new();
        for (i, name) in s.names_root_first().enumerate() {
            if i > 0 {
                stack.push(';');
            }
            stack.push_str(&clean(name));
        }
        if stack.is_empty() {
            // No stack was captured: the value still counts.
            stack.push_str("[no stack]");
        }
        *lines.entry(stack).or_default() += value;
    }
    let mut out = String::new();
    for (stack, value) in lines {
        out.push_str(&stack);
        out.push(' ');
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// A frame name with the format's separators (`;`, newlines) and trailing spaces made safe.
fn clean(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains([';', '\n', '\r']) || name.ends_with(' ') {
        name.replace([';', '\n', '\r'], ":")
            .trim_end()
            .to_owned()
            .into()
    } else {
        name.into()
    }
}
