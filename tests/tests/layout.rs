//! The shape of the workspace, checked so that it cannot drift back:
//!
//! - no source file outside tests grows past 500 lines (every crate, binary, bench and example);
//! - no two files of a crate import each other, directly or around a circle (a module and the
//!   modules inside it are one room: a parent may re-export its children and a child may use
//!   its parent's items);
//! - pipeline's three steps (`train/`, `register/`, `infer/`) never import each other;
//! - every crate that computes with burn is optimised in the dev profile (`cargo run`, the
//!   quickstart and the tests use it; unoptimised kernels made a training epoch 2x slower).
//!
//! Imports are read by parsing each file (`syn`): `use` trees, `crate::`/`super::`/`self::`
//! paths anywhere in the code, and paths through a child module, so `use crate::{infer, ..}`
//! counts as much as `crate::infer::run(..)`. `#[cfg(test)]` items are left out: tests may
//! use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

const MAX_LINES: usize = 500;
const STEPS: [&str; 3] = ["train", "register", "infer"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace above tests/")
        .to_path_buf()
}

/// The packages of the workspace: `crates/*` and `bins/*`.
fn packages() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for group in ["crates", "bins"] {
        let dir = root().join(group);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.join("Cargo.toml").is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every `.rs` file under `dir` (none when it does not exist).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
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

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// A file parsed, without its `#[cfg(test)]` items.
fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.items.retain(|item| {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Impl(i) => &i.attrs,
            _ => return true,
        };
        !is_cfg_test(attrs)
    });
    file
}

/// Lines of a file without its `#[cfg(test)] mod tests { .. }` (from that line to the end).
fn code_lines(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let code = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => &text,
    };
    code.lines().count()
}

#[test]
fn no_source_file_is_over_500_lines() {
    let mut checked = 0;
    let mut long = Vec::new();
    for package in packages() {
        for sub in ["src", "benches", "examples"] {
            for file in rust_files(&package.join(sub)) {
                if file.file_name().is_some_and(|n| n == "tests.rs") {
                    continue; // a module's unit tests, kept beside it
                }
                checked += 1;
                let n = code_lines(&file);
                if n > MAX_LINES {
                    long.push(format!("{}: {n} lines", file.display()));
                }
            }
        }
    }
    assert!(checked > 100, "the check saw only {checked} files");
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}

/// A module path inside a crate (`[]` is the crate root).
type ModPath = Vec<String>;

/// The module a file under `src/` defines: `lib.rs`/`main.rs` -> root, `a/mod.rs` and `a.rs`
/// -> `a`, `a/b.rs` -> `a::b`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    } else if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The paths a file names: `use` trees expanded, and every path in its code.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl Paths {
    fn use_tree(&mut self, prefix: &[String], tree: &syn::UseTree) {
        let with = |s: String| {
            let mut p = prefix.to_vec();
            p.push(s);
            p
        };
        match tree {
            syn::UseTree::Path(p) => {
                let prefix = with(p.ident.to_string());
                self.use_tree(&prefix, &p.tree);
            }
            syn::UseTree::Name(n) => self.0.push(with(n.ident.to_string())),
            syn::UseTree::Rename(r) => self.0.push(with(r.ident.to_string())),
            syn::UseTree::Glob(_) => self.0.push(prefix.to_vec()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&[], &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.0
            .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_cfg_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
}

/// The file-module a path in module `here` points into, if it points into this crate.
fn resolve(here: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let (mut base, rest): (ModPath, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (here.clone(), &path[1..]),
        Some("super") => {
            let mut base = here.clone();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        Some(first) => {
            // A child module named without `self::`.
            let mut child = here.clone();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            (here.clone(), path)
        }
        None => return None,
    };
    for segment in rest {
        base.push(segment.clone());
        if !modules.contains(&base) {
            base.pop();
            break;
        }
    }
    Some(base)
}

/// Edges between the file-modules of the crate under `src`, leaving out a module's edges to
/// its ancestors and descendants.
fn edges(src: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let files = rust_files(src);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(src, f)).collect();
    let mut out: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for file in &files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let here = module_of(src, file);
        let mut paths = Paths::default();
        paths.visit_file(&parse(file));
        for path in &paths.0 {
            let Some(target) = resolve(&here, path, &modules) else {
                continue;
            };
            let related = target.starts_with(&here) || here.starts_with(&target);
            if !related {
                out.entry(here.clone()).or_default().insert(target);
            }
        }
    }
    out
}

/// The circles of a graph: its strongly connected components with more than one node.
fn circles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    let nodes: BTreeSet<&ModPath> = graph.keys().chain(graph.values().flatten()).collect();
    let reach = |from: &ModPath| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let circle: Vec<ModPath> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if circle.len() > 1 {
            done.extend(circle.iter().cloned());
            out.push(circle);
        }
    }
    out
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_files_import_each_other() {
    let mut found = Vec::new();
    let mut crates = 0;
    for package in packages() {
        let src = package.join("src");
        if !src.is_dir() {
            continue;
        }
        crates += 1;
        for circle in circles(&edges(&src)) {
            let names: Vec<String> = circle.iter().map(name).collect();
            found.push(format!("{}: {}", package.display(), names.join(" <-> ")));
        }
    }
    assert!(crates >= 10, "the check saw only {crates} crates");
    assert!(found.is_empty(), "files that import each other: {found:#?}");
}

#[test]
fn the_check_sees_a_circle_and_a_grouped_import() {
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).expect("mkdir");
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        (
            "a/mod.rs",
            "mod inner;\npub use inner::g;\nuse crate::{c, x};\n",
        ),
        (
            "a/inner.rs",
            "use super::*;\npub fn g() { crate::b::f() }\n",
        ),
        (
            "b.rs",
            "pub fn f() { crate::a::inner::g() }\n#[cfg(test)]\nmod tests { use crate::c; }\n",
        ),
        ("c.rs", "pub fn h() {}\n"),
    ];
    for (path, text) in files {
        std::fs::write(src.join(path), text).expect("write");
    }
    let graph = edges(src);
    let m = |s: &str| -> ModPath { s.split("::").map(str::to_string).collect() };
    assert_eq!(
        graph[&m("a")],
        BTreeSet::from([m("c")]),
        "grouped `use crate::{{c, x}}`"
    );
    assert_eq!(
        graph[&m("a::inner")],
        BTreeSet::from([m("b")]),
        "parent left out"
    );
    assert_eq!(
        graph[&m("b")],
        BTreeSet::from([m("a::inner")]),
        "test module left out"
    );
    assert_eq!(circles(&graph), vec![vec![m("a::inner"), m("b")]]);
}

#[test]
fn the_steps_never_import_each_other() {
    let src = root().join("crates/pipeline/src");
    let graph = edges(&src);
    let step = |m: &ModPath| m.first().filter(|s| STEPS.contains(&s.as_str())).cloned();
    let mut offences = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            if let (Some(a), Some(b)) = (step(from), step(to))
                && a != b
            {
                offences.push(format!("{} uses {}", name(from), name(to)));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "steps import each other: {offences:#?}"
    );
    // The check itself sees the steps.
    assert!(
        graph
            .keys()
            .filter(|m| step(m).as_deref() == Some("infer"))
            .count()
            >= 4
    );
}

/// The name and the parsed manifest of each package.
fn manifests() -> Vec<(String, toml::Table)> {
    packages()
        .into_iter()
        .map(|dir| {
            let text = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
            let table: toml::Table = text.parse().expect("manifest is TOML");
            let name = table["package"]["name"].as_str().expect("name").to_string();
            (name, table)
        })
        .collect()
}

#[test]
fn every_crate_that_computes_with_burn_is_optimised_in_the_dev_profile() {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("workspace manifest");
    let workspace: toml::Table = text.parse().expect("TOML");
    let dev = &workspace["profile"]["dev"]["package"];
    let computing: Vec<String> = manifests()
        .into_iter()
        .filter(|(_, m)| {
            m.get("dependencies")
                .and_then(|d| d.as_table())
                .is_some_and(|d| d.contains_key("burn"))
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        computing.contains(&"seg-kernels".to_string()),
        "the check must see the kernels crate: {computing:?}"
    );
    for name in computing {
        let opt = dev
            .get(&name)
            .and_then(|p| p.get("opt-level"))
            .and_then(toml::Value::as_integer);
        assert_eq!(
            opt,
            Some(3),
            "{name} computes with burn: give it [profile.dev.package.{name}] opt-level = 3 in Cargo.toml"
        );
    }
}
