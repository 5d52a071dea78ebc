//! Tests of the real `axon` binary against the CLI contract of DESIGN.md: exit codes,
//! `FILE:LINE:COL: error: MESSAGE` diagnostics, plan formats, schemas and help texts.
//!
//! Small inputs are fixtures in `tests/fixtures/`; large and hostile ones are generated in a
//! `TempDir` by the test that needs them. Outputs are snapshotted with `insta`, run from a
//! directory that makes every path in them relative.

#![allow(clippy::unwrap_used)]

mod cortex_check;
mod cortex_real;
mod cortex_run;
mod episodes;
mod fake_cortex;
mod help;
mod metrics;
mod plan;
mod resume;
mod robustness;
mod run;
mod schema;
mod sessions;
mod stdin;
mod validate;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A command running the `axon` binary built for these tests.
pub fn axon() -> assert_cmd::Command {
    let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("axon");
    // Whatever the caller's environment, a panic must show up the same way.
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    // Nor may the caller's Cortex settings reach a test that does not ask for them.
    for var in [
        "AXON_CORTEX_URL",
        "AXON_CORTEX_API_KEY",
        "AXON_CORTEX_TIMEOUT",
        "AXON_CORTEX_ROLES",
        "AXON_CORTEX_WORKSPACE",
        "AXON_CORTEX_OPTIONAL",
        "AXON_DB",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The workspace root, where `examples/` is.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The directory of the fixture files.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs `axon ARGS` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    axon().args(args).current_dir(dir).output().unwrap()
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the process exited with `code` (not a signal, not a panic) and that nothing on
/// standard error looks like a crash.
pub fn assert_exit(out: &Output, code: i32) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit code {code}, got {:?}\nstderr:\n{}",
        out.status,
        tail(&err)
    );
    assert_no_crash(&err);
}

/// Asserts that standard error shows no panic, backtrace hint or stack overflow.
pub fn assert_no_crash(stderr: &str) {
    for crash in [
        "panicked",
        "RUST_BACKTRACE",
        "stack overflow",
        "overflowed its stack",
    ] {
        assert!(
            !stderr.contains(crash),
            "`{crash}` on stderr:\n{}",
            tail(stderr)
        );
    }
}

/// Asserts that `text` has a line equal to `line`.
#[track_caller]
pub fn assert_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line\n  {line}\nin\n{}",
        tail(text)
    );
}

/// The end of a long text, for failure messages.
fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(4000);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

/// A small pseudo-random generator (xorshift64*), seeded from the clock; the seed is printed so
/// a failure can be replayed (kill points of the crash tests).
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from the clock (the seed goes to standard error).
    pub fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("kill points seeded with {seed}");
        Self(seed)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}
