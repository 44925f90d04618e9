//! `cargo xtask bench`: placeholder filled below.
use anyhow::Result;

pub fn run() -> Result<()> {
    Ok(())
}
