//! Reading goprobe's Grafana dashboards (`dashboards/*.json`) and the metric spec
//! (`docs/metrics.md`) for the dashboard tests: panels, their queries, the metric names a PromQL
//! expression uses, and the names the spec documents.

use std::{collections::BTreeSet, path::PathBuf};

use serde_json::Value;

/// The dashboards and the uid each must keep (links and provisioning depend on it).
pub const DASHBOARDS: [(&str, &str); 2] = [
    ("go-gc-pause-attribution.json", "goprobe-gc-pauses"),
    ("goprobe-agent-health.json", "goprobe-agent-health"),
];

/// The filter every selector must carry, so that the `service` and `pid` variables apply.
pub const FILTERS: [&str; 2] = [r#"service_name=~"$service""#, r#"process_pid=~"$pid""#];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A dashboard file, parsed.
pub fn load(file: &str) -> Value {
    let path = repo().join("dashboards").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels (of collapsed rows) included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// One query of a panel.
pub struct Query<'a> {
    pub panel: &'a str,
    pub ref_id: &'a str,
    pub expr: &'a str,
}

/// Every target of every panel, in panel order.
pub fn queries(dashboard: &Value) -> Vec<Query<'_>> {
    panels(dashboard)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("(untitled)");
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| Query {
                    panel: title,
                    ref_id: t["refId"].as_str().unwrap_or_default(),
                    expr: t["expr"].as_str().unwrap_or_default(),
                })
        })
        .collect()
}

/// The template variable named `name`.
pub fn variable<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{}: no variable {name}", dashboard["uid"]))
}

/// The metric selector and label of a `label_values(SELECTOR, LABEL)` variable query.
pub fn label_values(query: &str) -> (&str, &str) {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(…): {query}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("label_values needs a selector and a label: {query}"));
    (selector.trim(), label.trim())
}

/// What a PromQL expression selects: each metric name with the label matchers between its
/// braces (empty when it has none).
#[derive(Debug, PartialEq, Eq)]
pub struct Selector {
    pub metric: String,
    pub matchers: String,
}

/// PromQL words that are neither metric names nor followed by a parenthesis.
const KEYWORDS: [&str; 10] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
];

/// The selectors of `expr`, found with a small PromQL tokenizer: a name that is not a function
/// or aggregation (those are followed by `(`), not a keyword, not in a string, label matcher
/// block, range or `by (…)` list is a metric name. Enough for dashboard queries; not a parser.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    let followed_by_grouping = |j: usize| {
        let word: String = chars[j.min(chars.len())..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect();
        word == "by" || word == "without"
    };
    let skip_to = |from: usize, close: char| {
        let mut j = from;
        let mut in_string = false;
        while j < chars.len() {
            match chars[j] {
                '\\' if in_string => j += 1,
                '"' => in_string = !in_string,
                c if c == close && !in_string => return j,
                _ => {}
            }
            j += 1;
        }
        panic!("unclosed {close:?} in {expr}")
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = skip_to(i + 1, '"') + 1;
        } else if c == '[' {
            i = skip_to(i + 1, ']') + 1;
        } else if c == '{' {
            // A selector without a metric name, e.g. {__name__=~"…"}: not used by goprobe's.
            panic!("selector without a metric name in {expr}");
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let j = next_non_space(i);
            let next = chars.get(j).copied();
            if KEYWORDS.contains(&word.as_str()) {
                if next == Some('(') {
                    i = skip_to(j + 1, ')') + 1; // a label list
                }
            } else if next == Some('(') || followed_by_grouping(j) {
                // a function, or an aggregation (`sum(…)`, `sum by (…) (…)`)
            } else if next == Some('{') {
                let close = skip_to(j + 1, '}');
                out.push(Selector {
                    metric: word,
                    matchers: chars[j + 1..close].iter().collect(),
                });
                i = close + 1;
            } else {
                out.push(Selector {
                    metric: word,
                    matchers: String::new(),
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The Prometheus metric names docs/metrics.md documents: the "Prometheus name" column of its
/// tables, with `_bucket`, `_sum` and `_count` for histograms, and `target_info`.
pub fn documented_metrics() -> BTreeSet<String> {
    let path = repo().join("docs/metrics.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut names = BTreeSet::new();
    let mut column = None;
    let mut type_column = None;
    for line in text.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if !line.starts_with('|') {
            column = None;
            continue;
        }
        let Some(col) = column else {
            // A table's header row.
            column = cells.iter().position(|c| *c == "Prometheus name");
            type_column = cells.iter().position(|c| *c == "Type");
            continue;
        };
        let Some(name) = cells
            .get(col)
            .and_then(|n| n.strip_prefix('`'))
            .and_then(|n| n.strip_suffix('`'))
        else {
            continue; // the |---| separator
        };
        names.insert(name.to_owned());
        let kind = type_column
            .and_then(|t| cells.get(t))
            .copied()
            .unwrap_or_default();
        if kind.contains("histogram") {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    if text.contains("`target_info`") {
        names.insert("target_info".to_owned());
    }
    assert!(
        names.len() > 20,
        "{}: found only {names:?}; has the table layout changed?",
        path.display()
    );
    names
}
