//! Problems found in a workflow or agents file, with where they are.
//!
//! `axon-core` only carries positions; the CLI renders them as `FILE:LINE:COL: error: MESSAGE`.

use std::fmt;

/// A position in a source text. Lines and columns are 1-based and count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// 1-based line.
    pub line: u64,
    /// 1-based column, in characters.
    pub column: u64,
    /// Byte offset from the start of the text, when known.
    pub byte_offset: Option<u64>,
}

impl Location {
    /// A location from a YAML parser position, or `None` when the parser did not know it.
    pub(crate) fn from_saphyr(l: serde_saphyr::Location) -> Option<Self> {
        (l.line() > 0).then(|| Self {
            line: l.line(),
            column: l.column().max(1),
            byte_offset: l.span().byte_offset(),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// Worth a look, but the file is usable.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// One problem, with its position when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where in the file; `None` when no position applies.
    pub location: Option<Location>,
    /// A lowercase sentence without a trailing period.
    pub message: String,
}

impl Diagnostic {
    /// An error.
    pub fn error(location: Option<Location>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            location,
            message: message.into(),
        }
    }

    /// A warning.
    pub fn warning(location: Option<Location>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            location,
            message: message.into(),
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(l) => write!(f, "{l}: {}: {}", self.severity, self.message),
            None => write!(f, "{}: {}", self.severity, self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// Sorts problems by position (those without one last), keeping the order of equal ones.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| {
        d.location
            .map_or((u64::MAX, u64::MAX), |l| (l.line, l.column))
    });
}

/// The name among `candidates` closest to `wanted`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a, I>(wanted: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(wanted, c);
        if score >= 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        let names = ["timeout", "name", "depends_on"];
        assert_eq!(did_you_mean("timeoutt", names), Some("timeout"));
        assert_eq!(did_you_mean("depend_on", names), Some("depends_on"));
        assert_eq!(did_you_mean("zzz", names), None);
    }

    #[test]
    fn sorts_by_position_with_unpositioned_last() {
        let at = |line| {
            Some(Location {
                line,
                column: 1,
                byte_offset: None,
            })
        };
        let mut d = vec![
            Diagnostic::error(None, "c"),
            Diagnostic::error(at(9), "b"),
            Diagnostic::error(at(2), "a"),
        ];
        sort(&mut d);
        let msgs: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs, ["a", "b", "c"]);
    }
}
