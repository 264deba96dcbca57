//! Test support for the zone documents: every test a document cites must exist.

use std::path::Path;

/// Names a document cites in backticks that look like test names (lowercase words with
/// at least three underscores), minus those `exclude` rejects (e.g. reason codes).
pub fn cited_tests(doc: &str, exclude: impl Fn(&str) -> bool) -> Vec<&str> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.matches('_').count() >= 3 && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .filter(|s| !exclude(s))
        .collect()
}

/// The cited names that no `fn name(` (Rust) or `def name(` (Python, the Terraform
/// tests) under the repository's code folders defines.
pub fn missing_tests<'d>(repo_root: &Path, cited: &[&'d str]) -> Vec<&'d str> {
    let mut sources = String::new();
    let mut dirs: Vec<_> = ["workers", "tests", "events", "cli"].iter().map(|d| repo_root.join(d)).collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("corpus") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "py") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    cited
        .iter()
        .copied()
        .filter(|name| !sources.contains(&format!("fn {name}(")) && !sources.contains(&format!("def {name}(")))
        .collect()
}
