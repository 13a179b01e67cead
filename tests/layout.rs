//! The layout stays a layering: no module of `chorus`, `chorus-proto` or `chorus-sim` reaches,
//! directly or around a circle, a module that reaches it back (a parent and its children
//! aside). Read from the source text: every `crate::` and `super::` path, `use` groups
//! included, outside `#[cfg(test)] mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The module a file defines: `node/driver.rs` is `node::driver`, `node/mod.rs` is `node`.
fn module_of(root: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(root).expect("below the root").with_extension("");
    let mut parts: Module =
        relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// Every `crate::`/`super::` path in `text`, `use` groups expanded one level.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for line in text.lines().map(|line| line.split("//").next().unwrap_or_default()) {
        for (at, _) in line.match_indices("crate::").chain(line.match_indices("super::")) {
            let preceded = line[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if preceded {
                continue;
            }
            let rest = &line[at..];
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segments: Vec<String> =
                head.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
            if let Some(group) = rest[head.len()..].strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',').map(str::trim).filter(|item| !item.is_empty()) {
                    let mut path = segments.clone();
                    path.extend(item.split("::").map(|s| s.trim().to_string()));
                    found.push(path);
                }
                segments.clear();
            }
            if !segments.is_empty() {
                found.push(segments);
            }
        }
    }
    found
}

/// The module a path from `from` names: its longest prefix that is a module.
fn target(from: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let mut candidate: Module = Vec::new();
    let mut rest = path;
    if rest.first().map(String::as_str) == Some("super") {
        candidate = from[..from.len().saturating_sub(1)].to_vec();
        rest = &rest[1..];
        while rest.first().map(String::as_str) == Some("super") {
            candidate.pop();
            rest = &rest[1..];
        }
    } else {
        rest = &rest[1..];
    }
    candidate.extend(rest.iter().cloned());
    (1..=candidate.len())
        .rev()
        .map(|n| candidate[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

fn related(a: &Module, b: &Module) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The modules of `root` reachable from `start` through the edges, `start` excluded.
fn reachable(edges: &BTreeMap<Module, BTreeSet<Module>>, start: &Module) -> BTreeSet<Module> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<Module> = edges.get(start).into_iter().flatten().cloned().collect();
    while let Some(module) = todo.pop() {
        if seen.insert(module.clone()) {
            todo.extend(edges.get(&module).into_iter().flatten().cloned());
        }
    }
    seen
}

fn cycles(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(root, &mut files);
    let modules: BTreeMap<Module, PathBuf> =
        files.iter().map(|file| (module_of(root, file), file.clone())).collect();
    let names: BTreeSet<Module> = modules.keys().cloned().collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("a readable source");
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let targets = paths(text).into_iter().filter_map(|path| target(module, &path, &names));
        edges.entry(module.clone()).or_default().extend(targets.filter(|t| !related(module, t)));
    }
    let mut found = Vec::new();
    for (module, targets) in &edges {
        for target in targets.iter().filter(|target| reachable(&edges, target).contains(module)) {
            found.push(format!(
                "{}: {} reaches {} and back",
                root.display(),
                module.join("::"),
                target.join("::")
            ));
        }
    }
    found
}

#[test]
fn no_module_reaches_around_a_circle() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found: Vec<String> = ["src", "proto/src", "sim/src"]
        .iter()
        .flat_map(|root| cycles(&workspace.join(root)))
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle() {
    let scratch = std::env::temp_dir().join(format!("chorus-layout-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("a scratch folder");
    std::fs::write(scratch.join("lib.rs"), "mod a;\nmod b;\n").expect("written");
    std::fs::write(scratch.join("a.rs"), "use crate::b::B;\npub struct A;\n").expect("written");
    std::fs::write(scratch.join("b.rs"), "use super::{a::A, c};\npub struct B;\n")
        .expect("written");
    let found = cycles(&scratch);
    std::fs::remove_dir_all(&scratch).expect("removed");
    assert_eq!(found.len(), 2, "{found:?}");
}
