//! `report.json`: the whole report (schema goprobe.report.v2, docs/report-schema.md), as the
//! caller serialised it — the same text `goprobe attach --json` prints.

use super::{
    OutputError,
    render::{File, Input, Output},
};

/// The file name.
pub const FILE: &str = "report.json";

/// The `json` output: `report.json`, written before every other file.
pub struct Json;

impl Output for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn start(&self, input: &Input<'_>) -> Result<Vec<File>, OutputError> {
        Ok(vec![(
            FILE.to_owned(),
            input.report_json.as_bytes().to_vec(),
        )])
    }
}
