//! Identifier newtypes and the rules an identifier must follow.
//!
//! Task ids become parts of git branch names and file paths, so they are restricted
//! to a safe alphabet instead of being escaped.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest task or agent id accepted, in characters.
pub const MAX_ID_LEN: usize = 128;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string as an id without checking it; [`check_id`] says whether it is valid.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The id of a task within its workflow: the key under `tasks` in a workflow file.
    TaskId
);
string_id!(
    /// The id of a workflow (`id` in the file, or derived from its name).
    WorkflowId
);
string_id!(
    /// The id of an agent, as given in the agents file.
    AgentId
);

/// Checks an id against the rules of DESIGN.md: 1–128 characters of ASCII letters, digits,
/// `_`, `.` and `-`, starting with a letter, a digit or `_`.
///
/// # Errors
///
/// Returns a lowercase sentence saying what is wrong with the id.
pub fn check_id(id: &str) -> Result<(), String> {
    let Some(first) = id.chars().next() else {
        return Err("id is empty".to_owned());
    };
    let len = id.chars().count();
    if len > MAX_ID_LEN {
        return Err(format!(
            "id is {len} characters long; at most {MAX_ID_LEN} are allowed"
        ));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(format!(
            "id `{id}` must start with a letter, a digit or `_`, not `{first}`"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "id `{id}` contains `{}`; ids may only use letters, digits, `_`, `.` and `-`",
            bad.escape_default()
        ));
    }
    if id.contains("..") || id.ends_with('.') || id.ends_with(".lock") {
        return Err(format!(
            "id `{id}` cannot be part of a git branch name (no `..`, no trailing `.` or `.lock`)"
        ));
    }
    Ok(())
}

/// Derives an id from a human name: lowercase ASCII letters and digits, other runs of
/// characters collapsed into `-`. `"Feature: User Authentication"` becomes
/// `feature-user-authentication`. Returns `workflow` when nothing usable is left.
pub fn slugify(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.truncate(MAX_ID_LEN);
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "workflow".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_examples() {
        for ok in ["5A", "section_1.task_1", "_x", "a-b", "design"] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_unsafe_ids_with_a_reason() {
        assert!(check_id("a/b").unwrap_err().contains("`/`"));
        assert!(check_id("my task").unwrap_err().contains("` `"));
        assert!(check_id("").unwrap_err().contains("empty"));
        assert!(check_id("-a").unwrap_err().contains("must start"));
        assert!(check_id(&"a".repeat(129)).unwrap_err().contains("129"));
        assert!(check_id("a..b").is_err());
        assert!(check_id("x.lock").is_err());
    }

    #[test]
    fn slugify_makes_valid_ids() {
        assert_eq!(
            slugify("Feature: User Authentication"),
            "feature-user-authentication"
        );
        assert_eq!(slugify("!!!"), "workflow");
        assert_eq!(
            check_id(&slugify("Refactoring: Improve Code Quality")),
            Ok(())
        );
    }
}
