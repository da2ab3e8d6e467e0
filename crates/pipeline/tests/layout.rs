//! The shape of the crate, checked so that it cannot drift back: the three steps (`train/`,
//! `register/`, `infer/`) never import each other, and no source file outside tests grows past
//! 500 lines.

use std::path::{Path, PathBuf};

const STEPS: [&str; 3] = ["train", "register", "infer"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("list {}: {e}", d.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without its `#[cfg(test)]` module (tests may use anything).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[test]
fn the_steps_never_import_each_other() {
    let mut offences = Vec::new();
    for step in STEPS {
        for file in rust_files(&src().join(step)) {
            let text = code(&file);
            for other in STEPS.iter().filter(|s| **s != step) {
                for needle in [format!("crate::{other}"), format!("super::super::{other}")] {
                    if text.contains(&needle) {
                        offences.push(format!("{} uses {needle}", file.display()));
                    }
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "steps import each other: {offences:#?}"
    );
    // The check itself sees the steps.
    assert!(rust_files(&src().join("infer")).len() >= 4);
}

#[test]
fn no_source_file_is_over_500_lines() {
    let long: Vec<String> = rust_files(&src())
        .into_iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "tests.rs"))
        .map(|f| (code(&f).lines().count(), f))
        .filter(|(n, _)| *n > 500)
        .map(|(n, f)| format!("{}: {n} lines", f.display()))
        .collect();
    assert!(long.is_empty(), "files over 500 lines: {long:#?}");
}
