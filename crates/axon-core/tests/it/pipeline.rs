//! The parse → validate → plan pipeline never panics, and every position it reports is
//! inside the text.

use std::collections::{BTreeMap, BTreeSet};

use axon_core::format::{Format, parse_workflow};
use axon_core::{Diagnostic, validate};
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// Lines of `text` as a YAML reader counts them (`\n`, `\r\n` and a lone `\r` end a line).
fn line_count(text: &str) -> u64 {
    let lone_cr = text
        .as_bytes()
        .windows(2)
        .filter(|w| w[0] == b'\r' && w[1] != b'\n')
        .count()
        + usize::from(text.ends_with('\r'));
    (text.matches('\n').count() + lone_cr + 1) as u64
}

/// Checks that every position is inside `text`: lines and columns from 1, at most one line
/// past the last, and (when only `\n` ends lines, so every reader counts lines alike) at
/// most one column past the end of its line, counted in characters.
fn check_locations(text: &str, diagnostics: &[Diagnostic]) -> Result<(), TestCaseError> {
    let lines = line_count(text);
    let plain_lines = !text.contains(['\r', '\u{85}', '\u{2028}', '\u{2029}']);
    for d in diagnostics {
        if let Some(l) = d.location {
            prop_assert!(l.line >= 1 && l.column >= 1, "{} in {:?}", d, text);
            prop_assert!(
                l.line <= lines + 1,
                "{} is past line {} of {:?}",
                d,
                lines,
                text
            );
            let line = text.split('\n').nth(l.line as usize - 1);
            if let Some(line) = line.filter(|_| plain_lines) {
                let width = line.chars().count() as u64;
                prop_assert!(l.column <= width + 1, "{} is past the end of {:?}", d, line);
            }
            if let Some(offset) = l.byte_offset {
                prop_assert!(
                    offset as usize <= text.len(),
                    "{} offset {} in {:?}",
                    d,
                    offset,
                    text
                );
            }
        }
    }
    Ok(())
}

/// Runs the whole pipeline on `text` in both formats, checking every reported position.
fn run_pipeline(text: &str) -> Result<(), TestCaseError> {
    for format in [Format::Yaml, Format::Json] {
        match parse_workflow(text, format) {
            Ok(parsed) => {
                check_locations(text, &parsed.diagnostics)?;
                let v = validate(&parsed.workflow, Some(&parsed.source_map));
                check_locations(text, &v.diagnostics)?;
                if let Some(plan) = &v.plan {
                    prop_assert_eq!(plan.order.len(), parsed.workflow.tasks.len());
                }
            }
            Err(d) => check_locations(text, std::slice::from_ref(&d))?,
        }
    }
    Ok(())
}

/// A generated document, rendered as block YAML or as JSON.
#[derive(Debug, Clone)]
enum Node {
    /// Written as is in YAML; in JSON written as is when `json_raw`, else as a string.
    Scalar {
        text: String,
        json_raw: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
    },
    Map(Vec<(String, Node)>),
}

fn s(text: &str) -> Node {
    let json_raw = serde_json::from_str::<serde_json::Value>(text).is_ok();
    Node::Scalar {
        text: text.to_owned(),
        json_raw,
    }
}

impl Node {
    fn yaml(&self) -> String {
        let mut out = String::new();
        match self {
            Node::Map(entries) => yaml_map(entries, 0, &mut out),
            other => {
                out.push_str(&yaml_inline(other));
                out.push('\n');
            }
        }
        out
    }

    fn json(&self) -> String {
        let mut out = String::new();
        json_node(self, 0, &mut out);
        out.push('\n');
        out
    }
}

fn yaml_inline(node: &Node) -> String {
    match node {
        Node::Scalar { text, .. } => text.clone(),
        Node::Seq { items, .. } => {
            let items: Vec<String> = items.iter().map(yaml_inline).collect();
            format!("[{}]", items.join(", "))
        }
        Node::Map(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k}: {}", yaml_inline(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

fn yaml_map(entries: &[(String, Node)], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (key, value) in entries {
        match value {
            Node::Map(inner) if !inner.is_empty() => {
                out.push_str(&format!("{pad}{key}:\n"));
                yaml_map(inner, indent + 2, out);
            }
            Node::Seq { items, flow: false } if !items.is_empty() => {
                out.push_str(&format!("{pad}{key}:\n"));
                for item in items {
                    out.push_str(&format!("{pad}  - {}\n", yaml_inline(item)));
                }
            }
            other => out.push_str(&format!("{pad}{key}: {}\n", yaml_inline(other))),
        }
    }
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

fn json_node(node: &Node, indent: usize, out: &mut String) {
    match node {
        Node::Scalar { text, json_raw } => {
            if *json_raw {
                out.push_str(text);
            } else {
                out.push_str(&json_string(text));
            }
        }
        Node::Seq { items, .. } => {
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                json_node(item, indent, out);
            }
            out.push(']');
        }
        Node::Map(entries) => {
            let pad = " ".repeat(indent + 2);
            out.push('{');
            for (k, (key, value)) in entries.iter().enumerate() {
                out.push_str(if k > 0 { ",\n" } else { "\n" });
                out.push_str(&format!("{pad}{}: ", json_string(key)));
                json_node(value, indent + 2, out);
            }
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            out.push('}');
        }
    }
}

/// Task ids: mostly valid, some that break the id rules (a validator error, not a
/// reading one).
fn task_id() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => select(&["a", "b", "c", "d", "build", "test", "x.y", "_u", "9z"][..]),
        1 => select(&["bad id", "-dash", "a..b", "\u{fc}n\u{ef}", "x.lock"][..]),
    ]
    .prop_map(str::to_owned)
}

fn scalar_from(values: &'static [&'static str]) -> impl Strategy<Value = Node> {
    select(values).prop_map(s)
}

/// How often a generated document goes wrong: the weight of a wrong choice against 200
/// right ones. At 0 every document can be read (though not necessarily validated).
type Noise = u32;

/// One of `good` (which the reader accepts, though the validator may not), or with
/// `noise`, sometimes one of `bad`.
fn value(
    good: &'static [&'static str],
    bad: &'static [&'static str],
    noise: Noise,
) -> BoxedStrategy<Node> {
    if noise == 0 {
        scalar_from(good).boxed()
    } else {
        prop_oneof![200 => scalar_from(good), noise => scalar_from(bad)].boxed()
    }
}

fn seq_of(item: impl Strategy<Value = Node> + 'static, max: usize) -> BoxedStrategy<Node> {
    (prop::collection::vec(item, 0..max), any::<bool>())
        .prop_map(|(items, flow)| Node::Seq { items, flow })
        .boxed()
}

/// A field name: `right`, or with `noise` sometimes a near miss or noise.
fn name(
    right: &'static str,
    wrong: &'static [&'static str],
    noise: Noise,
) -> BoxedStrategy<String> {
    if noise == 0 {
        Just(right.to_owned()).boxed()
    } else {
        prop_oneof![
            200 => Just(right.to_owned()),
            noise => select(wrong).prop_map(str::to_owned),
            noise => "[a-z_]{1,12}",
        ]
        .boxed()
    }
}

type Field = BoxedStrategy<Option<(String, Node)>>;

/// Field `right` (or a misspelling of it) with probability `p`.
fn field(
    p: f64,
    right: &'static str,
    wrong: &'static [&'static str],
    value: BoxedStrategy<Node>,
    noise: Noise,
) -> Field {
    prop::option::weighted(p, (name(right, wrong, noise), value)).boxed()
}

/// A required field, sometimes missing with `noise`.
fn required(
    right: &'static str,
    wrong: &'static [&'static str],
    value: BoxedStrategy<Node>,
    noise: Noise,
) -> Field {
    if noise == 0 {
        (name(right, wrong, noise), value).prop_map(Some).boxed()
    } else {
        field(1.0 - f64::from(noise) / 400.0, right, wrong, value, noise)
    }
}

fn duration(noise: Noise) -> BoxedStrategy<Node> {
    value(
        &[
            "30m",
            "1h",
            "1h30m",
            "5",
            "1ms",
            "1.5",
            "0s",
            "0",
            "18446744073709551615",
            "\"45s\"",
        ],
        &[
            "-3",
            "abc",
            "99999999999999999999s",
            "1e300",
            "[]",
            "3 days",
        ],
        noise,
    )
}

fn map_of(fields: Vec<Field>) -> BoxedStrategy<Node> {
    fields
        .prop_shuffle()
        .prop_map(|f| Node::Map(f.into_iter().flatten().collect()))
        .boxed()
}

/// With `noise`, sometimes `junk` instead of `node`.
fn or_junk(
    node: BoxedStrategy<Node>,
    junk: &'static [&'static str],
    noise: Noise,
) -> BoxedStrategy<Node> {
    if noise == 0 {
        node
    } else {
        prop_oneof![400 => node, noise => scalar_from(junk)].boxed()
    }
}

fn retry_block(n: Noise) -> BoxedStrategy<Node> {
    map_of(vec![
        field(
            0.5,
            "max_attempts",
            &["attempts", "max_atempts"],
            value(&["1", "3", "0", "101"], &["-1", "x"], n),
            n,
        ),
        field(0.3, "initial_delay", &["delay"], duration(n), n),
        field(0.3, "max_delay", &["maxdelay"], duration(n), n),
        field(
            0.3,
            "multiplier",
            &["factor"],
            value(&["2", "1.5", "0.5"], &["x"], n),
            n,
        ),
        field(
            0.2,
            "jitter",
            &["jiter"],
            value(&["true", "false"], &["maybe"], n),
            n,
        ),
        field(
            0.2,
            "on",
            &["on_errors"],
            seq_of(value(&["timeout", "network"], &["bogus"], n), 3),
            n,
        ),
    ])
}

fn task_node(n: Noise) -> BoxedStrategy<Node> {
    let depends_on = or_junk(seq_of(task_id().prop_map(|id| s(&id)), 5), &["a", "{}"], n);
    let resources = map_of(vec![
        field(
            0.6,
            "cpu_cores",
            &["cpu"],
            value(&["0", "1", "2", "2000"], &["4294967296", "-1"], n),
            n,
        ),
        field(
            0.6,
            "memory_mb",
            &["memory"],
            value(&["0", "512", "99999999999"], &["x"], n),
            n,
        ),
        field(
            0.3,
            "gpu",
            &["gpu_requird"],
            value(&["true", "false"], &["maybe"], n),
            n,
        ),
    ]);
    let task = map_of(vec![
        required(
            "type",
            &["typ", "tpye", "Type"],
            value(
                &[
                    "custom",
                    "development",
                    "review",
                    "testing",
                    "documentation",
                    "refactoring",
                ],
                &["developmnt", "\"\"", "[custom]"],
                n,
            ),
            n,
        ),
        field(
            0.7,
            "handler",
            &["handlr"],
            value(&["h", "run"], &["\"\"", "[h]"], n),
            n,
        ),
        field(
            0.85,
            "capabilities",
            &["capabilites", "capability"],
            seq_of(
                value(
                    &["code_generation", "testing", "x"],
                    &["Bad-Cap", "code generation", "{}"],
                    n,
                ),
                4,
            ),
            n,
        ),
        field(
            0.85,
            "estimated_duration",
            &["estimated_duraton", "estimate"],
            duration(n),
            n,
        ),
        field(
            0.7,
            "depends_on",
            &["depends", "depend_on", "dependson"],
            depends_on,
            n,
        ),
        field(0.15, "timeout", &["timout"], duration(n), n),
        field(
            0.1,
            "priority",
            &["priorty"],
            value(&["low", "medium", "high", "critical"], &["urgent", "1"], n),
            n,
        ),
        field(
            0.1,
            "coverage_threshold",
            &["coverage"],
            value(&["0.5", "1.5", "-1"], &["x", ".nan"], n),
            n,
        ),
        field(
            0.1,
            "language",
            &["lang"],
            value(&["rust", "'quoted'"], &["[1]"], n),
            n,
        ),
        field(
            0.1,
            "name",
            &["nmae"],
            value(&["Build it", "\"a: b\""], &["{}"], n),
            n,
        ),
        field(0.1, "resources", &["resorces"], resources, n),
        field(0.1, "retry", &["retyr"], retry_block(n), n),
        field(
            0.1,
            "scope",
            &["scopes"],
            seq_of(value(&["src", "/abs", "../up", "a/b"], &["{}"], n), 3),
            n,
        ),
        field(
            0.05,
            "input",
            &["inputs"],
            value(&["{a: 1}", "[1, 2]", "null"], &["{"], n),
            n,
        ),
    ]);
    or_junk(task, &["null", "1", "[]", "x"], n)
}

/// Random workflow documents with random `depends_on` lists (so cycles and unknown
/// dependencies are common) and, with `noise`, misspelled and unknown fields and bad values.
fn workflow_doc(n: Noise) -> BoxedStrategy<Node> {
    let tasks = prop::collection::vec((task_id(), task_node(n)), 0..8)
        .prop_map(Node::Map)
        .boxed();
    map_of(vec![
        required(
            "name",
            &["nmae", "Name"],
            value(
                &["demo", "Feature X", "\"quoted: name\""],
                &["\"\"", "[1, 2]"],
                n,
            ),
            n,
        ),
        field(
            0.2,
            "id",
            &["ident"],
            value(&["demo-1", "bad id", "\"\""], &["[]"], n),
            n,
        ),
        field(0.5, "timeout", &["timout"], duration(n), n),
        field(
            0.2,
            "priority",
            &["priorty"],
            value(&["low", "high"], &["urgent"], n),
            n,
        ),
        field(
            0.2,
            "max_retries",
            &["max_retry"],
            value(&["0", "3", "100"], &["-1", "x"], n),
            n,
        ),
        field(
            0.2,
            "failure_policy",
            &["on_failure"],
            value(&["continue", "fail_fast"], &["sometimes"], n),
            n,
        ),
        field(
            0.2,
            "description",
            &["desc"],
            value(&["text"], &["[x"], n),
            n,
        ),
        field(0.1, "retry", &["retries"], retry_block(n), n),
        required(
            "tasks",
            &["taks", "task"],
            or_junk(tasks, &["{}", "null", "[]", "1"], n),
            n,
        ),
    ])
}

/// Documents from clean to very noisy.
fn messy_workflow() -> impl Strategy<Value = Node> {
    prop_oneof![Just(0), Just(2), Just(10), Just(40)].prop_flat_map(workflow_doc)
}

/// A small edit of a text at a character boundary.
#[derive(Debug, Clone)]
enum Edit {
    Delete(Index),
    Insert(Index, char),
    DuplicateLine(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = select(
        &[
            ':', '-', ' ', '\n', '[', ']', '{', '}', '"', '\'', '#', '&', '*', '!', '|', '>', '\t',
            'é', '\r',
        ][..],
    );
    prop_oneof![
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), ch).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<Index>().prop_map(Edit::DuplicateLine),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        match e {
            Edit::Delete(i) if !chars.is_empty() => {
                chars.remove(i.index(chars.len()));
            }
            Edit::Insert(i, c) => chars.insert(i.index(chars.len() + 1), *c),
            Edit::DuplicateLine(i) => {
                let text: String = chars.iter().collect();
                let lines: Vec<&str> = text.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let k = i.index(lines.len());
                    let mut out = String::new();
                    for (j, l) in lines.iter().enumerate() {
                        out.push_str(l);
                        if j == k {
                            out.push_str(l);
                        }
                    }
                    chars = out.chars().collect();
                }
            }
            Edit::Delete(_) => {}
        }
    }
    chars.into_iter().collect()
}

/// Clean workflows: valid tasks whose `depends_on` lists name random tasks, itself included.
fn clean_workflow() -> impl Strategy<Value = Vec<(String, Vec<usize>)>> {
    (1usize..8).prop_flat_map(|n| {
        prop::collection::vec(prop::collection::vec(0..n, 0..3), n).prop_map(|deps| {
            deps.into_iter()
                .enumerate()
                .map(|(i, d)| (format!("task{i}"), d))
                .collect()
        })
    })
}

fn clean_yaml(tasks: &[(String, Vec<usize>)]) -> String {
    let mut out = String::from("name: clean\ntasks:\n");
    for (id, deps) in tasks {
        let deps: Vec<&str> = deps.iter().map(|&d| tasks[d].0.as_str()).collect();
        out.push_str(&format!(
            "  {id}:\n    type: custom\n    handler: h\n    capabilities: [x]\n    estimated_duration: 5m\n    depends_on: [{}]\n",
            deps.join(", ")
        ));
    }
    out
}

/// Whether the graph has a cycle through two or more tasks (self-dependencies left out).
fn has_long_cycle(tasks: &[(String, Vec<usize>)]) -> bool {
    let n = tasks.len();
    let prereqs: Vec<BTreeSet<usize>> = tasks
        .iter()
        .enumerate()
        .map(|(i, (_, d))| d.iter().copied().filter(|&p| p != i).collect())
        .collect();
    let mut left: Vec<usize> = prereqs.iter().map(BTreeSet::len).collect();
    let mut done = vec![false; n];
    let mut progress = true;
    while progress {
        progress = false;
        for i in 0..n {
            if !done[i] && left[i] == 0 {
                done[i] = true;
                progress = true;
                for (j, p) in prereqs.iter().enumerate() {
                    if p.contains(&i) {
                        left[j] -= 1;
                    }
                }
            }
        }
    }
    done.iter().any(|d| !d)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_strings_never_panic_the_pipeline(text in ".*") {
        run_pipeline(&text)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_pipeline(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        run_pipeline(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn yaml_like_noise_never_panics_the_pipeline(
        text in "([a-z_]{0,6}|[:\\-\\[\\]{},'\"#&*!|> \t\n]){0,80}"
    ) {
        run_pipeline(&text)?;
    }

    #[test]
    fn generated_workflows_never_panic_and_locate_every_problem(doc in messy_workflow()) {
        run_pipeline(&doc.yaml())?;
        run_pipeline(&doc.json())?;
    }

    #[test]
    fn edited_workflows_never_panic_and_locate_every_problem(
        doc in messy_workflow(),
        edits in prop::collection::vec(edit(), 1..6),
        as_json in any::<bool>(),
    ) {
        let text = if as_json { doc.json() } else { doc.yaml() };
        run_pipeline(&apply(&text, &edits))?;
    }

    #[test]
    fn error_columns_count_characters_not_bytes(
        text in "[{}\\[\\]\":, a-z0-9\n\u{e9}\u{65e5}\u{1f600}]{0,60}",
        format in prop_oneof![Just(Format::Yaml), Just(Format::Json)],
    ) {
        // Replacing each non-ASCII character by an ASCII letter that means nothing to either
        // reader (not in `true`, `false`, `null` or a number) keeps every position, counted
        // in characters, where it was.
        let ascii: String = text.chars().map(|c| if c.is_ascii() { c } else { 'x' }).collect();
        let position = |t: &str| {
            parse_workflow(t, format).err().and_then(|d| d.location).map(|l| (l.line, l.column))
        };
        prop_assert_eq!(position(&text), position(&ascii), "{:?} vs {:?}", text, ascii);
    }

    #[test]
    fn cycles_in_files_are_reported_at_their_first_task(tasks in clean_workflow()) {
        let text = clean_yaml(&tasks);
        let parsed = parse_workflow(&text, Format::Yaml).unwrap();
        prop_assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let v = validate(&parsed.workflow, Some(&parsed.source_map));
        check_locations(&text, &v.diagnostics)?;
        let lines: Vec<&str> = text.lines().collect();
        let mut cycle_messages = 0;
        for d in v.errors() {
            let l = d.location.unwrap();
            let line = lines[l.line as usize - 1];
            if let Some(rest) = d.message.strip_prefix("dependency cycle: ") {
                cycle_messages += 1;
                // Reported at the key of the first task it names.
                let first = rest.split(" -> ").next().unwrap();
                prop_assert_eq!(line, format!("  {first}:"), "{}", d);
                prop_assert_eq!(l.column, 3);
            } else {
                let id = d.message.strip_prefix("task `").and_then(|m| m.strip_suffix("` depends on itself"));
                prop_assert!(id.is_some(), "unexpected error {}", d);
                // Reported at the `depends_on` entry.
                prop_assert!(line.starts_with("    depends_on: ["), "{}", d);
            }
        }
        let self_loops: BTreeMap<usize, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, (_, d))| (i, d.iter().filter(|&&p| p == i).count()))
            .filter(|&(_, c)| c > 0)
            .collect();
        prop_assert_eq!(cycle_messages > 0, has_long_cycle(&tasks));
        prop_assert_eq!(v.plan.is_some(), !has_long_cycle(&tasks));
        let self_messages = v.errors().filter(|d| d.message.ends_with("depends on itself")).count();
        prop_assert_eq!(self_messages, self_loops.values().sum::<usize>());
    }
}
