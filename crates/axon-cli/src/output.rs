//! Writing to the terminal: diagnostics in `FILE:LINE:COL: error: MESSAGE` form, and
//! standard output that tolerates a closed pipe (`axon plan ... | head`).

use std::borrow::Cow;
use std::io::Write;

use crate::input::FileReport;

/// Prints every problem of `report` to standard error, one line each.
pub fn print_report(report: &FileReport) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let name = one_line(&report.name);
    for d in &report.diagnostics {
        let message = one_line(&d.message);
        // A closed stderr leaves nowhere to complain; the exit code still tells.
        let _ = match d.location {
            Some(l) => writeln!(
                err,
                "{name}:{}:{}: {}: {message}",
                l.line, l.column, d.severity
            ),
            None => writeln!(err, "{name}: {}: {message}", d.severity),
        };
    }
}

/// `s` with its control characters escaped (`\n`, `\u{1b}`), so that a newline in a task id
/// or a path cannot split a problem over several lines.
pub fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes `text` to standard output.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Whether `e` is a write to a closed pipe, which is not a failure for a CLI.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `n thing` or `n things`.
pub fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("{n} {thing}")
    } else {
        format!("{n} {thing}s")
    }
}
