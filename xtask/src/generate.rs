//! Every generated file, computed from the code. `cargo xtask generate`
//! writes them; the lint reruns it and fails when git sees a change.

use std::path::Path;

use crate::markdown;
use crate::{crd, env_table, rbac_table, spec_table};

/// One generated section: the document that holds it, its marker name and
/// the text the code gives it.
pub struct Section {
    pub doc: &'static str,
    pub name: &'static str,
    pub body: String,
}

/// One generated file: its repository path and its whole content.
pub struct Output {
    pub path: String,
    pub content: String,
}

/// Every generated section, each with its document (the RBAC table keeps
/// the hand-written reasons of its document's current table).
pub fn sections(root: &Path) -> Result<Vec<Section>, String> {
    let rbac_doc = crate::read(root, rbac_table::DOC)?;
    let rbac_current = markdown::section(&rbac_doc, rbac_table::SECTION).unwrap_or("");
    let mut sections = Vec::new();
    for table in [env_table::app(), env_table::operator()] {
        sections.push(Section {
            doc: table.doc,
            name: table.section,
            body: env_table::markdown(&table),
        });
    }
    sections.push(Section {
        doc: rbac_table::DOC,
        name: rbac_table::SECTION,
        body: rbac_table::markdown(&rbac_table::rules(root)?, rbac_current),
    });
    sections.push(Section {
        doc: spec_table::DOC,
        name: spec_table::SECTION,
        body: spec_table::markdown(&crd::json()),
    });
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
    let sections = sections(root)?;
    let mut docs: Vec<&str> = sections.iter().map(|s| s.doc).collect();
    docs.sort();
    docs.dedup();
    for doc in docs {
        let mut text = crate::read(root, doc)?;
        for section in sections.iter().filter(|s| s.doc == doc) {
            let name = section.name;
            text = markdown::replace_section(&text, name, &section.body).ok_or_else(|| {
                format!(
                    "{doc} has no <!-- {name}:start --> / <!-- {name}:end --> markers: put them where the generated table belongs"
                )
            })?;
        }
        outputs.push(Output {
            path: doc.into(),
            content: text,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_section_is_written_into_the_document_its_table_names() {
        let root = crate::workspace_root();
        let sections = sections(&root).unwrap();
        let outputs = outputs(&root).unwrap();
        for section in &sections {
            let output = outputs
                .iter()
                .find(|o| o.path == section.doc)
                .unwrap_or_else(|| panic!("{} is not among the generated files", section.doc));
            assert_eq!(
                markdown::section(&output.content, section.name),
                Some(section.body.as_str()),
                "{} in {}",
                section.name,
                section.doc
            );
            let others = outputs.iter().filter(|o| o.path != section.doc);
            for other in others {
                assert!(
                    markdown::section(&other.content, section.name).is_none(),
                    "{} is in {} too",
                    section.name,
                    other.path
                );
            }
        }
        assert!(
            outputs.iter().all(|o| o.path != "README.md"),
            "README.md holds no generated section any more"
        );
    }
}
