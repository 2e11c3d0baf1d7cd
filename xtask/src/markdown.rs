//! Just enough Markdown for the generator and the checks: generated sections
//! between marker comments, pipe tables, inline code and heading anchors.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- {name}:start -->\n"),
        format!("<!-- {name}:end -->"),
    )
}

/// The text between `<!-- name:start -->` and `<!-- name:end -->`, if both
/// markers are there.
pub fn section<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let (start, end) = markers(name);
    let from = text.find(&start)? + start.len();
    let to = from + text[from..].find(&end)?;
    Some(&text[from..to])
}

/// `text` with the section `name` replaced by `body`; None without markers.
pub fn replace_section(text: &str, name: &str, body: &str) -> Option<String> {
    let (start, end) = markers(name);
    let from = text.find(&start)? + start.len();
    let to = from + text[from..].find(&end)?;
    Some(format!("{}{body}{}", &text[..from], &text[to..]))
}

/// A pipe table: its header cells and its rows (the rule line dropped).
#[derive(Debug, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The index of the column titled `title`.
    pub fn column(&self, title: &str) -> Option<usize> {
        self.header.iter().position(|h| h == title)
    }

    /// The rows whose first cell is inline code, by that code, in order.
    pub fn by_first_code(&self) -> BTreeMap<String, &Vec<String>> {
        self.rows
            .iter()
            .filter(|cells| cells[0].starts_with('`'))
            .map(|cells| (cells[0].trim_matches('`').to_string(), cells))
            .collect()
    }
}

/// The rows of every pipe table in `block`, the first row being the header.
pub fn table(block: &str) -> Table {
    let mut rows = block
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('|'))
        .map(cells)
        .filter(|cells| !cells.iter().all(|c| is_rule(c)));
    Table {
        header: rows.next().unwrap_or_default(),
        rows: rows.collect(),
    }
}

/// The cells of one table line; `\|` stays inside its cell.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim_matches('|');
    let mut cells = vec![String::new()];
    let mut escaped = false;
    for c in line.chars() {
        if c == '|' && !escaped {
            cells.push(String::new());
        } else {
            cells.last_mut().expect("one cell at least").push(c);
        }
        escaped = c == '\\';
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

fn is_rule(cell: &str) -> bool {
    let inner = cell.trim_start_matches(':').trim_end_matches(':');
    !inner.is_empty() && inner.chars().all(|c| c == '-')
}

/// Escapes what would end a table cell.
pub fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `text` as inline code.
pub fn code(text: &str) -> String {
    format!("`{text}`")
}

/// The inline code spans of one line, without their backticks.
pub fn code_spans(line: &str) -> Vec<&str> {
    static SPAN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"`([^`]+)`").unwrap());
    SPAN.captures_iter(line)
        .map(|c| c.get(1).unwrap().as_str())
        .collect()
}

/// The lines of a document with their 1-based numbers and whether they sit
/// inside a fenced code block (the fence lines themselves are left out).
pub fn lines(text: &str) -> Vec<(usize, &str, bool)> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        out.push((i + 1, line, in_fence));
    }
    out
}

/// The anchors of the headings of a document, as GitHub and GitLab make them:
/// lowercase, punctuation dropped, spaces to hyphens.
pub fn slugs(text: &str) -> HashSet<String> {
    static PUNCTUATION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[^\w\- ]").unwrap());
    lines(text)
        .into_iter()
        .filter(|(_, line, in_fence)| !in_fence && line.starts_with('#'))
        .map(|(_, line, _)| {
            let title = line.trim_start_matches('#').trim().to_lowercase();
            PUNCTUATION.replace_all(&title, "").replace(' ', "-")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_and_the_text_around_it_stays() {
        let doc = "intro\n<!-- t:start -->\nold\n<!-- t:end -->\noutro\n";
        assert_eq!(section(doc, "t"), Some("old\n"));
        let new = replace_section(doc, "t", "new\n").unwrap();
        assert_eq!(new, "intro\n<!-- t:start -->\nnew\n<!-- t:end -->\noutro\n");
        assert_eq!(section(doc, "other"), None);
        assert_eq!(replace_section("no markers", "t", "x"), None);
    }

    #[test]
    fn table_cells_keep_escaped_pipes_and_skip_the_rule() {
        let t = table("| A | B |\n|---|:--:|\n| `x` | a \\| b |\n| y |  |\n");
        assert_eq!(t.header, ["A", "B"]);
        assert_eq!(t.rows, [vec!["`x`", "a \\| b"], vec!["y", ""]]);
        assert_eq!(t.column("B"), Some(1));
    }

    #[test]
    fn slugs_follow_the_hosting_sites_rules_and_skip_code_blocks() {
        let s = slugs(
            "# What `make test` runs\n## A real local node (`make e2e`)\n```\n# not a heading\n```\n",
        );
        assert!(s.contains("what-make-test-runs"), "{s:?}");
        assert!(s.contains("a-real-local-node-make-e2e"), "{s:?}");
        assert!(!s.contains("not-a-heading"));
    }
}
