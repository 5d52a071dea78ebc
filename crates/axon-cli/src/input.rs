//! Reading workflow and agents files (or standard input) and running them through the
//! core's reader and validator.

use std::io::Read;
use std::path::Path;

use axon_core::agents::{AgentSpec, check_feasibility, parse_agents};
use axon_core::diagnostic::Diagnostic;
use axon_core::format::{Format, MAX_FILE_BYTES, ParsedWorkflow, parse_workflow};
use axon_core::validate::{Validation, validate};

/// A file's text and the name used in messages.
pub struct Source {
    /// The path as the user wrote it, or `<stdin>`.
    pub name: String,
    /// The text.
    pub text: String,
    /// How to read it.
    pub format: Format,
}

/// Problems of one file, with the name to print before them.
pub struct FileReport {
    /// The path as the user wrote it, or `<stdin>`.
    pub name: String,
    /// Every problem, errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
}

impl FileReport {
    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Reads `path` (`-` is standard input, read as YAML).
pub fn read_source(path: &Path) -> Result<Source, FileReport> {
    let is_stdin = path.as_os_str() == "-";
    let name = if is_stdin {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    };
    let fail = |message: String| FileReport {
        name: name.clone(),
        diagnostics: vec![Diagnostic::error(None, message)],
    };
    let limit = MAX_FILE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    let read = if is_stdin {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        match std::fs::File::open(path) {
            Ok(f) => f.take(limit).read_to_end(&mut bytes),
            Err(e) => return Err(fail(format!("cannot open file: {e}"))),
        }
    };
    if let Err(e) = read {
        return Err(fail(format!("cannot read file: {e}")));
    }
    if bytes.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "file is larger than {MAX_FILE_BYTES} bytes; Axon does not read files this large"
        )));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Err(fail(format!(
                "file is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )));
        }
    };
    let format = if is_stdin {
        Format::Yaml
    } else {
        Format::from_path(path)
    };
    Ok(Source { name, text, format })
}

/// A workflow file read and validated.
pub struct CheckedWorkflow {
    /// Its problems.
    pub report: FileReport,
    /// The workflow and the validation, when the file could be read at all.
    pub checked: Option<(ParsedWorkflow, Validation)>,
    /// The text as read (once: standard input cannot be read twice), when it parsed.
    pub text: Option<(String, Format)>,
}

/// Reads and validates a workflow file; with `agents`, also checks feasibility.
pub fn check_workflow(path: &Path, agents: Option<&[AgentSpec]>) -> CheckedWorkflow {
    let source = match read_source(path) {
        Ok(s) => s,
        Err(report) => {
            return CheckedWorkflow {
                report,
                checked: None,
                text: None,
            };
        }
    };
    let parsed = match parse_workflow(&source.text, source.format) {
        Ok(p) => p,
        Err(mut d) => {
            if d.message.starts_with("unknown field `agents`") {
                d.message =
                    "this looks like an agents file, not a workflow; pass it with --agents".into();
            }
            return CheckedWorkflow {
                report: FileReport {
                    name: source.name,
                    diagnostics: vec![d],
                },
                checked: None,
                text: None,
            };
        }
    };
    let validation = validate(&parsed.workflow, Some(&parsed.source_map));
    let mut diagnostics = parsed.diagnostics.clone();
    diagnostics.extend(validation.diagnostics.iter().cloned());
    if let Some(agents) = agents {
        diagnostics.extend(check_feasibility(
            &parsed.workflow,
            agents,
            Some(&parsed.source_map),
        ));
    }
    axon_core::diagnostic::sort(&mut diagnostics);
    CheckedWorkflow {
        report: FileReport {
            name: source.name,
            diagnostics,
        },
        checked: Some((parsed, validation)),
        text: Some((source.text, source.format)),
    }
}

/// Reads an agents file: the agents (when it could be read) and its problems.
pub fn load_agents(path: &Path) -> (Option<Vec<AgentSpec>>, FileReport) {
    let (agents, report, _) = load_agents_with_text(path);
    (agents, report)
}

/// As [`load_agents`], also returning the text as read, when it parsed.
pub fn load_agents_with_text(
    path: &Path,
) -> (Option<Vec<AgentSpec>>, FileReport, Option<(String, Format)>) {
    let source = match read_source(path) {
        Ok(s) => s,
        Err(report) => return (None, report, None),
    };
    match parse_agents(&source.text, source.format) {
        Ok(p) => (
            Some(p.agents),
            FileReport {
                name: source.name,
                diagnostics: p.diagnostics,
            },
            Some((source.text, source.format)),
        ),
        Err(d) => (
            None,
            FileReport {
                name: source.name,
                diagnostics: vec![d],
            },
            None,
        ),
    }
}
