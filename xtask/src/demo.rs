//! `cargo xtask demo`: the bundled demo service, profiled by goprobe.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{root, setup};

/// The Go release the demo is built with.
const DEMO_GO: &str = "1.27.3";

/// Kills the demo service however the demo ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(seconds: u32) -> Result<()> {
    let out = root().join("target/demo");
    let bin = out.join("demo");
    setup::go_build(
        DEMO_GO,
        false,
        &["-o", &bin.display().to_string(), "./demo"],
    )?;
    let mut child = Command::new(&bin)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().context("demo stdout")?;
    let demo = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    eprint!("xtask: {line}");
    eprintln!(
        "xtask: goprobe attach {pid} --duration {seconds} --out-dir {}",
        out.display()
    );
    let status = Command::new(root().join("target/release/goprobe"))
        .arg("attach")
        .arg(pid.to_string())
        .args(["--duration", &seconds.to_string(), "--out-dir"])
        .arg(&out)
        .status()?;
    drop(demo);
    if !status.success() {
        bail!("goprobe attach failed ({status})");
    }
    Ok(())
}
