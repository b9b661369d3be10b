//! Keeps ARCHITECTURE.md's layer table true. It reads the table (the
//! fenced block under "## Layers": one line per layer, top first, modules
//! before the `|`, a trailing comma going on to the next line) and the crate's imports (every file under `src/` reached
//! from `lib.rs` and `main.rs` through `mod` declarations, leaving out
//! `#[cfg(test)]` modules and items): `use crate::X…`, `crate::X::…` paths,
//! the same inside macro calls, `super::` paths that climb to another
//! top-level module, and in `main.rs` `sesame_vault::X`. A module imports
//! only modules on lower lines; modules on one line never import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// Imports the table does not allow yet, each with what removes it. The
/// test fails when one of these is no longer in the code: delete it then.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// One line of the table: its modules, and its layer (0 is the bottom line).
struct Table {
    layer: BTreeMap<String, usize>,
    lines: usize,
}

fn read_table(markdown: &str) -> Table {
    let section = markdown.split("\n## Layers").nth(1).expect("ARCHITECTURE.md has a `## Layers` section");
    let block = section.split("```").nth(1).expect("the Layers section starts with a fenced block");
    let mut rows: Vec<Vec<String>> = Vec::new();
    // The row a line ending in a comma before its `|` goes on with.
    let mut open = false;
    // The first line of a fence is its info string.
    for line in block.lines().skip(1) {
        let Some((modules, _what)) = line.split_once('|') else {
            assert!(line.trim().is_empty(), "a layer line needs `modules | what they do`: {line:?}");
            continue;
        };
        let names: Vec<String> = modules
            .split(',')
            .map(|m| m.trim().trim_end_matches('/').trim_end_matches(".rs").to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        // A line with nothing before the `|` only goes on describing the one above.
        if names.is_empty() {
            continue;
        }
        match rows.last_mut() {
            Some(row) if open => row.extend(names),
            _ => rows.push(names),
        }
        open = modules.trim_end().ends_with(',');
    }
    assert!(!rows.is_empty(), "the layer table is empty");
    let lines = rows.len();
    let mut layer = BTreeMap::new();
    for (top_down, modules) in rows.into_iter().enumerate() {
        for module in modules {
            let previous = layer.insert(module.clone(), lines - 1 - top_down);
            assert!(previous.is_none(), "{module} is on two lines of the layer table");
        }
    }
    Table { layer, lines }
}

/// An import of another top-level module, found in `file`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    file: String,
    from: String,
    to: String,
}

struct Collector<'a> {
    file: &'a str,
    /// The module path of the code being read (`["store", "runner"]`).
    path: Vec<String>,
    /// What `crate` is called here: `crate`, or `sesame_vault` in `main.rs`.
    root: &'static str,
    top_level: &'a BTreeSet<String>,
    imports: &'a mut BTreeSet<Import>,
    /// `mod x;` declarations to read next: (file, module path).
    children: Vec<(PathBuf, Vec<String>)>,
    dir: PathBuf,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string().trim() == "test"))
}

impl Collector<'_> {
    fn note(&mut self, to: &str) {
        let from = self.path.first().cloned().unwrap_or_else(|| "main".to_owned());
        if to != from && self.top_level.contains(to) {
            self.imports.insert(Import { file: self.file.to_owned(), from, to: to.to_owned() });
        }
    }

    /// `segments` is a path from its first segment; notes the top-level
    /// module it names, if it leaves this one.
    fn path_segments(&mut self, segments: &[String]) {
        match segments {
            [first, second, ..] if first == self.root => self.note(second),
            [first, ..] if first == "super" => {
                let climbs = segments.iter().take_while(|s| *s == "super").count();
                if climbs >= self.path.len() {
                    if let Some(next) = segments.get(climbs) {
                        self.note(next);
                    }
                }
            }
            _ => {}
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.path_segments(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.path_segments(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.path_segments(&prefix.clone()),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Paths inside macro calls (`format!`, `tracing::warn!`, …) are tokens,
    /// not syntax: `root :: ident` is looked for in them.
    fn tokens(&mut self, tokens: TokenStream) {
        let mut flat = Vec::new();
        flatten(tokens, &mut flat);
        for window in flat.windows(4) {
            if let [TokenTree::Ident(root), TokenTree::Punct(a), TokenTree::Punct(b), TokenTree::Ident(next)] = window {
                if root == self.root && a.as_char() == ':' && b.as_char() == ':' {
                    self.note(&next.to_string());
                }
            }
        }
    }
}

fn flatten(tokens: TokenStream, out: &mut Vec<TokenTree>) {
    for token in tokens {
        match token {
            TokenTree::Group(g) => flatten(g.stream(), out),
            other => out.push(other),
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => return visit::visit_item(self, item),
        };
        if !is_cfg_test(attrs) {
            visit::visit_item(self, item);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let skip = match item {
            syn::ImplItem::Fn(f) => is_cfg_test(&f.attrs),
            syn::ImplItem::Const(c) => is_cfg_test(&c.attrs),
            _ => false,
        };
        if !skip {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        let name = module.ident.to_string();
        match &module.content {
            None => {
                let dir = self.dir.clone();
                let file = [dir.join(format!("{name}.rs")), dir.join(&name).join("mod.rs")]
                    .into_iter()
                    .find(|f| f.is_file())
                    .unwrap_or_else(|| panic!("{}: no file for `mod {name};`", self.file));
                let mut path = self.path.clone();
                path.push(name);
                self.children.push((file, path));
            }
            Some((_, items)) => {
                self.path.push(name.clone());
                self.dir.push(&name);
                for item in items {
                    self.visit_item(item);
                }
                self.dir.pop();
                self.path.pop();
            }
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.path_segments(&segments);
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        self.tokens(mac.tokens.clone());
    }
}

/// Reads `file` (module path `path`) and every file it declares with `mod`.
fn collect(
    src: &Path,
    file: &Path,
    path: Vec<String>,
    root: &'static str,
    top_level: &BTreeSet<String>,
    imports: &mut BTreeSet<Import>,
) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
    let shown = format!("src/{}", file.strip_prefix(src).unwrap().display());
    // `mod x;` in `a.rs` is `a/x.rs`; in `lib.rs`, `main.rs` or `mod.rs` it is beside it.
    let stem = file.file_stem().unwrap().to_string_lossy();
    let dir = match stem.as_ref() {
        "lib" | "main" | "mod" => file.parent().unwrap().to_path_buf(),
        _ => file.with_extension(""),
    };
    let mut collector = Collector { file: &shown, path, root, top_level, imports, children: Vec::new(), dir };
    if !is_cfg_test(&syntax.attrs) {
        collector.visit_file(&syntax);
    }
    let children = std::mem::take(&mut collector.children);
    for (child, path) in children {
        collect(src, &child, path, root, top_level, imports);
    }
}

/// The top-level modules `lib.rs` declares (tests left out).
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let lib = syn::parse_file(&std::fs::read_to_string(src.join("lib.rs")).unwrap()).unwrap();
    lib.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) if !is_cfg_test(&m.attrs) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect()
}

fn imports(src: &Path, top_level: &BTreeSet<String>) -> BTreeSet<Import> {
    let mut found = BTreeSet::new();
    collect(src, &src.join("lib.rs"), Vec::new(), "crate", top_level, &mut found);
    // `main.rs` is the binary: it reaches the library as `sesame_vault`.
    collect(src, &src.join("main.rs"), Vec::new(), "sesame_vault", top_level, &mut found);
    found
}

#[test]
fn imports_follow_the_layer_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let table = read_table(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    let top_level = top_level_modules(&src);

    let mut problems = Vec::new();
    for module in top_level.iter().chain(std::iter::once(&"main".to_owned())) {
        if !table.layer.contains_key(module) {
            problems.push(format!("{module} is in no line of ARCHITECTURE.md's layer table: place it"));
        }
    }
    for module in table.layer.keys() {
        if module != "main" && !top_level.contains(module) {
            problems.push(format!("the layer table names {module}, which is not a module of src/lib.rs"));
        }
    }

    let found = imports(&src, &top_level);
    let mut excused = BTreeSet::new();
    for import in &found {
        let (Some(&from), Some(&to)) = (table.layer.get(&import.from), table.layer.get(&import.to)) else {
            continue;
        };
        if to < from {
            continue;
        }
        if let Some(exception) =
            EXCEPTIONS.iter().find(|(file, module, _)| *file == import.file && *module == import.to)
        {
            excused.insert(exception);
            continue;
        }
        let how = if to == from { "its own layer" } else { "a higher one" };
        problems.push(format!(
            "{} imports crate::{} (layer {to}) from layer {from} ({}): {} may import only from below it, not from {how}",
            import.file, import.to, import.from, import.from
        ));
    }
    for exception in EXCEPTIONS {
        if !excused.contains(exception) {
            problems.push(format!(
                "the exception {} → crate::{} ({}) is not needed any more: delete it from EXCEPTIONS",
                exception.0, exception.1, exception.2
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the imports do not follow ARCHITECTURE.md's layer table ({} layers, 0 is the bottom):\n  {}\n",
        table.lines,
        problems.join("\n  ")
    );
}

/// The reader itself: each kind of reference is found, and test code is not.
#[test]
fn the_reader_finds_every_kind_of_reference() {
    let top_level: BTreeSet<String> = ["a", "b", "c", "d", "e", "f", "g"].map(String::from).into();
    let text = r#"
        use crate::a::Thing;
        use crate::{b, c::{self, More}};
        fn f() -> crate::d::Type { tracing::warn!(x = %crate::e::name(), "…"); todo!() }
        #[cfg(test)]
        mod tests { use crate::g::Hidden; }
        mod inner { use super::super::f::Up; }
    "#;
    let syntax = syn::parse_file(text).unwrap();
    let mut found = BTreeSet::new();
    let mut collector = Collector {
        file: "src/x.rs",
        path: vec!["x".into()],
        root: "crate",
        top_level: &top_level,
        imports: &mut found,
        children: Vec::new(),
        dir: PathBuf::from("src/x"),
    };
    collector.visit_file(&syntax);
    let modules: Vec<&str> = found.iter().map(|i| i.to.as_str()).collect();
    assert_eq!(modules, ["a", "b", "c", "d", "e", "f"]);
}
