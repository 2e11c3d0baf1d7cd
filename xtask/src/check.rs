//! Pass/fail bookkeeping for `check-docs`: every assertion runs, failures are
//! listed at the end, and the last line is `<name>: N passed, M failed` like
//! the shell check scripts (hack/lib.sh).

use std::process::ExitCode;

/// The outcome of many assertions.
#[derive(Debug, Default)]
pub struct Checks {
    passed: usize,
    failures: Vec<String>,
    warnings: Vec<String>,
}

impl Checks {
    /// Counts `cond` as a pass, or records `msg` as a failure; returns `cond`
    /// so a check that later ones depend on can guard them.
    pub fn ok(&mut self, cond: bool, msg: impl FnOnce() -> String) -> bool {
        if cond {
            self.passed += 1;
        } else {
            self.failures.push(msg());
        }
        cond
    }

    /// The generated section `name` of the document `doc` (whose text is
    /// `text`), or a failure saying its markers are missing there.
    pub fn section<'a>(&mut self, doc: &str, text: &'a str, name: &str) -> Option<&'a str> {
        let section = crate::markdown::section(text, name);
        self.ok(section.is_some(), || {
            format!("{doc} has no <!-- {name}:start --> / <!-- {name}:end --> markers")
        });
        section
    }

    /// Something worth a look that is not wrong (yet).
    pub fn warn(&mut self, msg: String) {
        self.warnings.push(msg);
    }

    #[cfg(test)]
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Prints the warnings, the failures and the summary line.
    pub fn report(self, name: &str) -> ExitCode {
        for w in &self.warnings {
            println!("warning: {w}");
        }
        for f in &self.failures {
            println!("FAIL: {f}");
        }
        println!(
            "{name}: {} passed, {} failed",
            self.passed,
            self.failures.len()
        );
        if self.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
