//! The architecture stays true: every top-level module of `src/` belongs to exactly one layer
//! of the table in `src/lib.rs`, and imports (`use crate::...` and `crate::x::` paths, outside
//! `#[cfg(test)]` code and comments) only from its own layer or those below, with no cycle
//! between modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module -> layer number, from the `| N name | [`a`], [`b`] | ... |` rows of lib.rs.
fn layers() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let mut layers = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let mut cells = row.split(" | ");
        let (Some(layer), Some(modules)) = (cells.next(), cells.next()) else {
            continue;
        };
        let Some(Ok(number)) = layer.split_whitespace().next().map(str::parse::<usize>) else {
            continue;
        };
        for module in modules.split(", ") {
            let name = module
                .trim()
                .trim_start_matches("[`")
                .trim_end_matches("`]");
            assert!(
                layers.insert(name.to_string(), number).is_none(),
                "{name} is in two layers"
            );
        }
    }
    layers
}

/// Top-level modules: `src/x.rs` and `src/x/`.
fn modules() -> BTreeSet<String> {
    std::fs::read_dir("src")
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_stem()?.to_str()?.to_string();
            let module = path.is_dir() || path.extension().is_some_and(|x| x == "rs");
            (module && name != "lib" && name != "main").then_some(name)
        })
        .collect()
}

fn sources(module: &str) -> Vec<String> {
    let mut files = Vec::new();
    let file = Path::new("src").join(format!("{module}.rs"));
    if file.exists() {
        files.push(file);
    }
    let mut dirs = vec![Path::new("src").join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

/// The modules of the crate that `text` names, test code and comments left out.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            // `use crate::{a, b::c}`
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(|part| part.trim().split("::").next().unwrap_or(""))
                .collect(),
            None => vec![rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")],
        };
        for name in names {
            if modules.contains(name) {
                found.insert(name.to_string());
            }
        }
    }
    found
}

#[test]
fn modules_import_only_their_own_layer_and_those_below() {
    let layers = layers();
    let modules = modules();
    let unplaced: Vec<_> = modules
        .iter()
        .filter(|m| !layers.contains_key(*m))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from the layer table in src/lib.rs: {unplaced:?}"
    );
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut upward = Vec::new();
    for module in &modules {
        let mut uses = BTreeSet::new();
        for text in sources(module) {
            uses.extend(imports(&text, &modules));
        }
        uses.remove(module);
        for used in &uses {
            if layers[used] > layers[module] {
                upward.push(format!(
                    "{module} (layer {}) imports {used} (layer {})",
                    layers[module], layers[used]
                ));
            }
        }
        edges.insert(module.clone(), uses);
    }
    assert!(
        upward.is_empty(),
        "imports that run up a layer: {upward:#?}"
    );
    // No cycle: repeatedly remove modules that import nothing left.
    let mut left = edges.clone();
    while let Some(leaf) = left
        .iter()
        .find(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
        .map(|(m, _)| m.clone())
    {
        left.remove(&leaf);
    }
    assert!(
        left.is_empty(),
        "modules that import each other in a loop: {left:?}"
    );
}

#[test]
fn the_layer_test_sees_an_upward_import() {
    let modules: BTreeSet<String> = ["data", "runtime", "sink"].map(String::from).into();
    let text = "use crate::{runtime::run, sink::Store};\nfn f() { crate::data::x(); }\n// crate::sink in a comment\n#[cfg(test)]\nuse crate::runtime;";
    assert_eq!(imports(text, &modules), modules);
    let only_comment = "// use crate::runtime;\n";
    assert!(imports(only_comment, &modules).is_empty());
}
