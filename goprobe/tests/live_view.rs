//! The live view in a real terminal (tmux): it renders, it updates, and `q` ends goprobe cleanly
//! with its outputs written and the terminal given back.

mod support;

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use support::start_testprog;

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(session: &str, command: &str) -> Self {
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                "150",
                "-y",
                "45",
                command,
            ])
            .status()
            .expect("run tmux (`cargo xtask setup` installs it)")
            .success();
        assert!(ok, "tmux new-session failed");
        Self {
            session: session.to_owned(),
        }
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send(&self, keys: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.session, keys])
            .status()
            .expect("tmux send-keys")
            .success();
        assert!(ok, "tmux send-keys failed");
    }

    /// Polls the pane until `f` accepts it.
    fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if f(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}; the pane shows:\n{screen}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

/// The seconds counter in the view's first line (`… · 12s · q or Ctrl-C …`).
fn elapsed(screen: &str) -> Option<u64> {
    let first = screen.lines().next()?;
    let before = first.split("s · q or Ctrl-C").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

#[test]
fn renders_updates_and_q_ends_it_with_outputs_written() {
    let mut prog = start_testprog("gcstress", "1.27.3", &["-mode=churn"], &[]);
    prog.send("start");
    let dir = std::env::temp_dir().join(format!("goprobe-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let command = format!(
        "{} attach {} --out-dir {}; echo goprobe-exit=$?; sleep 120",
        env!("CARGO_BIN_EXE_goprobe"),
        prog.pid(),
        dir.display()
    );
    let tmux = Tmux::start(&format!("goprobe-live-{}", std::process::id()), &command);
    let first = tmux.wait_for("live view", Duration::from_secs(60), |s| {
        s.contains("q or Ctrl-C: stop") && s.contains("GC cycles") && s.contains("  gc ")
    });
    // The signals' blocks follow the GC part.
    tmux.wait_for("signal blocks", Duration::from_secs(10), |s| {
        s.contains("Allocations")
            && s.contains("Page faults")
            && s.contains("On-CPU samples")
            && s.contains("Goroutines")
    });
    let t0 = elapsed(&first).expect("elapsed seconds in the header");
    tmux.wait_for("a redraw", Duration::from_secs(10), |s| {
        elapsed(s).is_some_and(|t| t > t0)
    });
    tmux.send("q");
    let end = tmux.wait_for("goprobe to exit", Duration::from_secs(60), |s| {
        s.contains("goprobe-exit=")
    });
    assert!(end.contains("goprobe-exit=0"), "{end}");
    // The terminal is back to normal: the summary is on the main screen, the view is gone.
    assert!(end.contains("GC cycles:"), "{end}");
    assert!(!end.contains("q or Ctrl-C: stop"), "{end}");
    for f in ["report.json", "index.html", "gc-pauses.svg"] {
        assert!(dir.join(f).exists(), "{f} not written");
    }
    prog.send("stop");
    let (status, _, stderr) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "gcstress: {stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
