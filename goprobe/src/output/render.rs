//! What one output format is (one small trait, as rbspy's `Outputter`): what it renders from
//! ([`Input`]) and what it returns ([`File`]s). The formats are listed in
//! [`OUTPUTS`](super::OUTPUTS).

use super::{OutputError, Profile};
use crate::report::Report;

/// One file an output writes: its name in the output directory and its bytes.
pub type File = (String, Vec<u8>);

/// What every output is rendered from: one attach's report (as a value and as the JSON text
/// written to `report.json`) and its stack profiles.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub report: &'a Report,
    pub report_json: &'a str,
    pub profiles: &'a [Profile],
}

/// One output format: the files it writes for one attach.
///
/// [`write_all`](super::write_all) calls the chosen outputs in [`OUTPUTS`](super::OUTPUTS)
/// order, in three rounds: `start` of each, then `profile` of each for every profile in turn,
/// then `finish` of each. The files are written, and listed, in that order: `report.json`; per
/// profile its folded files, flamegraphs and pprof file; `gc-pauses.svg`; `index.html`, which
/// links everything before it.
pub trait Output {
    /// The `--format` name that selects it (`json`, `svg`, `pprof`, `folded`, `html`).
    fn name(&self) -> &'static str;

    /// Files written before any profile's.
    fn start(&self, _input: &Input<'_>) -> Result<Vec<File>, OutputError> {
        Ok(Vec::new())
    }

    /// Files of one profile.
    fn profile(&self, _input: &Input<'_>, _profile: &Profile) -> Result<Vec<File>, OutputError> {
        Ok(Vec::new())
    }

    /// Files written after every profile's; `written` names the files written before, in order.
    fn finish(&self, _input: &Input<'_>, _written: &[String]) -> Result<Vec<File>, OutputError> {
        Ok(Vec::new())
    }
}
