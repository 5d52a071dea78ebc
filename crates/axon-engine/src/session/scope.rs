//! The scope check: which of an attempt's changed files its [`SessionScope`] forbids.
//!
//! Runs after a task and before its merge (DESIGN.md, "Sessions"), on the paths
//! [`RunSessions::changed_files`](super::git::RunSessions::changed_files) reports.
//!
//! # The rule
//!
//! A changed file violates the scope when `paths` (writable) is not empty and the file is
//! under none of them, or when it is under any of `read_only_paths`.
//!
//! A scope path is relative to the repository root and `/` separated; a leading `./` and a
//! trailing `/` are ignored, and `.` (or an empty path) is the whole repository. A file is
//! *under* a scope path when it is that path or inside it as a directory: `src` covers `src`
//! and `src/a.rs`, not `srcx/a.rs`. Scope paths may use two wildcards, matched segment by
//! segment: `*` matches any run of characters within one segment (never a `/`), and `**` as
//! a whole segment matches any number of segments, none included. A pattern covers a file
//! when it matches the file or one of its parent directories: `src/*.rs` covers `src/a.rs`
//! but not `src/x/a.rs`, `**/*.md` covers every Markdown file, and `crates/*` covers
//! everything below `crates`. There is no other syntax (no `?`, `[…]` or `!`).

use axon_core::model::SessionScope;

/// The files of `changed` that `scope` forbids, in the order given (see the module docs for
/// the rule).
pub fn violations(changed: &[String], scope: &SessionScope) -> Vec<String> {
    let writable: Vec<Vec<&str>> = scope.paths.iter().map(|p| segments(p)).collect();
    let read_only: Vec<Vec<&str>> = scope.read_only_paths.iter().map(|p| segments(p)).collect();
    changed
        .iter()
        .filter(|file| {
            let file = segments(file);
            let outside = !writable.is_empty() && !writable.iter().any(|p| covers(p, &file));
            outside || read_only.iter().any(|p| covers(p, &file))
        })
        .cloned()
        .collect()
}

/// A path's segments, without `.` segments, empty segments (a leading `./`, a trailing or
/// doubled `/`) or a leading `/`.
fn segments(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect()
}

/// Whether `pattern` matches `path` or one of its parent directories.
fn covers(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        // Pattern used up: what is left of the path is inside the matched directory.
        None => true,
        Some((&"**", rest)) => (0..=path.len()).any(|skip| covers(rest, &path[skip..])),
        Some((seg, rest)) => match path.split_first() {
            Some((name, path_rest)) => segment_matches(seg, name) && covers(rest, path_rest),
            None => false,
        },
    }
}

/// Whether one segment matches a pattern segment where `*` stands for any run of characters.
fn segment_matches(pattern: &str, name: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut name) = name.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts {
        match name.find(part) {
            Some(i) => name = &name[i + part.len()..],
            None => return false,
        }
    }
    name.len() >= last.len() && name.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(paths: &[&str], read_only: &[&str]) -> SessionScope {
        SessionScope {
            paths: paths.iter().map(|s| (*s).to_owned()).collect(),
            read_only_paths: read_only.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn files(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn empty_scope_allows_everything() {
        let changed = files(&["a", "src/b.rs", "x/y/z"]);
        assert!(violations(&changed, &SessionScope::default()).is_empty());
    }

    #[test]
    fn files_outside_writable_paths_violate() {
        let changed = files(&["src/a.rs", "srcx/a.rs", "src", "docs/x.md", "README.md"]);
        assert_eq!(
            violations(&changed, &scope(&["src", "docs/"], &[])),
            ["srcx/a.rs", "README.md"]
        );
    }

    #[test]
    fn files_under_read_only_paths_violate() {
        let changed = files(&["src/a.rs", "src/gen/b.rs", "src/generated.rs"]);
        assert_eq!(
            violations(&changed, &scope(&[], &["./src/gen/"])),
            ["src/gen/b.rs"]
        );
        assert_eq!(
            violations(&changed, &scope(&["src"], &["src/gen"])),
            ["src/gen/b.rs"]
        );
    }

    #[test]
    fn paths_are_normalised() {
        let changed = files(&["src/a.rs", "lib/b.rs"]);
        assert_eq!(violations(&changed, &scope(&["./src/"], &[])), ["lib/b.rs"]);
        assert!(violations(&changed, &scope(&["."], &[])).is_empty());
        assert!(violations(&changed, &scope(&["./"], &[])).is_empty());
        assert_eq!(violations(&changed, &scope(&[], &["."])), changed);
    }

    #[test]
    fn globs_match_within_and_across_segments() {
        let changed = files(&[
            "src/a.rs",
            "src/x/b.rs",
            "src/c.txt",
            "docs/guide/intro.md",
            "README.md",
            "crates/core/lib.rs",
            "crates.toml",
        ]);
        assert_eq!(
            violations(&changed, &scope(&["src/*.rs", "**/*.md", "crates/*"], &[])),
            ["src/x/b.rs", "src/c.txt", "crates.toml"]
        );
        assert_eq!(
            violations(&changed, &scope(&[], &["src/**/b.rs", "*.md"])),
            ["src/x/b.rs", "README.md"]
        );
        assert_eq!(
            violations(&changed, &scope(&["s*c/**"], &[])),
            [
                "docs/guide/intro.md",
                "README.md",
                "crates/core/lib.rs",
                "crates.toml"
            ]
        );
    }

    #[test]
    fn segment_wildcards() {
        assert!(segment_matches("*", "anything"));
        assert!(segment_matches("a*b*c", "abc"));
        assert!(segment_matches("a*b*c", "axxbyyc"));
        assert!(!segment_matches("a*b*c", "axxbyy"));
        assert!(!segment_matches("*.rs", "a.rs.bak"));
        assert!(segment_matches("*.rs", ".rs"));
        assert!(!segment_matches("ab*ba", "aba"));
    }

    #[test]
    fn unicode_and_spaces_are_plain_characters() {
        let changed = files(&["dir with space/ünïcödé.txt", "dir/x"]);
        assert_eq!(
            violations(&changed, &scope(&["dir with space"], &[])),
            ["dir/x"]
        );
    }
}
