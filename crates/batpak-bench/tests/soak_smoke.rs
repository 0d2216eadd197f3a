//! The soak binary, run for about ten seconds: every part of the store at once against
//! one directory, with reopens, backups and redactions, ends clean (exit code 0 and
//! its summary line). `scripts/soak.sh` runs the same binary for half an hour.

use std::process::Command;

#[test]
fn a_ten_second_soak_ends_clean() {
    let out = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(["--minutes", "0.17"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "soak exited with {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("SOAK PASSED: ")),
        "no summary line\n--- stdout\n{stdout}"
    );
    assert!(stdout.contains("== soak summary =="), "{stdout}");
}
