//! The structure rules of the README's "Layout" section, checked over the
//! sources:
//!
//! - no source file uses a file that uses it back, directly or around a
//!   circle. A use is a `crate::…`, `super::…` or `self::…` path, or a
//!   path through a child module the file declares (so a folder's `mod.rs`
//!   that uses `child::X` while `child.rs` uses `super::Y` is a circle;
//!   what children share lives in a sibling file). Declaring a module
//!   (`mod child;`) is not a use.
//! - no file under `src/` is over 800 lines, tests in their own files
//!   (`tests.rs`) aside.
//!
//! The check reads the text: comments and string literals are blanked, then
//! `use` trees and paths are resolved to the deepest module that has a file
//! of its own (an inline `mod tests { … }` belongs to its file).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a source file may be.
const MAX_LINES: usize = 800;

#[test]
fn no_source_file_is_over_800_lines() {
    let mut too_long = Vec::new();
    for file in source_files() {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).expect("read a source file");
        let lines = text.lines().count();
        if lines > MAX_LINES {
            too_long.push(format!("{} has {lines} lines", file.display()));
        }
    }
    assert!(
        too_long.is_empty(),
        "files over {MAX_LINES} lines (split them by concern, README \"Layout\"):\n{}",
        too_long.join("\n")
    );
}

#[test]
fn no_source_file_uses_itself_around_a_circle() {
    let graph = Graph::read(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")));
    let circles = graph.circles();
    assert!(
        circles.is_empty(),
        "files that use each other around a circle (README \"Layout\": data flows one way; \
         move what both need into a file below them):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_check_finds_a_parent_and_child_circle() {
    // The rule itself, on a tree made for it: `mod.rs` uses its child, the
    // child uses `super::`, and a third file only goes one way.
    let dir = std::env::temp_dir().join(format!("sniwalk-structure-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("a")).unwrap();
    fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    fs::write(
        dir.join("a/mod.rs"),
        "// crate::b::nothing in a comment\nmod child;\npub use child::Thing;\npub struct Shared;\n",
    )
    .unwrap();
    fs::write(
        dir.join("a/child.rs"),
        "use super::Shared;\nconst S: &str = \"crate::b\";\npub struct Thing;\n",
    )
    .unwrap();
    fs::write(dir.join("b.rs"), "use crate::a::{child::Thing};\n").unwrap();
    let graph = Graph::read(&dir);
    let circles = graph.circles();
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert!(circles[0].contains("a/mod.rs"), "{circles:?}");
    assert!(circles[0].contains("a/child.rs"), "{circles:?}");
    assert!(!circles[0].contains("b.rs"), "{circles:?}");
}

/// Every `.rs` file of the library under `src/` (`main.rs` is its own
/// crate and only uses the library's public paths).
fn source_files() -> Vec<PathBuf> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut files = Vec::new();
    walk(root, &mut files);
    files.sort();
    files
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Which file uses which, with the line of the first use as evidence.
struct Graph {
    root: PathBuf,
    edges: BTreeMap<PathBuf, BTreeMap<PathBuf, usize>>,
}

impl Graph {
    fn read(root: &Path) -> Graph {
        let mut files = Vec::new();
        walk(root, &mut files);
        files.retain(|f| f != &root.join("main.rs"));
        // Logical module path → the file that holds it.
        let mut modules = BTreeMap::new();
        for file in &files {
            modules.insert(module_path(root, file), file.clone());
        }
        let mut edges = BTreeMap::new();
        for file in &files {
            let text = fs::read_to_string(file).expect("read a source file");
            let tokens = tokenize(&blank_comments_and_strings(&text));
            let here = module_path(root, file);
            let mut uses: BTreeMap<PathBuf, usize> = BTreeMap::new();
            for (path, line) in paths_used(&tokens, &here) {
                if let Some(target) = deepest_file(&modules, &path)
                    && target != file
                {
                    uses.entry(target.clone()).or_insert(line);
                }
            }
            edges.insert(file.clone(), uses);
        }
        Graph {
            root: root.to_path_buf(),
            edges,
        }
    }

    /// One line per strongly connected group of files, each file with the
    /// first line where it uses the next one in the group.
    fn circles(&self) -> Vec<String> {
        let nodes: Vec<&PathBuf> = self.edges.keys().collect();
        let index: BTreeMap<&PathBuf, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let adjacency: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                self.edges[*n]
                    .keys()
                    .filter_map(|t| index.get(t).copied())
                    .collect()
            })
            .collect();
        let mut out = Vec::new();
        for group in strongly_connected(&adjacency) {
            if group.len() < 2 {
                continue;
            }
            let members: BTreeSet<usize> = group.iter().copied().collect();
            let mut lines = Vec::new();
            for &from in &group {
                for (to, line) in &self.edges[nodes[from]] {
                    if index.get(to).is_some_and(|t| members.contains(t)) {
                        lines.push(format!(
                            "{}:{} uses {}",
                            self.relative(nodes[from]),
                            line,
                            self.relative(to)
                        ));
                    }
                }
            }
            out.push(format!("circle:\n  {}", lines.join("\n  ")));
        }
        out
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Tarjan's algorithm, iteratively: groups of nodes that reach each other.
fn strongly_connected(adjacency: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = adjacency.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut groups = Vec::new();
    let mut next = 0;
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        while let Some(&mut (node, ref mut child)) = work.last_mut() {
            if *child == 0 && index[node] == usize::MAX {
                index[node] = next;
                low[node] = next;
                next += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&to) = adjacency[node].get(*child) {
                *child += 1;
                if index[to] == usize::MAX {
                    work.push((to, 0));
                } else if on_stack[to] {
                    low[node] = low[node].min(index[to]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut group = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    group.push(member);
                    if member == node {
                        break;
                    }
                }
                groups.push(group);
            }
        }
    }
    groups
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; `lib.rs` → `[]`.
fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).expect("a file under the root");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    if last != "mod.rs" && last != "lib.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// The file of the longest prefix of `path` that is a module with a file.
fn deepest_file<'a>(
    modules: &'a BTreeMap<Vec<String>, PathBuf>,
    path: &[String],
) -> Option<&'a PathBuf> {
    (0..=path.len())
        .rev()
        .find_map(|len| modules.get(&path[..len]))
}

/// `text` with comments, string and character literals replaced by spaces
/// (newlines kept, so line numbers stay right).
fn blank_comments_and_strings(text: &str) -> String {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i] == '/' && bytes.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if bytes[i] == '*' && bytes.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(bytes[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !bytes
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while bytes.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if bytes.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match bytes.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| bytes.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            for &b in &bytes[i..j.min(bytes.len())] {
                out.push(blank(b));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < bytes.len() {
                    out.push(blank(bytes[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), not a lifetime.
            let end = if next == Some('\\') {
                (i + 2..bytes.len()).find(|&j| bytes[j] == '\'')
            } else if bytes.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A word, `::`, or one punctuation character, with its line.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    line: usize,
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            tokens.push(Token {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    tokens
}

/// Every crate path a file uses, as an absolute logical module path, with
/// the line it is used on.
fn paths_used(tokens: &[Token], file_module: &[String]) -> Vec<(Vec<String>, usize)> {
    // Modules declared in this file (`mod x;` and inline `mod x { … }`).
    let children: BTreeSet<&str> = tokens
        .windows(2)
        .filter(|w| w[0].text == "mod")
        .map(|w| w[1].text.as_str())
        .collect();
    let mut out = Vec::new();
    // The inline modules we are in: (name, brace depth at which it closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let here: Vec<String> = file_module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        let t = tokens[i].text.as_str();
        match t {
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                i += 1;
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t.text == "{") => {
                inline.push((tokens[i + 1].text.clone(), depth));
                depth += 1;
                i += 3;
            }
            // `pub(in crate::x)` names a visibility, not a use.
            "in" if i >= 2 && tokens[i - 1].text == "(" && tokens[i - 2].text == "pub" => {
                while i < tokens.len() && tokens[i].text != ")" {
                    i += 1;
                }
            }
            "use" => {
                let end = (i..tokens.len())
                    .find(|&j| tokens[j].text == ";")
                    .unwrap_or(tokens.len());
                let line = tokens[i].line;
                let mut expanded = Vec::new();
                expand_use_tree(&tokens[i + 1..end], &mut Vec::new(), &mut expanded);
                for path in expanded {
                    if let Some(resolved) = resolve(&path, &here, &children) {
                        out.push((resolved, line));
                    }
                }
                i = end + 1;
            }
            _ => {
                let starts_path = tokens.get(i + 1).is_some_and(|n| n.text == "::")
                    && !(i > 0 && tokens[i - 1].text == "::");
                if starts_path {
                    let mut path = vec![t.to_string()];
                    let mut j = i + 1;
                    while tokens.get(j).is_some_and(|t| t.text == "::")
                        && tokens.get(j + 1).is_some_and(|t| is_word(&t.text))
                    {
                        path.push(tokens[j + 1].text.clone());
                        j += 2;
                    }
                    if let Some(resolved) = resolve(&path, &here, &children) {
                        out.push((resolved, tokens[i].line));
                    }
                    i = j;
                } else {
                    i += 1;
                }
            }
        }
    }
    out
}

fn is_word(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// `a::{b, c::d as e, f::*}` → `[a, b]`, `[a, c, d]`, `[a, f]`.
fn expand_use_tree(tokens: &[Token], prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut i = 0;
    let start_len = prefix.len();
    while i < tokens.len() {
        let t = tokens[i].text.as_str();
        match t {
            "::" => i += 1,
            "{" => {
                // Split the group at top-level commas.
                let mut level = 0;
                let mut item_start = i + 1;
                let mut j = i + 1;
                while j < tokens.len() {
                    match tokens[j].text.as_str() {
                        "{" => level += 1,
                        "}" if level == 0 => {
                            expand_use_tree(&tokens[item_start..j], prefix, out);
                            break;
                        }
                        "}" => level -= 1,
                        "," if level == 0 => {
                            expand_use_tree(&tokens[item_start..j], prefix, out);
                            item_start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                prefix.truncate(start_len);
                return;
            }
            "as" | "*" => break,
            _ if is_word(t) => {
                prefix.push(t.to_string());
                i += 1;
            }
            _ => i += 1,
        }
    }
    if prefix.len() > start_len {
        out.push(prefix.clone());
    }
    prefix.truncate(start_len);
}

/// `path` as an absolute module path, or `None` when it leaves the crate.
fn resolve(path: &[String], here: &[String], children: &BTreeSet<&str>) -> Option<Vec<String>> {
    let first = path.first()?;
    let (mut base, rest) = match first.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (here.to_vec(), &path[1..]),
        "super" => (here.to_vec(), path),
        name if children.contains(name) => (here.to_vec(), path),
        _ => return None,
    };
    let mut rest = rest.iter().peekable();
    while rest.peek().is_some_and(|s| s.as_str() == "super") {
        base.pop()?;
        rest.next();
    }
    base.extend(rest.filter(|s| s.as_str() != "self").cloned());
    Some(base)
}
