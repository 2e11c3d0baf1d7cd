//! Every generated file, computed from the code. `cargo xtask generate`
//! writes them; the lint reruns it and fails when git sees a change.

use std::path::Path;

use crate::markdown;
use crate::{crd, env_table, rbac_table, spec_table};

/// The document that holds the generated sections.
pub const README: &str = "README.md";

/// One generated file: its repository path and its whole content.
pub struct Output {
    pub path: String,
    pub content: String,
}

/// The sections of README.md, each as (marker name, generated text); `readme`
/// is the current file (the RBAC table keeps its hand-written reasons).
pub fn sections(root: &Path, readme: &str) -> Result<Vec<(&'static str, String)>, String> {
    let rbac_current = markdown::section(readme, rbac_table::SECTION).unwrap_or("");
    let mut sections = Vec::new();
    for table in [env_table::app(), env_table::operator()] {
        sections.push((table.section, env_table::markdown(&table)));
    }
    sections.push((
        rbac_table::SECTION,
        rbac_table::markdown(&rbac_table::rules(root)?, rbac_current),
    ));
    sections.push((spec_table::SECTION, spec_table::markdown(&crd::json())));
    Ok(sections)
}

/// Every generated file with the content the code gives it.
pub fn outputs(root: &Path) -> Result<Vec<Output>, String> {
    let crd = crd::yaml();
    let mut outputs: Vec<Output> = crd::paths()
        .into_iter()
        .map(|path| Output {
            path,
            content: crd.clone(),
        })
        .collect();
    let mut readme = crate::read(root, README)?;
    for (name, body) in sections(root, &readme)? {
        readme = markdown::replace_section(&readme, name, &body).ok_or_else(|| {
            format!(
                "{README} has no <!-- {name}:start --> / <!-- {name}:end --> markers: put them where the generated table belongs"
            )
        })?;
    }
    outputs.push(Output {
        path: README.into(),
        content: readme,
    });
    Ok(outputs)
}

/// Writes the generated files whose content changed, naming each.
pub fn write(root: &Path) -> Result<(), String> {
    for output in outputs(root)? {
        let path = root.join(&output.path);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(output.content.as_str()) {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, &output.content)
            .map_err(|e| format!("cannot write {}: {e}", output.path))?;
        eprintln!("generate: wrote {}", output.path);
    }
    Ok(())
}
