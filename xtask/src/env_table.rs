//! The configuration tables (in the document [`EnvTable::doc`]): one row per environment variable of a
//! command line, read from its clap `Command` (flag, default, help), so an
//! option added to `multivac` or `multivac-operator` needs no change here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use clap::{ArgAction, CommandFactory};
use regex::Regex;

use crate::check::Checks;
use crate::markdown::{self, cell, code};

/// The document that holds both configuration tables.
const DOC: &str = "docs/reference.md";

/// A command line whose options a table documents.
pub struct Program {
    /// Its name in the table's "Used by" column.
    pub name: String,
    pub command: clap::Command,
}

/// The programs of one table, the document that holds it and the marker
/// name of its section there.
pub struct EnvTable {
    pub doc: &'static str,
    pub section: &'static str,
    pub programs: Vec<Program>,
}

/// `multivac server`, `multivac worker` (every subcommand of the app).
pub fn app() -> EnvTable {
    let cli = multivac::Cli::command();
    EnvTable {
        doc: DOC,
        section: "config-reference",
        programs: cli
            .get_subcommands()
            .map(|sub| Program {
                name: sub.get_name().to_string(),
                command: sub.clone(),
            })
            .collect(),
    }
}

/// `multivac-operator`.
pub fn operator() -> EnvTable {
    let command = multivac_operator::Cli::command();
    EnvTable {
        doc: DOC,
        section: "operator-config-reference",
        programs: vec![Program {
            name: command.get_name().to_string(),
            command,
        }],
    }
}

/// How one program reads one variable.
#[derive(Debug, Clone, PartialEq)]
struct Use {
    program: String,
    default: Option<String>,
    help: String,
}

/// One environment variable and every program that reads it.
#[derive(Debug)]
struct Variable {
    name: String,
    flag: String,
    uses: Vec<Use>,
}

/// The options a user sets: not hidden, not --help/--version.
fn options(command: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    command.get_arguments().filter(|a| {
        !a.is_hide_set() && !matches!(a.get_action(), ArgAction::Help | ArgAction::Version)
    })
}

/// The variables of a table in the order the programs declare them.
fn variables(table: &EnvTable) -> Vec<Variable> {
    let mut vars: Vec<Variable> = Vec::new();
    for program in &table.programs {
        for arg in options(&program.command) {
            let Some(env) = arg.get_env() else { continue };
            let name = env.to_string_lossy().into_owned();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect();
            let usage = Use {
                program: program.name.clone(),
                default: (!defaults.is_empty()).then(|| defaults.join(",")),
                help: help(arg),
            };
            match vars.iter_mut().find(|v| v.name == name) {
                Some(v) => v.uses.push(usage),
                None => vars.push(Variable {
                    name,
                    flag: arg.get_long().map(|l| format!("--{l}")).unwrap_or_default(),
                    uses: vec![usage],
                }),
            }
        }
    }
    vars
}

/// An option's help on one line, with the values it accepts.
fn help(arg: &clap::Arg) -> String {
    let text = arg
        .get_long_help()
        .or(arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| code(v.get_name()))
        .collect();
    if !values.is_empty() {
        if !text.is_empty() && !text.ends_with('.') {
            text.push('.');
        }
        text = format!("{text} One of {}.", values.join(", "))
            .trim_start()
            .to_string();
    }
    text
}

fn default_cell(v: &Variable) -> String {
    let first = &v.uses[0].default;
    if v.uses.iter().all(|u| &u.default == first) {
        return first.as_deref().map_or("unset".into(), code);
    }
    v.uses
        .iter()
        .map(|u| {
            let value = u.default.as_deref().map_or("unset".into(), code);
            format!("{value} ({})", u.program)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn meaning_cell(v: &Variable) -> String {
    let first = &v.uses[0].help;
    if v.uses.iter().all(|u| &u.help == first) {
        return cell(first);
    }
    let parts: Vec<String> = v
        .uses
        .iter()
        .map(|u| format!("{} ({})", u.help, u.program))
        .collect();
    cell(&parts.join("; "))
}

/// The section's text: the table.
pub fn markdown(table: &EnvTable) -> String {
    let several = table.programs.len() > 1;
    let mut lines = vec![
        if several {
            "| Variable | Flag | Used by | Default | Meaning |"
        } else {
            "| Variable | Flag | Default | Meaning |"
        }
        .to_string(),
        if several {
            "|---|---|---|---|---|"
        } else {
            "|---|---|---|---|"
        }
        .to_string(),
    ];
    for v in variables(table) {
        let used_by = if several {
            let names: Vec<&str> = v.uses.iter().map(|u| u.program.as_str()).collect();
            format!(" {} |", names.join(", "))
        } else {
            String::new()
        };
        lines.push(format!(
            "| {} | {} |{used_by} {} | {} |",
            code(&v.name),
            code(&v.flag),
            default_cell(&v),
            meaning_cell(&v)
        ));
    }
    lines.join("\n") + "\n"
}

/// The table in `text` (its document's) lists every variable of the programs
/// with the programs that read it and their defaults, no variable they lack,
/// and is exactly what `make generate` writes; every option has a variable.
pub fn check(checks: &mut Checks, text: &str, table: &EnvTable) {
    let (file, name) = (table.doc, table.section);
    for program in &table.programs {
        for arg in options(&program.command) {
            checks.ok(arg.get_env().is_some(), || {
                format!(
                    "`{} --{}` has no environment variable (every option has one, so the operator can set it)",
                    program.name,
                    arg.get_long().unwrap_or(arg.get_id().as_str())
                )
            });
        }
    }
    let Some(current) = checks.section(file, text, name) else {
        return;
    };
    let doc = markdown::table(current);
    let (used_col, default_col) = (doc.column("Used by"), doc.column("Default"));
    let documented = doc.by_first_code();
    let get = |cells: &Vec<String>, col: Option<usize>| {
        col.and_then(|c| cells.get(c)).cloned().unwrap_or_default()
    };
    let vars = variables(table);
    let mut by_name: BTreeMap<&str, &Variable> = BTreeMap::new();
    for v in &vars {
        by_name.insert(&v.name, v);
    }
    for (var, v) in &by_name {
        let programs: BTreeSet<&str> = v.uses.iter().map(|u| u.program.as_str()).collect();
        let listed = programs.iter().copied().collect::<Vec<_>>().join("`, `");
        let cells = documented.get(*var);
        checks.ok(cells.is_some(), || {
            format!(
                "{file} {name} table lacks `{var}` (an option of `{listed}`; run `make generate`)"
            )
        });
        let Some(cells) = cells else { continue };
        if table.programs.len() > 1 {
            let used = get(cells, used_col);
            let used: BTreeSet<&str> = used.split(',').map(str::trim).collect();
            checks.ok(used == programs, || {
                format!(
                    "{file} {name}: `{var}` is used by {} per the table but by {} per the code (run `make generate`)",
                    used.iter().copied().collect::<Vec<_>>().join(", "),
                    programs.iter().copied().collect::<Vec<_>>().join(", ")
                )
            });
        }
        let cell = get(cells, default_col);
        let claimed = claimed_defaults(&cell, &programs);
        for u in &v.uses {
            let program = &u.program;
            match &u.default {
                None => checks.ok(!claimed.contains_key(program.as_str()), || {
                    format!("{file} {name}: `{var}` has no default in `{program}`, but the table says {cell} (run `make generate`)")
                }),
                Some(default) => checks.ok(claimed.get(program.as_str()) == Some(default), || {
                    format!(
                        "{file} {name}: `{var}` default is {} in the table but `{default}` in `{program}` (run `make generate`)",
                        if cell.is_empty() { "missing" } else { &cell }
                    )
                }),
            };
        }
    }
    for var in documented.keys() {
        checks.ok(by_name.contains_key(var.as_str()), || {
            format!("{file} {name} documents `{var}`, which no command line reads")
        });
    }
    checks.ok(current == markdown(table), || {
        format!(
            "{file} {name} table differs from what the command lines generate (run `make generate`)"
        )
    });
}

/// The defaults a Default cell claims per program: `value`, or `value`
/// (program), `value` (program) when they differ; "unset" claims none.
fn claimed_defaults(cell: &str, programs: &BTreeSet<&str>) -> HashMap<String, String> {
    static PAIR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"`([^`]*)`(?:\s*\(([\w, -]+)\))?").unwrap());
    let mut claimed = HashMap::new();
    if cell.starts_with("unset") {
        return claimed;
    }
    for c in PAIR.captures_iter(cell) {
        let value = c[1].to_string();
        let subs: Vec<String> = match c.get(2) {
            Some(list) => list
                .as_str()
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            None => programs.iter().map(|p| p.to_string()).collect(),
        };
        for sub in subs {
            claimed.entry(sub).or_insert_with(|| value.clone());
        }
    }
    claimed
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn table() -> EnvTable {
        let common = || {
            Arg::new("timeout")
                .long("timeout")
                .env("X_TIMEOUT")
                .help("How long to wait.")
        };
        EnvTable {
            doc: "d.md",
            section: "t",
            programs: vec![
                Program {
                    name: "server".into(),
                    command: Command::new("server")
                        .arg(common().default_value("2000"))
                        .arg(
                            Arg::new("token")
                                .long("token")
                                .env("X_TOKEN")
                                .help("Bearer | token"),
                        ),
                },
                Program {
                    name: "worker".into(),
                    command: Command::new("worker")
                        .arg(common().default_value("5000"))
                        .arg(
                            Arg::new("format")
                                .long("format")
                                .env("X_FORMAT")
                                .default_value("text")
                                .value_parser(["text", "json"])
                                .help("Log format"),
                        ),
                },
            ],
        }
    }

    fn readme(body: &str) -> String {
        format!("intro\n<!-- t:start -->\n{body}<!-- t:end -->\n")
    }

    #[test]
    fn the_table_has_each_variable_once_with_its_programs_and_defaults() {
        let md = markdown(&table());
        assert_eq!(
            md,
            "| Variable | Flag | Used by | Default | Meaning |\n\
             |---|---|---|---|---|\n\
             | `X_TIMEOUT` | `--timeout` | server, worker | `2000` (server), `5000` (worker) | How long to wait. |\n\
             | `X_TOKEN` | `--token` | server | unset | Bearer \\| token |\n\
             | `X_FORMAT` | `--format` | worker | `text` | Log format. One of `text`, `json`. |\n"
        );
        let mut checks = Checks::default();
        check(&mut checks, &readme(&md), &table());
        assert!(checks.failures().is_empty(), "{:?}", checks.failures());
    }

    #[test]
    fn the_check_names_each_drift_and_says_to_generate() {
        let md = markdown(&table())
            .replace("`5000` (worker)", "`6000` (worker)")
            .replace(
                "| `X_TOKEN` | `--token` | server | unset |",
                "| `X_TOKEN` | `--token` | server, worker | `abc` |",
            )
            .replace("`X_FORMAT`", "`X_OTHER`");
        let mut checks = Checks::default();
        check(&mut checks, &readme(&md), &table());
        let failures = checks.failures().join("\n");
        for want in [
            "`X_TIMEOUT` default is `2000` (server), `6000` (worker) in the table but `5000` in `worker`",
            "`X_TOKEN` is used by server, worker per the table but by server per the code",
            "`X_TOKEN` has no default in `server`, but the table says `abc`",
            "t table lacks `X_FORMAT`",
            "t documents `X_OTHER`, which no command line reads",
            "t table differs from what the command lines generate (run `make generate`)",
        ] {
            assert!(failures.contains(want), "missing {want:?} in:\n{failures}");
        }
    }

    #[test]
    fn an_option_without_a_variable_fails() {
        let mut t = table();
        t.programs[0].command = t.programs[0]
            .command
            .clone()
            .arg(Arg::new("quiet").long("quiet"));
        let mut checks = Checks::default();
        check(&mut checks, &readme(&markdown(&t)), &t);
        assert_eq!(
            checks.failures(),
            [
                "`server --quiet` has no environment variable (every option has one, so the operator can set it)"
            ]
        );
    }
}
