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

/// Debian suites newer than the machine's, searched by [`debian_unpack_newer`].
const NEWER_SUITES: &str = "forky sid";

/// Unpacks the newest `package` whose version starts with `major` (such as `"3."`) from Debian's
/// newer suites into `dest`, and returns its version. Nothing on the machine changes: apt runs
/// with a source list, package lists and cache of its own under `work` (removed afterwards), so
/// the machine's sources, its installed packages (an older `package` that other tests run) and
/// what its next `apt-get upgrade` would do stay as they were.
pub fn debian_unpack_newer(package: &str, major: &str, work: &Path, dest: &Path) -> Result<String> {
    let archive = debian_archive()?;
    let _ = std::fs::remove_dir_all(work);
    for d in ["lists/partial", "cache/archives/partial", "deb"] {
        std::fs::create_dir_all(work.join(d))?;
    }
    let sources = work.join("newer.sources");
    std::fs::write(
        &sources,
        format!(
            "Types: deb\nURIs: {archive}\nSuites: {NEWER_SUITES}\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )?;
    let private = |cmd: &mut Command| {
        cmd.arg(format!("-oDir::Etc::SourceList={}", sources.display()))
            .arg("-oDir::Etc::SourceParts=/nonexistent")
            .arg(format!(
                "-oDir::State::Lists={}",
                work.join("lists").display()
            ))
            .arg(format!("-oDir::Cache={}", work.join("cache").display()));
    };
    let mut update = Command::new("apt-get");
    private(&mut update);
    exec(update.args(["update", "-qq"]))?;
    let mut madison = Command::new("apt-cache");
    private(&mut madison);
    let out = madison.args(["madison", package]).output()?;
    // "prometheus | 3.5.3+ds1-6 | http://… sid/main amd64 Packages", the newest first.
    let listing = String::from_utf8_lossy(&out.stdout);
    let Some(version) = listing
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .find(|v| v.starts_with(major))
    else {
        bail!("no {package} {major}x in Debian {NEWER_SUITES}:\n{listing}");
    };
    let mut download = Command::new("apt-get");
    private(&mut download);
    exec(
        download
            .current_dir(work.join("deb"))
            .args(["download", "-qq"])
            .arg(format!("{package}={version}")),
    )?;
    let deb = std::fs::read_dir(work.join("deb"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| anyhow::anyhow!("apt-get download left no .deb in {}", work.display()))?;
    let _ = std::fs::remove_dir_all(dest);
    exec(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dest))?;
    let _ = std::fs::remove_dir_all(work);
    Ok(version.to_owned())
}

/// The URI of the Debian archive the machine installs from (its main suite, not -security or
/// -updates), as apt itself reports it.
fn debian_archive() -> Result<String> {
    let out = Command::new("apt-cache").arg("policy").output()?;
    let policy = String::from_utf8_lossy(&out.stdout);
    // " 500 http://host/debian bookworm/main amd64 Packages"
    policy
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (_, uri, suite) = (w.next()?, w.next()?, w.next()?);
            let suite = suite.strip_suffix("/main")?;
            (uri.starts_with("http") && !suite.contains('-') && !uri.contains("security"))
                .then(|| uri.to_owned())
        })
        .next()
        .ok_or_else(|| {
            anyhow::anyhow!("no Debian archive in `apt-cache policy` (run apt-get update first)")
        })
}
