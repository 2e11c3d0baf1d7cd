//! The RBAC table (in the document [`DOC`]): one row per rule (and API group) of the ClusterRoles
//! and Roles in `config/rbac/` (which hack/lint.sh keeps equal to the chart's).
//! The "Why" column is the one hand-written part: the generator keeps each
//! rule's reason from the current table and leaves a new rule's empty, which
//! the check then reports.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use serde_json::Value;

use crate::check::Checks;
use crate::markdown::{self, code};

/// The document that holds the RBAC table.
pub const DOC: &str = "docs/operator.md";
/// The marker name of its section there.
pub const SECTION: &str = "rbac-reference";
/// Where the operator's RBAC manifests live.
const FOLDER: &str = "config/rbac";

/// One rule for one API group, as its table row says it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    /// `ClusterRole` or `Role`.
    kind: String,
    /// `""` for the core group.
    group: String,
    resources: Vec<String>,
    names: Vec<String>,
    verbs: Vec<String>,
}

impl Rule {
    /// The rule with its lists sorted: two rows mean the same rule when their
    /// keys are equal, whatever order they list things in.
    fn key(&self) -> Rule {
        let sorted = |v: &Vec<String>| {
            let mut v = v.clone();
            v.sort();
            v
        };
        Rule {
            kind: self.kind.clone(),
            group: self.group.clone(),
            resources: sorted(&self.resources),
            names: sorted(&self.names),
            verbs: sorted(&self.verbs),
        }
    }

    fn describe(&self) -> String {
        let names = if self.names.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.names.join(","))
        };
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!(
            "{} {group} {}{names}: {}",
            self.kind,
            self.resources.join(","),
            self.verbs.join(",")
        )
    }

    fn cells(&self) -> [String; 3] {
        let mut group = if self.group.is_empty() {
            "core".to_string()
        } else {
            code(&self.group)
        };
        if self.kind == "Role" {
            group.push_str(" (Role)");
        }
        let list = |v: &[String]| v.iter().map(|s| code(s)).collect::<Vec<_>>().join(", ");
        let mut resources = list(&self.resources);
        if !self.names.is_empty() {
            resources.push_str(&format!(" ({})", list(&self.names)));
        }
        [group, resources, self.verbs.join(", ")]
    }

    /// The rules a table row documents (one per API group in its first cell).
    fn from_row(cells: &[String]) -> Vec<Rule> {
        let kind = if cells[0].contains("(Role)") {
            "Role"
        } else {
            "ClusterRole"
        };
        let mut groups: Vec<String> = markdown::code_spans(&cells[0])
            .into_iter()
            .map(str::to_string)
            .collect();
        static CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"`[^`]*`").unwrap());
        let outside_code = CODE.replace_all(&cells[0], "");
        if outside_code.contains("core") {
            groups.push(String::new());
        }
        let (resources, names) = cells[1].split_once('(').unwrap_or((&cells[1], ""));
        let spans = |s: &str| -> Vec<String> {
            markdown::code_spans(s)
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        let verbs: Vec<String> = cells[2]
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        groups
            .into_iter()
            .map(|group| Rule {
                kind: kind.into(),
                group,
                resources: spans(resources),
                names: spans(names),
                verbs: verbs.clone(),
            })
            .collect()
    }
}

/// The rules of every ClusterRole, then every Role, in `config/rbac/`, each
/// with the file it comes from.
pub fn rules(root: &Path) -> Result<Vec<(Rule, String)>, String> {
    let mut files: Vec<String> = std::fs::read_dir(root.join(FOLDER))
        .map_err(|e| format!("cannot list {FOLDER}: {e}"))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .map(|name| format!("{FOLDER}/{name}"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in &files {
        let text = crate::read(root, file)?;
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| format!("{file}: {e}"))?;
        docs.extend(parsed.into_iter().map(|doc| (doc, file.clone())));
    }
    let mut out = Vec::new();
    for kind in ["ClusterRole", "Role"] {
        for (doc, file) in docs.iter().filter(|(d, _)| d["kind"] == kind) {
            for rule in doc["rules"].as_array().into_iter().flatten() {
                let list = |key: &str| -> Vec<String> {
                    rule[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                };
                let mut groups = list("apiGroups");
                if groups.is_empty() {
                    groups.push(String::new());
                }
                for group in groups {
                    let r = Rule {
                        kind: kind.into(),
                        group,
                        resources: list("resources"),
                        names: list("resourceNames"),
                        verbs: list("verbs"),
                    };
                    out.push((r, file.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// The reasons written in the current table, per rule.
fn reasons(current: &str) -> HashMap<Rule, String> {
    let table = markdown::table(current);
    let why = table.column("Why").unwrap_or(3);
    table
        .rows
        .iter()
        .filter(|cells| cells.len() > 2)
        .flat_map(|cells| {
            let reason = cells.get(why).cloned().unwrap_or_default();
            Rule::from_row(cells)
                .into_iter()
                .map(move |r| (r.key(), reason.clone()))
        })
        .collect()
}

/// The section's text: the table, each rule's reason kept from `current`.
pub fn markdown(rules: &[(Rule, String)], current: &str) -> String {
    let reasons = reasons(current);
    let mut lines = vec![
        "| API group | Resources | Verbs | Why |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    for (rule, _) in rules {
        let [group, resources, verbs] = rule.cells();
        let why = reasons.get(&rule.key()).map(String::as_str).unwrap_or("");
        lines.push(format!("| {group} | {resources} | {verbs} | {why} |"));
    }
    lines.join("\n") + "\n"
}

/// The RBAC table in `text` (the text of [`DOC`]) lists exactly the rules of
/// `config/rbac/`, each with a reason, and is what `make generate` writes.
pub fn check(checks: &mut Checks, root: &Path, text: &str) {
    let Some(current) = checks.section(DOC, text, SECTION) else {
        return;
    };
    let rules = match rules(root) {
        Ok(rules) => rules,
        Err(e) => {
            checks.ok(false, || {
                format!("{e} ({DOC}'s RBAC table is checked against it)")
            });
            return;
        }
    };
    checks.ok(!rules.is_empty(), || {
        format!("{FOLDER}/ has no ClusterRole or Role rules ({DOC}'s RBAC table is checked against them)")
    });
    let reasons = reasons(current);
    let documented: BTreeSet<Rule> = reasons.keys().cloned().collect();
    let mut actual = BTreeSet::new();
    for (rule, file) in &rules {
        let key = rule.key();
        checks.ok(documented.contains(&key), || {
            format!(
                "{DOC} RBAC table lacks the rule {} (from {file}; run `make generate`, then say why in its last column)",
                key.describe()
            )
        });
        if let Some(why) = reasons.get(&key) {
            checks.ok(!why.is_empty(), || {
                format!(
                    "{DOC} RBAC table: the rule {} has no reason in the Why column",
                    key.describe()
                )
            });
        }
        actual.insert(key);
    }
    for key in documented.difference(&actual) {
        checks.ok(false, || {
            format!(
                "{DOC} RBAC table documents {}, which {FOLDER}/ does not grant",
                key.describe()
            )
        });
    }
    checks.ok(current == markdown(&rules, current), || {
        "{DOC} RBAC table differs from what config/rbac generates (run `make generate`)".into()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: &str, group: &str, resources: &[&str], names: &[&str], verbs: &[&str]) -> Rule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Rule {
            kind: kind.into(),
            group: group.into(),
            resources: v(resources),
            names: v(names),
            verbs: v(verbs),
        }
    }

    #[test]
    fn a_row_reads_back_as_the_rule_it_was_written_from() {
        for r in [
            rule(
                "ClusterRole",
                "",
                &["configmaps", "secrets"],
                &[],
                &["get", "create"],
            ),
            rule(
                "Role",
                "coordination.k8s.io",
                &["leases"],
                &["multivac-operator"],
                &["get", "patch"],
            ),
        ] {
            let cells: Vec<String> = r.cells().into_iter().chain([String::new()]).collect();
            assert_eq!(Rule::from_row(&cells), std::slice::from_ref(&r));
        }
    }

    #[test]
    fn reasons_survive_regeneration_and_a_new_rule_gets_an_empty_one() {
        let old = vec![(
            rule("ClusterRole", "apps", &["deployments"], &[], &["get"]),
            "f".to_string(),
        )];
        let md = "| API group | Resources | Verbs | Why |\n|---|---|---|---|\n\
                  | `apps` | `deployments` | get | the reason |\n";
        let mut new = old.clone();
        new.push((
            rule("ClusterRole", "", &["pods"], &[], &["list"]),
            "f".into(),
        ));
        let regenerated = markdown(&new, md);
        assert!(
            regenerated.contains("| `apps` | `deployments` | get | the reason |"),
            "{regenerated}"
        );
        assert!(
            regenerated.contains("| core | `pods` | list |  |"),
            "{regenerated}"
        );
    }
}
