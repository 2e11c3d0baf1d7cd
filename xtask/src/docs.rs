//! `cargo xtask check-docs`: README.md and docs/*.md say only what the code
//! and the repository hold, so the documents fail the tests instead of drifting.
//!
//! 1. the spec reference names every CRD field with its default (spec_table);
//! 2. the configuration tables match the clap command lines both ways
//!    (env_table), and the RBAC table matches `config/rbac/` (rbac_table);
//! 3. every repository path written in inline code, code blocks or relative
//!    links is tracked by git (what a fresh clone has); a line that says
//!    "planned" may name paths that do not exist yet (and gets a warning once
//!    they do); links to `#heading` (here or in another document) name a
//!    heading that exists;
//! 4. every test cited as `path/to/file.rs::test_name` or `fn test_name`
//!    exists, and docs/debugging.md cites at least one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use crate::check::Checks;
use crate::markdown;
use crate::{crd, env_table, rbac_table, spec_table};

/// First path components that mark a word as a repository path; any top-level
/// entry git tracks counts too.
const ROOTS: &[&str] = &[
    "app",
    "operator",
    "xtask",
    "hack",
    "crds",
    "charts",
    "config",
    "docs",
    ".ci",
    ".cargo",
    ".gitlab-ci.yml",
    "Makefile",
    "Cargo.toml",
    "Cargo.lock",
    "Dockerfile.app",
    "Dockerfile.operator",
    "README.md",
];

/// The project's front page, checked like the documents under docs/.
const README: &str = "README.md";

/// Runs every check.
pub fn check(root: &Path) -> Checks {
    let mut checks = Checks::default();
    let repo = Repo::new(root);
    let mut docs = vec![README.to_string()];
    let mut more: Vec<String> = repo
        .files
        .iter()
        .filter(|f| f.starts_with("docs/") && f.ends_with(".md") && f.matches('/').count() == 1)
        .cloned()
        .collect();
    more.sort();
    docs.extend(more);
    let texts: BTreeMap<String, String> = docs
        .iter()
        .filter_map(|d| crate::read(root, d).ok().map(|t| (d.clone(), t)))
        .collect();
    let text_of = |doc: &str| texts.get(doc).map(String::as_str).unwrap_or("");

    let crd = crd::json();
    let generated = crd::yaml();
    for path in crd::paths() {
        let committed = crate::read(root, &path).unwrap_or_default();
        checks.ok(committed == generated, || {
            format!("{path} is not what the MultiVac types generate (run `make generate`)")
        });
    }
    spec_table::check(&mut checks, text_of(spec_table::DOC), &crd);
    for table in [env_table::app(), env_table::operator()] {
        env_table::check(&mut checks, text_of(table.doc), &table);
    }
    rbac_table::check(&mut checks, root, text_of(rbac_table::DOC));

    let mut cited = BTreeMap::new();
    for (doc, text) in &texts {
        paths(&mut checks, &repo, doc, text);
        cited.insert(doc.as_str(), cited_tests(text));
        anchors(&mut checks, &repo, doc, text);
    }
    tests(&mut checks, &repo, &cited);
    if texts.contains_key("docs/debugging.md") {
        checks.ok(!cited["docs/debugging.md"].is_empty(), || {
            "docs/debugging.md cites no regression test (write them as `app/tests/FILE.rs::test_name`)"
                .into()
        });
    }
    checks
}

/// What git tracks: a fresh clone (CI) has these and nothing else.
struct Repo {
    root: PathBuf,
    /// Tracked files; empty outside a git work tree.
    files: BTreeSet<String>,
    /// Tracked files and their folders; None outside a git work tree, where
    /// the file system is all there is.
    paths: Option<BTreeSet<String>>,
}

impl Repo {
    fn new(root: &Path) -> Repo {
        let out = std::process::Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success());
        let files: BTreeSet<String> = out
            .iter()
            .flat_map(|o| o.stdout.split(|b| *b == 0))
            .filter(|f| !f.is_empty())
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let paths = out.is_some().then(|| {
            let mut paths = BTreeSet::new();
            for f in &files {
                let parts: Vec<&str> = f.split('/').collect();
                for i in 1..=parts.len() {
                    paths.insert(parts[..i].join("/"));
                }
            }
            paths
        });
        Repo {
            root: root.to_path_buf(),
            files,
            paths,
        }
    }

    fn exists(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        let glob = path.contains(['*', '?', '[']);
        match &self.paths {
            Some(tracked) if glob => {
                let pattern = glob_regex(path);
                tracked.iter().any(|t| pattern.is_match(t))
            }
            Some(tracked) => tracked.contains(path),
            None if glob => false,
            None => self.root.join(path).exists(),
        }
    }

    fn untracked_note(&self, path: &str) -> &'static str {
        if self.paths.is_some() && self.root.join(path.trim_end_matches('/')).exists() {
            " (it exists here but git does not track it: commit it, or a fresh clone will not have it)"
        } else {
            ""
        }
    }

    fn is_root(&self, first: &str) -> bool {
        ROOTS.contains(&first)
            || self
                .paths
                .as_ref()
                .is_some_and(|p| !first.is_empty() && p.contains(first))
    }
}

/// A shell glob as a regex over whole paths (`*` crosses folders, as fnmatch).
fn glob_regex(glob: &str) -> Regex {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).unwrap_or_else(|_| Regex::new("^$").unwrap())
}

/// The words of one line that may name repository paths: inline code and
/// relative link targets (outside code blocks), every word (inside).
fn candidate_paths(line: &str, in_fence: bool) -> Vec<&str> {
    static LINK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\]\(([^)#\s]+)").unwrap());
    static SCHEME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\w+:").unwrap());
    if in_fence {
        return line.split_whitespace().collect();
    }
    let mut words: Vec<&str> = markdown::code_spans(line)
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    words.extend(
        LINK.captures_iter(line)
            .map(|c| c.get(1).unwrap().as_str())
            .filter(|t| !SCHEME.is_match(t)),
    );
    words
}

/// A word as a path: quotes, punctuation, `:42` and `::test` removed.
fn normalize(word: &str) -> String {
    static TRAILING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[.:,]+$").unwrap());
    static LINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r":\d+(-\d+)?$").unwrap());
    let word = word.trim_matches(|c| "'\"(),;".contains(c));
    let word = TRAILING.replace(word, "");
    let word = LINE.replace(&word, "");
    let word = word.split("::").next().unwrap_or_default();
    word.strip_prefix("./").unwrap_or(word).to_string()
}

fn paths(checks: &mut Checks, repo: &Repo, doc: &str, text: &str) {
    for (n, line, in_fence) in markdown::lines(text) {
        let planned = line.to_lowercase().contains("planned");
        for word in candidate_paths(line, in_fence) {
            let p = normalize(word);
            let first = p.split('/').next().unwrap_or_default();
            if !repo.is_root(first) || p.contains(['$', '<']) {
                continue;
            }
            let exists = repo.exists(&p);
            if planned && !exists {
                continue;
            }
            if planned && exists && p != README {
                checks.warn(format!(
                    "{doc}:{n}: `{p}` exists now but the line says planned"
                ));
            }
            checks.ok(exists, || {
                format!(
                    "{doc}:{n}: `{p}` is not in the repository{}",
                    repo.untracked_note(&p)
                )
            });
        }
    }
}

/// A cited test: the line, the file it names (if any) and the function.
type Cite = (usize, Option<String>, String);

fn cited_tests(text: &str) -> Vec<Cite> {
    static IN_FILE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^([\w./-]+\.rs)::(\w+)$").unwrap());
    static FN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^fn (\w+)$").unwrap());
    let mut cites = Vec::new();
    for (n, line, in_fence) in markdown::lines(text) {
        if in_fence {
            continue;
        }
        for span in markdown::code_spans(line) {
            let span = span.trim();
            if let Some(c) = IN_FILE.captures(span) {
                cites.push((n, Some(c[1].to_string()), c[2].to_string()));
            } else if let Some(c) = FN.captures(span) {
                cites.push((n, None, c[1].to_string()));
            }
        }
    }
    cites
}

fn tests(checks: &mut Checks, repo: &Repo, cited: &BTreeMap<&str, Vec<Cite>>) {
    let rust_files: Vec<&String> = repo.files.iter().filter(|f| f.ends_with(".rs")).collect();
    let read = |f: &str| std::fs::read_to_string(repo.root.join(f)).unwrap_or_default();
    for (doc, cites) in cited {
        for (n, file, name) in cites {
            let defines = Regex::new(&format!(r"\bfn\s+{}\b", regex::escape(name))).unwrap();
            let (found, place) = match file {
                Some(f) => (repo.exists(f) && defines.is_match(&read(f)), f.as_str()),
                None => (
                    rust_files.iter().any(|f| defines.is_match(&read(f))),
                    "the workspace",
                ),
            };
            checks.ok(found, || {
                format!("{doc}:{n}: test `{name}` is not defined in {place}")
            });
        }
    }
}

/// `path/../x` as `x`: the path a relative link resolves to.
fn normpath(path: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

fn anchors(checks: &mut Checks, repo: &Repo, doc: &str, text: &str) {
    static LINK: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\]\(([^)#\s]*)#([^)\s]+)\)").unwrap());
    static SCHEME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\w+:").unwrap());
    let base = Path::new(doc).parent().unwrap_or(Path::new(""));
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        for c in LINK.captures_iter(line) {
            let (target, fragment) = (&c[1], &c[2]);
            if SCHEME.is_match(target) {
                continue;
            }
            let page = if target.is_empty() {
                doc.to_string()
            } else {
                normpath(&base.join(target))
            };
            if checks.ok(repo.exists(&page), || {
                format!("{doc}:{n}: link to {page}, which is not in the repository")
            }) {
                let headings = markdown::slugs(
                    &std::fs::read_to_string(repo.root.join(&page)).unwrap_or_default(),
                );
                checks.ok(headings.contains(fragment), || {
                    format!("{doc}:{n}: no heading for #{fragment} in {page}")
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_paths_without_punctuation_lines_or_test_names() {
        assert_eq!(normalize("'hack/test.sh';"), "hack/test.sh");
        assert_eq!(normalize("(hack/test.sh),"), "hack/test.sh");
        assert_eq!(normalize("app/src/http.rs:42-50"), "app/src/http.rs");
        assert_eq!(normalize("app/tests/x.rs::a_test"), "app/tests/x.rs");
        assert_eq!(normalize("./hack/lint.sh."), "hack/lint.sh");
    }

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob_regex("hack/*.sh").is_match("hack/bench/app.sh"));
        assert!(glob_regex("docs/[ad]*.md").is_match("docs/debugging.md"));
        assert!(!glob_regex("docs/[!ad]*.md").is_match("docs/debugging.md"));
        assert!(!glob_regex("hack/?.sh").is_match("hack/ab.sh"));
    }

    #[test]
    fn tests_are_cited_by_file_or_by_name_outside_code_blocks() {
        let text = "see `app/tests/a.rs::one` and `fn two`\n```\n`fn three`\n```\n";
        assert_eq!(
            cited_tests(text),
            [
                (1, Some("app/tests/a.rs".into()), "one".into()),
                (1, None, "two".into())
            ]
        );
    }

    #[test]
    fn relative_links_resolve_against_the_document() {
        assert_eq!(
            normpath(&Path::new("docs").join("../README.md")),
            "README.md"
        );
        assert_eq!(
            normpath(&Path::new("docs").join("./debugging.md")),
            "docs/debugging.md"
        );
    }
}
