//! Shared by the integration tests: run one ignored test of this binary as a child
//! process, collect the lines it prints, and kill it with SIGKILL (the kill -9
//! tests); list a store's segment files (the damage and repair tests).

#![allow(dead_code, reason = "each test binary uses part of this")]
#![allow(clippy::expect_used, reason = "test helpers abort on setup failure")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a killed child printed.
pub struct Killed {
    /// It printed `@@OPEN` (its store was open) before the kill.
    pub opened: bool,
    /// Every complete line it printed.
    pub lines: Vec<String>,
}

/// Runs the ignored test `test` of the current binary with `envs`, kills it `delay`
/// after it printed `@@OPEN` (its store is open; at most 20 s after the spawn, so a
/// slow machine still gets kills during work), and checks the kill (not a failure)
/// ended it.
pub fn run_and_kill(test: &str, envs: &[(&str, String)], delay: Duration) -> Killed {
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
        .args(["--exact", test, "--ignored", "--nocapture"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            lines.push(line);
        }
        lines
    });
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) if line == "@@OPEN" => break,
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    std::thread::sleep(delay);
    child.kill().expect("kill child");
    let status = child.wait().expect("wait for child");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the child ended by itself ({status}); run `{test}` alone with its environment to see why"
    );
    let lines = reader.join().expect("reader thread");
    Killed {
        opened: lines.iter().any(|l| l == "@@OPEN"),
        lines,
    }
}

/// A xorshift generator seeded from the clock, for kill delays.
pub struct Delays(u64);

impl Delays {
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Delays(nanos | 1)
    }

    /// A delay in `[min_ms, min_ms + spread_ms)`.
    pub fn next(&mut self, min_ms: u64, spread_ms: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(min_ms + self.0 % spread_ms.max(1))
    }
}

/// An integer setting from the environment, or `default`.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The segment files of the store in `dir`, in order (their names are fixed-width hex).
pub fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("list segments")
        .map(|e| e.expect("list segments").path())
        .collect();
    files.sort();
    files
}

/// The newest segment file of the store in `dir`.
pub fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    segments(dir).pop().expect("a segment")
}
