//! Installing packages the ordinary way: Debian's with apt-get, PyPI's into a virtualenv.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::exec;

pub fn apt_install(packages: &[&str]) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!(
            "installing {packages:?} needs root: sudo apt-get install -y {}",
            packages.join(" ")
        );
    }
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq"])
            .args(packages),
    )
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A fresh virtualenv at `venv` with `requirement` installed from PyPI.
pub fn pip_venv(venv: &Path, requirement: &str) -> Result<()> {
    exec(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(venv),
    )?;
    exec(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(requirement),
    )
}
