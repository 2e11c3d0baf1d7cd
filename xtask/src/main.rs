//! The project's own tasks, run as `cargo xtask <task>` (the alias lives in
//! `.cargo/config.toml`; `make generate` and `make test` call them):
//!
//! - `generate` writes every generated file from the code: the CRD and its
//!   copies, and the reference tables between marker comments in the
//!   documents (each table's module names its document).
//!   The lint "generate, then `git diff --exit-code`" keeps them committed.
//! - `check-docs` checks README.md and docs/*.md against the code and the
//!   repository, and ends with `docs: N passed, M failed`.
//!
//! Both read the code itself (the clap `Command`s, `multivac_operator::custom_resource_definition()`), never
//! the text a binary prints.

mod check;
mod crd;
mod docs;
mod env_table;
mod generate;
mod markdown;
mod rbac_table;
mod spec_table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// MultiVAC's project tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Write every generated file (the CRD copies, the documents' reference tables).
    Generate {
        /// Print the paths of the generated files instead of writing them.
        #[arg(long)]
        list: bool,
    },
    /// Check README.md and docs/*.md against the code and the repository.
    CheckDocs,
}

fn main() -> ExitCode {
    let root = workspace_root();
    let result = match Cli::parse().task {
        Task::Generate { list: true } => generate::outputs(&root).map(|outputs| {
            for output in outputs {
                println!("{}", output.path);
            }
            ExitCode::SUCCESS
        }),
        Task::Generate { list: false } => generate::write(&root).map(|_| ExitCode::SUCCESS),
        Task::CheckDocs => Ok(docs::check(&root).report("docs")),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

/// The repository root: this crate sits one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent folder")
        .to_path_buf()
}

/// A file of the repository as text, with an error that names it.
fn read(root: &Path, path: &str) -> Result<String, String> {
    std::fs::read_to_string(root.join(path)).map_err(|e| format!("cannot read {path}: {e}"))
}
