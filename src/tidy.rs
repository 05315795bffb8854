//! Boundaries the code's shape must keep, checked by reading the source (in the spirit of
//! rust-analyzer's `tidy.rs`): one egress gate, the layers ARCHITECTURE.md draws, no import
//! cycles in either crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module of `dir` (one file a module; a `foo/` directory belongs to `foo`) with the
/// crate modules its code (not its comments) names as `crate::x`.
fn edges(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let mut add = |module: &str, text: &str| {
        // Unit tests may reach anywhere; the layers are about the code they test.
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
        let deps: &mut BTreeSet<String> = out.entry(module.to_owned()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                // `$crate::` in macros and `consentry_scrubbers::` are not edges.
                let before = &code[..i];
                if name.is_empty()
                    || name == module
                    || before.ends_with('$')
                    || before.ends_with('_')
                {
                    continue;
                }
                deps.insert(name);
            }
        }
    };
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") {
            add(stem, &std::fs::read_to_string(&path).expect("read"));
        } else if path.is_dir() {
            for sub in std::fs::read_dir(&path).expect("read dir") {
                let sub = sub.expect("entry").path();
                if sub.extension().is_some_and(|e| e == "rs") {
                    add(stem, &std::fs::read_to_string(&sub).expect("read"));
                }
            }
        }
    }
    out
}

/// A cycle among `graph`'s modules, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut c = stack[at..].to_vec();
                c.push(node.to_owned());
                return Some(c);
            }
            _ => {}
        }
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next)
                && let Some(c) = visit(next, graph, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The layers table of ARCHITECTURE.md: rows `| layer | `module` | `dep`, `dep` |`.
fn layers_table() -> Vec<(String, String, BTreeSet<String>)> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("\n## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a '## Layers' section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with('|') && l.contains('`'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let ticks = |s: &str| -> BTreeSet<String> {
                s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
            };
            let module = ticks(cells.get(1).copied().unwrap_or(""))
                .into_iter()
                .next()
                .unwrap_or_default();
            (
                cells.first().copied().unwrap_or("").to_owned(),
                module,
                ticks(cells.get(2).copied().unwrap_or("")),
            )
        })
        .collect()
}

#[test]
fn the_layers_are_the_ones_architecture_md_draws() {
    let table = layers_table();
    assert!(table.len() > 10, "the layers table was not found");
    let layer_of: BTreeMap<&str, usize> = {
        let mut order: Vec<&str> = Vec::new();
        for (layer, _, _) in &table {
            if !order.contains(&layer.as_str()) {
                order.push(layer);
            }
        }
        table
            .iter()
            .map(|(layer, m, _)| {
                (
                    m.as_str(),
                    order.iter().position(|l| l == layer).unwrap_or(0),
                )
            })
            .collect()
    };
    let allowed: BTreeMap<&str, &BTreeSet<String>> = table
        .iter()
        .map(|(_, m, deps)| (m.as_str(), deps))
        .collect();
    let mut problems = Vec::new();
    for (module, deps) in edges(&root().join("src")) {
        // The scrubbing engine's re-export (`crate::scrub`) is another crate, not a layer.
        let deps: BTreeSet<&String> = deps.iter().filter(|d| *d != "scrub").collect();
        let Some(ok) = allowed.get(module.as_str()) else {
            problems.push(format!(
                "module `{module}` is missing from the layers table"
            ));
            continue;
        };
        for dep in deps {
            if module != "lib" && !ok.contains(dep) {
                problems.push(format!(
                    "`{module}` uses `{dep}`, which the table does not allow"
                ));
            }
            if let (Some(a), Some(b)) = (layer_of.get(module.as_str()), layer_of.get(dep.as_str()))
                && b > a
            {
                problems.push(format!("`{module}` uses `{dep}`, a higher layer"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_import_cycles_in_any_crate() {
    for dir in ["src", "scrubbers/src", "api/src"] {
        let mut graph = edges(&root().join(dir));
        graph.remove("lib");
        if let Some(c) = cycle(&graph) {
            panic!("{dir}: import cycle {}", c.join(" -> "));
        }
    }
}

#[test]
fn one_egress_gate() {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(root().join("src")).expect("src") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".rs") || name == "tidy.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let calls_client = code.contains("http::post") || code.contains("http::Agent");
            if calls_client && name != "egress.rs" {
                problems.push(format!(
                    "{name}:{}: only egress.rs may call the HTTP client",
                    n + 1
                ));
            }
            if code.contains("ureq") && name != "http.rs" {
                problems.push(format!("{name}:{}: only http.rs may use ureq", n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_themselves_work() {
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert!(cycle(&g).is_some());
    g.insert("b".to_owned(), BTreeSet::new());
    assert!(cycle(&g).is_none());
}
