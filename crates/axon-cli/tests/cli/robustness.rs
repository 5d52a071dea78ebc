//! Hostile and huge inputs, generated at test time in a `TempDir`: whatever the bytes, `axon`
//! exits 0 or 1 with one line per problem and a summary, never a panic, a backtrace, a stack
//! overflow or a signal.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use tempfile::TempDir;

use crate::{assert_exit, run_in, stderr, stdout};

/// Each million-task test takes 20-35 s and about 2.7 GB in a debug build: one at a time.
static MILLION: Mutex<()> = Mutex::new(());

/// Tasks in the million-task files, one flow-style line each.
const MILLION_TASKS: usize = 1_000_000;

/// A small deterministic pseudo-random generator (xorshift64*), so failures can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// Valid UTF-8 made mostly of YAML and JSON punctuation, so the parser gets far.
    fn yamlish(&mut self, chars: usize) -> String {
        const ALPHABET: &[char] = &[
            ':',
            ':',
            '-',
            '-',
            ' ',
            ' ',
            ' ',
            ' ',
            '\n',
            '\n',
            '\t',
            '[',
            ']',
            '{',
            '}',
            ',',
            '"',
            '\'',
            '&',
            '*',
            '!',
            '|',
            '>',
            '#',
            '?',
            '%',
            '@',
            '`',
            '\\',
            '\0',
            '\r',
            'a',
            'b',
            't',
            'n',
            '0',
            '1',
            '.',
            'é',
            '€',
            '\u{feff}',
            '\u{1f600}',
            '\u{202e}',
        ];
        let words = [
            "name",
            "tasks",
            "type",
            "depends_on",
            "review",
            "~",
            "null",
            "<<",
        ];
        let mut s = String::with_capacity(chars * 2);
        for _ in 0..chars {
            let r = self.next();
            if r.is_multiple_of(16) {
                s.push_str(words[(r >> 8) as usize % words.len()]);
            } else {
                s.push(ALPHABET[(r >> 8) as usize % ALPHABET.len()]);
            }
        }
        s
    }
}

/// Writes `files` into a new temporary directory.
fn dir_with(files: &[(&str, &[u8])]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// Runs `axon validate FILES` in `dir`, asserts `code`, and that stderr is one
/// `FILE...: error|warning: ...` line per problem then one summary line; returns stderr.
fn validate_in(dir: &Path, files: &[&str], code: i32) -> String {
    let mut args = vec!["validate"];
    args.extend_from_slice(files);
    let out = run_in(dir, &args);
    assert_exit(&out, code);
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty(), "no summary");
    for line in &lines[..lines.len() - 1] {
        let known = files.iter().any(|f| line.starts_with(&format!("{f}:")));
        let diagnostic = line.contains(": error: ") || line.contains(": warning: ");
        assert!(known && diagnostic, "not a diagnostic line: {line:?}");
    }
    err
}

/// Also runs `axon plan FILE` on each file, which must fail the same way without a crash.
fn plan_fails_in(dir: &Path, files: &[&str]) {
    for file in files {
        for format in ["text", "json"] {
            let out = run_in(dir, &["plan", file, "--format", format]);
            assert_exit(&out, 1);
            assert_eq!(stdout(&out), "", "{file}: a plan was printed");
        }
    }
}

#[test]
fn random_bytes_are_rejected_as_not_utf8() {
    let mut rng = Rng(0x5eed_0001);
    let mut garbage = rng.bytes(64 * 1024);
    garbage[0] = 0xff; // certainly not UTF-8
    let mut late = b"name: x\ntasks:\n  a: {type: review, capabilities: [x], estimated_duration: 1m}\n  b: {name: \"".to_vec();
    late.extend_from_slice(&[0xc3, 0x28, b'"', b'}', b'\n']);
    let dir = dir_with(&[
        ("random.yaml", &garbage),
        ("random.json", &garbage),
        ("late.yaml", &late),
    ]);
    let files = ["random.yaml", "random.json", "late.yaml"];
    let err = validate_in(dir.path(), &files, 1);
    assert!(
        err.contains("random.yaml: error: file is not UTF-8 text (invalid byte at offset 0)"),
        "{err}"
    );
    assert!(
        err.contains("late.yaml: error: file is not UTF-8 text (invalid byte at offset 91)"),
        "{err}"
    );
    plan_fails_in(dir.path(), &files);

    let out = crate::axon()
        .args(["validate", "-"])
        .write_stdin(garbage)
        .output()
        .unwrap();
    assert_exit(&out, 1);
}

#[test]
fn random_utf8_text_is_rejected_with_one_line_per_problem() {
    let mut rng = Rng(0x5eed_0002);
    let mut names = Vec::new();
    let mut contents = Vec::new();
    for k in 0..40 {
        let ext = if k % 4 == 3 { "json" } else { "yaml" };
        names.push(format!("garbage{k}.{ext}"));
        let size = [16, 200, 4000, 64 * 1024][k % 4];
        contents.push(rng.yamlish(size));
    }
    // A plausible start and garbage after it gets past the first lines.
    names.push("prefix.yaml".to_owned());
    contents.push(format!(
        "name: x\ntasks:\n  a:\n    type: review\n    {}",
        rng.yamlish(5000)
    ));
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&contents)
        .map(|(n, c)| (n.as_str(), c.as_bytes()))
        .collect();
    let dir = dir_with(&files);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let err = validate_in(dir.path(), &names, 1);
    let summary = err.lines().last().unwrap();
    assert!(
        summary.starts_with("41 files: 0 valid, 41 invalid ("),
        "{err}"
    );
    plan_fails_in(dir.path(), &names[..4]);
}

#[test]
fn empty_and_blank_files_are_rejected() {
    let dir = dir_with(&[
        ("empty.yaml", b""),
        ("empty.json", b""),
        ("blank.yaml", b"  \n\n\t\n"),
        ("comment.yaml", b"# nothing here\n"),
        ("null.yaml", b"~\n"),
        ("list.yaml", b"- a\n- b\n"),
        ("scalar.json", b"42"),
    ]);
    let files = [
        "empty.yaml",
        "empty.json",
        "blank.yaml",
        "comment.yaml",
        "null.yaml",
        "list.yaml",
        "scalar.json",
    ];
    let err = validate_in(dir.path(), &files, 1);
    assert!(
        err.contains(
            "empty.yaml: error: file is empty; a workflow needs at least `name` and `tasks`\n"
        ),
        "{err}"
    );
    assert!(
        err.ends_with("7 files: 0 valid, 7 invalid (7 errors, 0 warnings)\n"),
        "{err}"
    );
    plan_fails_in(dir.path(), &files);

    let out = crate::axon()
        .args(["validate", "-"])
        .write_stdin("")
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(stderr(&out).starts_with("<stdin>: error: file is empty"));
}

#[test]
fn deep_nesting_is_rejected_without_overflowing_the_stack() {
    const DEPTH: usize = 100_000;
    let task = "name: deep\ntasks:\n  a:\n    type: review\n    capabilities: [x]\n    estimated_duration: 1m\n    input:";
    let brackets = "[".repeat(DEPTH);
    let balanced = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let braces = format!("{}1{}", "{a: ".repeat(DEPTH), "}".repeat(DEPTH));
    let dashes = format!("{}x\n", "- ".repeat(DEPTH));
    // Block mappings need one more space per level, so this one is only 2,000 deep (2 MB).
    let mut block = format!("{task}\n");
    for level in 0..2_000 {
        let _ = writeln!(block, "{:width$}k:", "", width = 6 + level);
    }
    let json = format!(
        "{{\"name\": \"deep\", \"tasks\": {{\"a\": {{\"type\": \"review\", \"input\": {balanced}}}}}}}"
    );
    let files: Vec<(String, String)> = vec![
        ("brackets.yaml".into(), brackets.clone()),
        ("brackets.json".into(), brackets.clone()),
        ("balanced.yaml".into(), balanced.clone()),
        ("balanced.json".into(), balanced.clone()),
        ("braces.yaml".into(), braces.clone()),
        ("dashes.yaml".into(), dashes.clone()),
        (
            "brackets_in_input.yaml".into(),
            format!("{task} {brackets}\n"),
        ),
        (
            "balanced_in_input.yaml".into(),
            format!("{task} {balanced}\n"),
        ),
        ("braces_in_input.yaml".into(), format!("{task} {braces}\n")),
        (
            "dashes_in_input.yaml".into(),
            format!("{task}\n      {dashes}"),
        ),
        ("block_in_input.yaml".into(), block),
        ("balanced_in_input.json".into(), json),
    ];
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_bytes()))
        .collect();
    let dir = dir_with(&refs);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let err = validate_in(dir.path(), &names, 1);
    assert!(
        err.ends_with("12 files: 0 valid, 12 invalid (12 errors, 0 warnings)\n"),
        "{err}"
    );
    plan_fails_in(dir.path(), &names);
}

#[test]
fn fifty_megabyte_string_is_read() {
    const SIZE: usize = 50 * 1024 * 1024;
    let filler = "lorem ipsum ".repeat(SIZE / 12);
    let quoted = format!(
        "name: big\ndescription: \"{filler}\"\ntasks:\n  a: {{type: review, capabilities: [x], estimated_duration: 1m}}\n"
    );
    let plain = format!(
        "name: big\ntasks:\n  a:\n    type: review\n    capabilities: [x]\n    estimated_duration: 1m\n    input: {{prompt: {filler}}}\n"
    );
    let dir = dir_with(&[
        ("quoted.yaml", quoted.as_bytes()),
        ("plain.yaml", plain.as_bytes()),
    ]);
    let err = validate_in(dir.path(), &["quoted.yaml", "plain.yaml"], 0);
    assert_eq!(err, "2 files: 2 valid, 0 invalid (0 errors, 0 warnings)\n");
    let out = run_in(dir.path(), &["plan", "quoted.yaml", "--format", "json"]);
    assert_exit(&out, 0);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["order"], serde_json::json!(["a"]));
}

#[test]
fn fifty_megabytes_of_garbage_are_rejected() {
    const SIZE: usize = 50 * 1024 * 1024;
    let mut rng = Rng(0x5eed_0003);
    let mut bytes = rng.bytes(SIZE);
    bytes[0] = 0xff;
    // Printable garbage, and a quote that never closes, so the reader goes through all of it.
    let printable: Vec<u8> = rng.bytes(SIZE).into_iter().map(|b| b' ' + b % 95).collect();
    let mut unclosed = b"name: \"".to_vec();
    unclosed.extend(
        printable
            .iter()
            .map(|&b| if b == b'"' || b == b'\\' { b'x' } else { b }),
    );
    let dir = dir_with(&[
        ("bytes.yaml", &bytes),
        ("printable.yaml", &printable),
        ("unclosed.yaml", &unclosed),
        ("unclosed.json", &unclosed),
    ]);
    let files = [
        "bytes.yaml",
        "printable.yaml",
        "unclosed.yaml",
        "unclosed.json",
    ];
    let err = validate_in(dir.path(), &files, 1);
    assert!(
        err.contains("unclosed.yaml:1:7: error: unclosed quote\n"),
        "{err}"
    );
    assert!(
        err.ends_with("4 files: 0 valid, 4 invalid (4 errors, 0 warnings)\n"),
        "{err}"
    );
}

/// A workflow of `MILLION_TASKS` flow-style tasks, `t{i}` depending on `t{i-1}`; with `ring`,
/// `t0` depends on the last one, closing a cycle through every task.
fn million_task_chain(ring: bool) -> String {
    let mut s = String::with_capacity(MILLION_TASKS * 80);
    s.push_str("name: million\ntimeout: 30days\ntasks:\n");
    let task = "type: review, capabilities: [x], estimated_duration: 1s";
    if ring {
        let _ = writeln!(s, "  t0: {{{task}, depends_on: [t{}]}}", MILLION_TASKS - 1);
    } else {
        let _ = writeln!(s, "  t0: {{{task}}}");
    }
    for i in 1..MILLION_TASKS {
        let _ = writeln!(s, "  t{i}: {{{task}, depends_on: [t{}]}}", i - 1);
    }
    s
}

#[test]
fn million_task_chain_is_valid() {
    let _one_at_a_time = MILLION.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dir_with(&[("chain.yaml", million_task_chain(false).as_bytes())]);
    let err = validate_in(dir.path(), &["chain.yaml"], 0);
    assert_eq!(
        err,
        "chain.yaml: valid (1000000 tasks, critical path 11days 13h 46m 40s within timeout 30days)\n"
    );
}

#[test]
fn million_task_ring_is_one_elided_cycle() {
    let _one_at_a_time = MILLION.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dir_with(&[("ring.yaml", million_task_chain(true).as_bytes())]);
    let err = validate_in(dir.path(), &["ring.yaml"], 1);
    assert_eq!(
        err,
        "ring.yaml:4:3: error: dependency cycle: t0 -> t999999 -> t999998 -> t999997 -> t999996 -> t999995 \
         -> ... 999988 more ... -> t6 -> t5 -> t4 -> t3 -> t2 -> t1 -> t0 (each task depends on the next)\n\
         ring.yaml: invalid (1 error, 0 warnings)\n"
    );
}
