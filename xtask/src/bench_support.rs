//! What the bench cases share: the results file, starting `goprobe attach` and waiting for it,
//! reading numbers out of JSON, and a `hugo server` to measure against.

use std::process::Command;

use anyhow::Result;

use crate::{exec, thirdparty};

/// Appends `section` to DIR/results.md and prints it.
pub fn append_results(dir: &std::path::Path, section: &str) -> Result<()> {
    let results = dir.join("results.md");
    let mut text = std::fs::read_to_string(&results).unwrap_or_default();
    text.push_str(section);
    std::fs::write(&results, &text)?;
    print!("{section}");
    Ok(())
}

/// Waits for goprobe's "attached to pid" line on `err`, then keeps draining it in the
/// background so goprobe never blocks on a full pipe.
pub fn wait_attached(mut err: std::io::BufReader<std::process::ChildStderr>) -> Result<()> {
    use std::io::BufRead as _;
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line)? == 0 {
            anyhow::bail!("goprobe exited before attaching");
        }
        if line.contains("attached to pid") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Ok(())
}

/// Starts `goprobe attach <pid> --json <args>` (stdout piped, for the report) and waits until
/// its probes are attached.
pub fn attach_goprobe(
    goprobe: &std::path::Path,
    pid: u32,
    args: &[&str],
) -> Result<std::process::Child> {
    use anyhow::Context as _;
    let mut child = Command::new(goprobe)
        .args(["attach", &pid.to_string(), "--json"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting goprobe")?;
    wait_attached(std::io::BufReader::new(
        child.stderr.take().context("stderr")?,
    ))?;
    Ok(child)
}

/// The first number after `"key":` in `json` (xtask has no JSON parser; the programs print flat
/// JSON lines).
pub fn json_number(json: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let rest = json[json.find(&pat)? + pat.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// hugo's 95 MB stripped binary as `hugo server` on 127.0.0.1:`port`, serving a new site in
/// DIR/hugo-site; after 2 s, so that it runs its steady state.
pub fn hugo_server(dir: &std::path::Path, port: u16) -> Result<std::process::Child> {
    use anyhow::Context as _;
    let site = dir.join("hugo-site");
    if !site.exists() {
        exec(
            Command::new(thirdparty::hugo())
                .args(["new", "site"])
                .arg(&site),
        )?;
    }
    let child = Command::new(thirdparty::hugo())
        .args([
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--source",
        ])
        .arg(&site)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting hugo")?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    Ok(child)
}
