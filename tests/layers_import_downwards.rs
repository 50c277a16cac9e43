//! The layer rule of `src/`: every import points downwards, and no module imports in a circle.
//!
//! `src/` has three layers, from the bottom: `core` (the pure rules), `adapters` (the I/O that
//! hands facts to the core) and `commands` (the doors a user runs). The units are the modules
//! directly inside a layer (`core::detection`, `core::baseline` with its sub-modules,
//! `adapters::registry`, `commands::serve`, ...), plus each layer's own `mod.rs`.
//!
//! - `no_import_climbs_a_layer`: the core imports nothing from `adapters` or `commands`, and the
//!   adapters nothing from `commands`.
//! - `no_modules_import_in_a_circle`: the units' import graph has no cycle (a module and its own
//!   sub-modules may use each other: they are one unit).
//! - `no_command_imports_a_sibling_command`: a door (`commands::audit`, `commands::check`, ...)
//!   imports nothing from another door; what two doors share lives below them, in `adapters` or
//!   `core`. `commands/mod.rs`'s own dispatch to the doors is fine.
//!
//! An import is any path that names a module of this crate: `use crate::…`, `use super::…`, a
//! path in the code (`crate::core::warning::warning(…)`), or one inside a macro call. Unit-test
//! modules (`#[cfg(test)]`) are left out: a test may drive its module through a higher layer.
//! `src/main.rs` is the binary, outside the library's layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The layers, from the bottom: a module may import from its own layer and those before it.
const LAYERS: [&str; 3] = ["core", "adapters", "commands"];

/// A module path inside the crate (`["core", "model", "view"]`); the crate root is empty.
type ModPath = Vec<String>;

/// One import: the file it is in, the path as written, the module it names.
#[derive(Debug, Clone)]
struct Import {
    file: PathBuf,
    written: String,
    target: ModPath,
}

/// Every `.rs` file under `src/` (without `main.rs`) and the module it defines.
fn source_files(src: &Path) -> Vec<(PathBuf, ModPath)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .filter(|f| f != &src.join("main.rs"))
        .map(|file| {
            let rel = file.strip_prefix(src).expect("under src");
            let mut module: ModPath = rel
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            (file, module)
        })
        .collect()
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// Collects, per file, the modules it declares and the paths it writes, each with the module
/// (inline modules included) it is written in.
struct Collector {
    /// The module the visitor is in.
    module: ModPath,
    /// Modules declared (`mod x;` or `mod x { … }`), for relative paths.
    declared: BTreeSet<ModPath>,
    /// Paths as written, each with the module it is written in.
    paths: Vec<(ModPath, Vec<String>)>,
}

impl Collector {
    fn push(&mut self, segments: Vec<String>) {
        if !segments.is_empty() {
            self.paths.push((self.module.clone(), segments));
        }
    }

    /// Paths inside a macro call's tokens (`assert_eq!(super::X, …)`, `format!(…)`): every
    /// `crate`, `super` or `self` followed by `::` and names.
    fn scan_tokens(&mut self, tokens: &str) {
        let words: Vec<&str> = tokens.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            let starts = matches!(words[i], "crate" | "super" | "self")
                && words.get(i + 1) == Some(&"::")
                && (i == 0 || words[i - 1] != "::");
            if !starts {
                i += 1;
                continue;
            }
            let mut segments = vec![words[i].to_string()];
            let mut j = i + 1;
            while words.get(j) == Some(&"::")
                && words
                    .get(j + 1)
                    .is_some_and(|w| w.chars().all(|c| c.is_alphanumeric() || c == '_'))
            {
                segments.push(words[j + 1].to_string());
                j += 2;
            }
            self.push(segments);
            i = j;
        }
    }
}

fn use_tree_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_tree_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.to_string());
            out.push(path);
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push(path);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for item in &g.items {
                use_tree_paths(item, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if is_cfg_test(&item.attrs) {
            return;
        }
        let mut child = self.module.clone();
        child.push(item.ident.to_string());
        self.declared.insert(child.clone());
        if item.content.is_some() {
            let outer = std::mem::replace(&mut self.module, child);
            syn::visit::visit_item_mod(self, item);
            self.module = outer;
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_cfg_test(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if !is_cfg_test(&item.attrs) {
            syn::visit::visit_item_impl(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if is_cfg_test(&item.attrs) {
            return;
        }
        let mut paths = Vec::new();
        use_tree_paths(&item.tree, &mut Vec::new(), &mut paths);
        for path in paths {
            self.push(path);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.push(segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(&mac.tokens.to_string());
        syn::visit::visit_macro(self, mac);
    }

    fn visit_attribute(&mut self, _attr: &'ast syn::Attribute) {
        // Doc comments and derives name no module of this crate.
    }
}

/// The module a written path names: the longest prefix of its absolute form that is a module of
/// the crate. `None` for paths into other crates or to local names.
fn resolve(at: &ModPath, written: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut absolute: ModPath = match written.first().map(String::as_str) {
        Some("crate") => written[1..].to_vec(),
        Some("super") | Some("self") => {
            let mut base = at.clone();
            let mut rest = written;
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        base.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            base
        }
        Some(first) => {
            // A relative path through a module declared here (`decide::decide`, `view::PodView`).
            let mut child = at.clone();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            let mut base = at.clone();
            base.extend(written.iter().cloned());
            base
        }
        None => return None,
    };
    while !absolute.is_empty() && !modules.contains(&absolute) {
        absolute.pop();
    }
    Some(absolute)
}

/// The unit a module belongs to: the layer and the module directly inside it (or the layer
/// alone for the layer's own `mod.rs`).
fn unit(module: &ModPath) -> ModPath {
    module.iter().take(2).cloned().collect()
}

fn layer_rank(unit: &ModPath) -> Option<usize> {
    let layer = unit.first()?;
    LAYERS.iter().position(|l| l == layer)
}

/// Every import between two different units, by (from, to).
fn imports(src: &Path) -> BTreeMap<(ModPath, ModPath), Vec<Import>> {
    let files = source_files(src);
    let mut modules: BTreeSet<ModPath> = files.iter().map(|(_, m)| m.clone()).collect();
    let mut collected = Vec::new();
    for (file, module) in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let ast =
            syn::parse_file(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
        let mut collector = Collector {
            module: module.clone(),
            declared: BTreeSet::new(),
            paths: Vec::new(),
        };
        collector.visit_file(&ast);
        modules.extend(collector.declared.iter().cloned());
        collected.push((file.clone(), module.clone(), collector.paths));
    }
    let mut edges: BTreeMap<(ModPath, ModPath), Vec<Import>> = BTreeMap::new();
    for (file, module, paths) in collected {
        let from = unit(&module);
        for (at, written) in paths {
            let Some(target) = resolve(&at, &written, &modules) else {
                continue;
            };
            let to = unit(&target);
            if to.is_empty() || to == from {
                continue;
            }
            edges.entry((from.clone(), to)).or_default().push(Import {
                file: file.clone(),
                written: written.join("::"),
                target,
            });
        }
    }
    edges
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn show(unit: &ModPath) -> String {
    unit.join("::")
}

fn describe(imports: &[Import]) -> String {
    imports
        .iter()
        .map(|i| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            format!(
                "    {}: {} (in {})",
                i.file.strip_prefix(root).unwrap_or(&i.file).display(),
                i.written,
                show(&i.target)
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The strongly connected components of more than one unit (Tarjan's algorithm).
fn circles(edges: &BTreeMap<(ModPath, ModPath), Vec<Import>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        next: BTreeMap<&'a ModPath, Vec<&'a ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    fn connect<'a>(s: &mut State<'a>, v: &'a ModPath) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.next.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(w) {
                connect(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for (from, to) in edges.keys() {
        state.next.entry(from).or_default().push(to);
        state.next.entry(to).or_default();
    }
    let nodes: Vec<&ModPath> = state.next.keys().copied().collect();
    for v in nodes {
        if !state.index.contains_key(v) {
            connect(&mut state, v);
        }
    }
    state.found
}

#[test]
fn every_module_is_in_a_layer() {
    let outside: Vec<String> = source_files(&src_dir())
        .into_iter()
        .filter(|(_, m)| !m.is_empty() && layer_rank(&unit(m)).is_none())
        .map(|(f, _)| f.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "modules outside the layers {LAYERS:?}:\n{}",
        outside.join("\n")
    );
}

#[test]
fn no_import_climbs_a_layer() {
    let mut climbs = Vec::new();
    for ((from, to), found) in imports(&src_dir()) {
        if let (Some(a), Some(b)) = (layer_rank(&from), layer_rank(&to))
            && b > a
        {
            climbs.push(format!(
                "{} imports {}, a layer above it:\n{}",
                show(&from),
                show(&to),
                describe(&found)
            ));
        }
    }
    assert!(
        climbs.is_empty(),
        "imports must point down {LAYERS:?} (core at the bottom):\n{}",
        climbs.join("\n")
    );
}

/// The imports from one door into another: (from, to) pairs of different units directly inside
/// `commands`.
fn sibling_commands(
    edges: &BTreeMap<(ModPath, ModPath), Vec<Import>>,
) -> Vec<(ModPath, ModPath, String)> {
    let door = |u: &ModPath| u.len() == 2 && u[0] == "commands";
    edges
        .iter()
        .filter(|((from, to), _)| door(from) && door(to) && from != to)
        .map(|((from, to), found)| (from.clone(), to.clone(), describe(found)))
        .collect()
}

#[test]
fn no_command_imports_a_sibling_command() {
    let found: Vec<String> = sibling_commands(&imports(&src_dir()))
        .into_iter()
        .map(|(from, to, imports)| format!("{} imports {}:\n{imports}", show(&from), show(&to)))
        .collect();
    assert!(
        found.is_empty(),
        "a command imports another command; move what they share to adapters or core:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_modules_import_in_a_circle() {
    let edges = imports(&src_dir());
    let found = circles(&edges);
    let report: Vec<String> = found
        .iter()
        .map(|component| {
            let names: Vec<String> = component.iter().map(show).collect();
            let members: BTreeSet<&ModPath> = component.iter().collect();
            let inside: Vec<String> = edges
                .iter()
                .filter(|((f, t), _)| members.contains(f) && members.contains(t))
                .map(|((f, t), imports)| {
                    format!("  {} -> {}:\n{}", show(f), show(t), describe(imports))
                })
                .collect();
            format!("circle of {}:\n{}", names.join(", "), inside.join("\n"))
        })
        .collect();
    assert!(
        report.is_empty(),
        "modules import in a circle:\n{}",
        report.join("\n\n")
    );
}

/// The checker itself finds a command that imports a sibling command, and allows the dispatch of
/// `commands/mod.rs`.
#[test]
fn the_checks_find_a_command_importing_a_sibling() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let path = src.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
        std::fs::write(path, text).expect("file");
    };
    write("lib.rs", "pub mod commands;\n");
    write(
        "commands/mod.rs",
        "pub mod audit;\npub mod check;\nfn run() { audit::run(); check::run(); }\n",
    );
    write(
        "commands/check/mod.rs",
        "pub mod report;\npub fn run() {}\n",
    );
    write("commands/check/report.rs", "pub struct Tally;\n");
    write(
        "commands/audit/mod.rs",
        "use super::check::report::Tally;\npub fn run() { let _ = Tally; }\n",
    );
    let found = sibling_commands(&imports(src));
    let pairs: Vec<(ModPath, ModPath)> = found.into_iter().map(|(f, t, _)| (f, t)).collect();
    assert_eq!(
        pairs,
        vec![(
            vec!["commands".to_string(), "audit".to_string()],
            vec!["commands".to_string(), "check".to_string()]
        )]
    );
}

/// The checker itself finds a circle and a climb when there is one.
#[test]
fn the_checks_find_a_circle_and_a_climb() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let path = src.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
        std::fs::write(path, text).expect("file");
    };
    write("lib.rs", "pub mod core;\npub mod commands;\n");
    write("core/mod.rs", "pub mod a;\npub mod b;\n");
    write("core/a.rs", "use crate::core::b::B;\npub struct A;\n");
    write(
        "core/b.rs",
        "pub struct B;\nfn f() { let _ = super::a::A; format!(\"{:?}\", crate::commands::C); }\n",
    );
    write("commands/mod.rs", "pub struct C;\n");
    let edges = imports(src);
    let found = circles(&edges);
    let a_b = vec![
        vec!["core".to_string(), "a".to_string()],
        vec!["core".to_string(), "b".to_string()],
    ];
    assert_eq!(found, vec![a_b]);
    assert!(edges.contains_key(&(
        vec!["core".to_string(), "b".to_string()],
        vec!["commands".to_string()]
    )));
}
