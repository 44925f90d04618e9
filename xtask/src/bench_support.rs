//! What the bench cases share: the results file, starting `goprobe attach` and waiting for it,
//! reading numbers out of JSON, and a `hugo server` to measure against.

use std::process::Command;

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

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

/// A running `goprobe agent`, its stderr lines read by a thread.
pub struct AgentProc {
    pub child: Killed,
    lines: std::sync::mpsc::Receiver<String>,
}

impl AgentProc {
    pub fn start(goprobe: &Path, config: &Path) -> Result<Self> {
        let mut child = std::process::Command::new(goprobe)
            .args(["agent", "--config"])
            .arg(config)
            .env("RUST_LOG", "goprobe=info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting goprobe agent")?;
        let err = BufReader::new(child.stderr.take().context("stderr")?);
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                // The receiver may be gone: keep draining so the agent never blocks.
                let _ = tx.send(line);
            }
        });
        Ok(Self {
            child: Killed(child),
            lines,
        })
    }

    /// Waits for the agent's "attached pid=PID" line.
    pub fn wait_attached(&mut self, pid: u32) -> Result<()> {
        let want = format!("fleet: attached pid={pid} ");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(&want) => return Ok(()),
                Ok(_) => {}
                Err(_) => bail!("goprobe agent did not attach to {pid} within 30 s"),
            }
        }
    }

    /// SIGINT, then waits for the agent to exit (it detaches and restores what it changed).
    pub fn stop(mut self) -> Result<()> {
        exec(Command::new("kill").args(["-INT", &self.child.0.id().to_string()]))?;
        let status = self.child.0.wait()?;
        ensure!(status.success(), "goprobe agent exited with {status}");
        Ok(())
    }
}

/// Peak RSS (VmHWM, KiB) of `pid`.
pub fn peak_rss_kb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM")
}

/// Kills the child when dropped (an error half-way leaves no process behind).
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
