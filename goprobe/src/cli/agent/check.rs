//! `goprobe agent --check`: one line per requirement ([`goprobe::daemon::check`]).

use anyhow::{Result, bail};
use goprobe::daemon::check;

/// Prints one line per requirement; fails when one the agent cannot run without is missing.
pub(super) fn run() -> Result<()> {
    let mut failed = Vec::new();
    for c in check::run() {
        let mark = match (c.ok, c.required) {
            (true, _) => "ok     ",
            (false, true) => "MISSING",
            (false, false) => "absent ",
        };
        println!("{mark} {:<34} {}", c.what, c.detail);
        if !c.ok && c.required {
            failed.push(c.what);
        }
    }
    if failed.is_empty() {
        println!("\ngoprobe agent can run here.");
        Ok(())
    } else {
        bail!(
            "goprobe agent cannot run here: missing {}",
            failed.join(", ")
        )
    }
}
