//! A tidy test proving that `chorus-proto` stays sans-IO (ARCHITECTURE.md, invariants; STYLE
//! "Determinism"): its sources name no clock, thread, socket, file, OS randomness, async
//! runtime or hash-ordered container, and its manifest pulls in no IO runtime and no OS
//! randomness. `proto/clippy.toml` forbids the same methods and types where clippy can see
//! them; this test also catches imports, grouped `use` trees and dependencies, and names the
//! file and line of every finding.
//!
//! Comments and string literals are ignored, so the crate's docs may say what it does not do.

use std::fmt;
use std::path::{Path, PathBuf};

/// Names that must not appear in the code of `proto/src`, with the reason.
const FORBIDDEN: &[(&str, &str)] = &[
    ("std::time", "proto never reads a clock: time is a `now_ms` argument"),
    ("Instant", "proto never reads a clock: time is a `now_ms` argument"),
    ("SystemTime", "proto never reads a clock: time is a `now_ms` argument"),
    ("HashMap", "iteration order varies per process: use BTreeMap"),
    ("HashSet", "iteration order varies per process: use BTreeSet"),
    ("std::net", "proto opens no sockets: bytes are arguments"),
    ("std::thread", "proto is a single-threaded state machine"),
    ("std::fs", "proto touches no files: the driver persists"),
    ("thread_rng", "randomness comes from a seed the caller passes"),
    ("rand::rng(", "randomness comes from a seed the caller passes"),
    ("OsRng", "randomness comes from a seed the caller passes"),
    ("tokio", "proto has no async runtime: the driver in src/ has"),
    ("quinn", "proto has no transport: the driver in src/ has"),
    ("getrandom", "randomness comes from a seed the caller passes"),
];

/// Crates that must not be dependencies of `chorus-proto`.
const FORBIDDEN_CRATES: &[&str] = &["tokio", "quinn", "getrandom"];

/// Features of `rand` that read OS randomness or a thread-local generator.
const FORBIDDEN_RAND_FEATURES: &[&str] = &["thread_rng", "sys_rng", "os_rng", "getrandom"];

/// One rule broken, where.
#[derive(Debug, PartialEq, Eq)]
struct Finding {
    file: String,
    line: usize,
    /// The forbidden name or crate found.
    name: String,
    /// What was found and why it is forbidden.
    what: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.what)
    }
}

// ---------------------------------------------------------------------------------------------
// Sources.

/// `source` with every comment and the contents of every string and char literal replaced by
/// spaces; line breaks are kept, so positions keep their line numbers.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let ident_before = |at: usize| at > 0 && is_ident(chars[at - 1]);
        // `r"..."` and `br"..."` open raw strings; `bar"` does not.
        let raw_may_open = !ident_before(i) || (chars[i - 1] == 'b' && !ident_before(i - 1));
        let length = match rest {
            ['/', '/', ..] => rest.iter().take_while(|&&c| c != '\n').count(),
            ['/', '*', ..] => block_comment_length(rest),
            ['r', tail @ ..] if raw_may_open && raw_string_hashes(tail).is_some() => {
                let hashes = raw_string_hashes(tail).unwrap_or(0);
                // Keep `r#"` and `"#`, blank what is between.
                let open = hashes + 2;
                let closing: Vec<char> =
                    std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                let body = (open..rest.len())
                    .find(|&at| rest[at..].starts_with(&closing))
                    .unwrap_or(rest.len());
                out.extend(&rest[..open]);
                out.extend(rest[open..body].iter().map(|&c| blank(c)));
                out.extend(&rest[body..(body + closing.len()).min(rest.len())]);
                i += (body + closing.len()).min(rest.len());
                continue;
            }
            ['"', ..] => string_length(rest),
            ['\'', ..] => char_literal_length(rest).unwrap_or(0),
            _ => 0,
        };
        if length == 0 {
            out.push(chars[i]);
            i += 1;
        } else {
            // A literal keeps its delimiters, a comment becomes blank entirely.
            let literal = matches!(rest[0], '"' | '\'');
            out.extend(rest[..length].iter().enumerate().map(|(at, &c)| {
                let delimiter = literal && (at == 0 || at == length - 1);
                if delimiter { c } else { blank(c) }
            }));
            i += length;
        }
    }
    out.into_iter().collect()
}

/// A space for any character but a line break.
fn blank(c: char) -> char {
    if c == '\n' { '\n' } else { ' ' }
}

/// The length of the (possibly nested) block comment at the start of `text`.
fn block_comment_length(text: &[char]) -> usize {
    let (mut depth, mut at) = (0, 0);
    while at < text.len() {
        match &text[at..] {
            ['/', '*', ..] => {
                depth += 1;
                at += 2;
            }
            ['*', '/', ..] => {
                depth -= 1;
                at += 2;
                if depth == 0 {
                    return at;
                }
            }
            _ => at += 1,
        }
    }
    text.len()
}

/// The length of the string literal at the start of `text`, quotes included.
fn string_length(text: &[char]) -> usize {
    let mut at = 1;
    while at < text.len() {
        match text[at] {
            '\\' => at += 2,
            '"' => return at + 1,
            _ => at += 1,
        }
    }
    text.len()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// For text just after an `r`: the number of `#` of a raw string opening (`#*"`), if it is one.
fn raw_string_hashes(rest: &[char]) -> Option<usize> {
    let hashes = rest.iter().take_while(|&&c| c == '#').count();
    (rest.get(hashes) == Some(&'"')).then_some(hashes)
}

/// The length in chars of the char literal starting at `text[0] == '\''`, or `None` for a
/// lifetime or label.
fn char_literal_length(text: &[char]) -> Option<usize> {
    if text.get(1) == Some(&'\\') {
        // Skip the escaped character itself, which may be a quote.
        let end = text.iter().skip(3).position(|&c| c == '\'')?;
        return Some(end + 4);
    }
    (text.get(2) == Some(&'\'')).then_some(3)
}

/// Whether `needle` occurs in `line` as whole words: not glued to identifier characters on
/// either side.
fn occurs(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + needle.len()..].chars().next();
        let open_start = !needle.starts_with(is_ident) || !before.is_some_and(is_ident);
        let open_end = !needle.ends_with(is_ident) || !after.is_some_and(is_ident);
        open_start && open_end
    })
}

/// Every path a `use` tree names: `std::{fs, time::{Instant}}` gives `std::fs` and
/// `std::time::Instant`.
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = tree[open + 1..].strip_suffix('}').unwrap_or(&tree[open + 1..]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|part| !part.is_empty())
        .flat_map(|part| expand_use_tree(&format!("{prefix}{part}")))
        .collect()
}

/// The findings in one source file.
fn scan_source(file: &str, source: &str) -> Vec<Finding> {
    let code = code_only(source);
    let mut findings = Vec::new();
    let mut report = |line: usize, name: &str, what: String| {
        if !findings.iter().any(|f: &Finding| f.line == line && f.name == name) {
            findings.push(Finding { file: file.into(), line, name: name.into(), what });
        }
    };
    for (index, line) in code.lines().enumerate() {
        for (name, why) in FORBIDDEN {
            if occurs(line, name) {
                report(index + 1, name, format!("`{name}`: {why}"));
            }
        }
    }
    // Grouped imports hide a module behind braces: `use std::{fs, net};`.
    for (at, _) in code.match_indices("use ").filter(|(at, _)| !code[..*at].ends_with(is_ident)) {
        let Some(end) = code[at..].find(';') else { continue };
        let line = code[..at].matches('\n').count() + 1;
        for path in expand_use_tree(&code[at + 4..at + end]) {
            for (name, why) in FORBIDDEN {
                if path == *name || path.starts_with(&format!("{name}::")) {
                    report(line, name, format!("`{path}`: {why}"));
                }
            }
        }
    }
    findings
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn proto_sources_name_no_clock_thread_socket_file_os_randomness_or_hash_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("lib.rs")),
        "no sources found under {}",
        root.display()
    );
    let mut findings = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let name = format!("proto/{}", path.strip_prefix(root).unwrap_or(path).display());
        findings.extend(scan_source(&name, &source));
    }
    let report: Vec<String> = findings.iter().map(Finding::to_string).collect();
    assert!(report.is_empty(), "proto must stay sans-IO:\n{}", report.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Manifest.

/// The dependencies a manifest declares in `sections` (`dependencies`,
/// `target.'cfg(..)'.dependencies`, ...): name and specification text, with its line.
fn dependencies(manifest: &str, sections: &[&str]) -> Vec<(String, String, usize)> {
    let mut found: Vec<(String, String, usize)> = Vec::new();
    let mut section = String::new();
    // The name of the dependency a `[dependencies.name]` table describes, if in one.
    let mut table: Option<String> = None;
    for (index, raw) in manifest.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.trim().to_string();
            table = None;
            for name in sections {
                if let Some(dependency) = section.strip_prefix(&format!("{name}.")) {
                    table = Some(dependency.trim_matches('"').to_string());
                    found.push((
                        dependency.trim_matches('"').to_string(),
                        String::new(),
                        index + 1,
                    ));
                }
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let in_section =
            sections.iter().any(|name| section == *name || section.ends_with(&format!(".{name}")));
        if let Some(dependency) = &table {
            let entry = found.iter_mut().rev().find(|(name, _, _)| name == dependency);
            if let Some((_, spec, _)) = entry {
                spec.push_str(line);
                spec.push_str(", ");
            }
        } else if in_section && let Some((name, spec)) = line.split_once('=') {
            let name = name.trim().trim_matches('"');
            let (name, spec) = match name.split_once('.') {
                Some((name, key)) => (name, format!("{key} = {}", spec.trim())),
                None => (name, spec.trim().to_string()),
            };
            found.push((name.to_string(), spec, index + 1));
        }
    }
    found
}

/// Whether a dependency specification leaves a crate's default features on.
fn default_features_on(spec: &str) -> bool {
    let compact: String = spec.chars().filter(|c| !c.is_whitespace()).collect();
    !(compact.contains("default-features=false") || compact.contains("default_features=false"))
}

/// The findings in `proto/Cargo.toml`, given the workspace manifest for inherited deps.
fn scan_manifest(file: &str, manifest: &str, workspace: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut report = |line: usize, what: String| {
        findings.push(Finding { file: file.into(), line, name: "rand".into(), what });
    };
    for (name, spec, line) in dependencies(manifest, &["dependencies"]) {
        for forbidden in FORBIDDEN_CRATES {
            if occurs(&name, forbidden) || occurs(&spec, forbidden) {
                let what = format!("dependency `{name}` brings `{forbidden}`: proto does no IO");
                report(line, what);
            }
        }
        if name != "rand" {
            continue;
        }
        let inherited = spec.replace(' ', "").contains("workspace=true");
        let effective = if inherited {
            let declared = dependencies(workspace, &["workspace.dependencies"]);
            match declared.into_iter().find(|(name, _, _)| name == "rand") {
                Some((_, spec, _)) => spec,
                None => {
                    report(
                        line,
                        "`rand` inherits a workspace dependency that is not declared".into(),
                    );
                    continue;
                }
            }
        } else {
            spec.clone()
        };
        if default_features_on(&effective) {
            report(
                line,
                format!("`rand` with default features (`{effective}`) reads OS randomness"),
            );
        }
        for feature in FORBIDDEN_RAND_FEATURES {
            if spec.contains(&format!("\"{feature}\""))
                || effective.contains(&format!("\"{feature}\""))
            {
                report(line, format!("`rand` feature `{feature}` reads OS randomness"));
            }
        }
    }
    findings
}

#[test]
fn proto_manifest_has_no_io_runtime_and_no_os_randomness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    };
    let manifest = read(root.join("Cargo.toml"));
    let workspace = read(root.join("../Cargo.toml"));
    let deps = dependencies(&manifest, &["dependencies"]);
    assert!(
        deps.iter().any(|(name, _, _)| name == "serde"),
        "the manifest parser found no dependencies"
    );
    let report: Vec<String> = scan_manifest("proto/Cargo.toml", &manifest, &workspace)
        .iter()
        .map(Finding::to_string)
        .collect();
    assert!(report.is_empty(), "proto must stay sans-IO:\n{}", report.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The checks themselves can fail.

#[test]
fn the_source_scan_finds_what_it_must_and_only_that() {
    let source = r##"//! Not the tokio driver; no HashMap here.
use std::collections::BTreeMap;
use std::{fs, net::TcpStream};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
/* a block comment with std::thread /* nested tokio */ still comment */
fn f<'a>(x: &'a str) -> char {
    let _ = "HashSet in a string, // not a comment";
    let _ = r#"quinn in a raw "string""#;
    let _ = '"';
    let _ = std::thread::spawn(|| ());
    let _: HashMap<u8, u8>;
    let _ = Instantly; let _ = "\\"; let _: HashSet<u8>;
    let _ = rand::rng();
    '\''
}
"##;
    let mut found: Vec<(usize, String)> =
        scan_source("sample.rs", source).into_iter().map(|f| (f.line, f.name)).collect();
    found.sort();
    let expected = [
        (3, "std::fs"),
        (3, "std::net"),
        (4, "std::time"),
        (6, "Instant"),
        (13, "std::thread"),
        (14, "HashMap"),
        (15, "HashSet"),
        (16, "rand::rng("),
    ];
    let expected: Vec<(usize, String)> =
        expected.into_iter().map(|(line, name)| (line, name.to_string())).collect();
    assert_eq!(found, expected);
}

#[test]
fn the_manifest_scan_finds_io_dependencies_and_default_rand() {
    let workspace =
        "[workspace.dependencies]\nrand = { version = \"0.10\", features = [\"alloc\"] }\n";
    let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nserde.workspace = true\n\
                    rand.workspace = true\nrt = { package = \"tokio\", version = \"1\" }\n\n\
                    [dependencies.quinn]\nversion = \"0.11\"\n\n\
                    [target.'cfg(unix)'.dependencies]\ngetrandom = \"0.3\"\n\n\
                    [dev-dependencies]\ntokio = \"1\"\n";
    let found: Vec<usize> =
        scan_manifest("x", manifest, workspace).iter().map(|f| f.line).collect();
    assert_eq!(found, vec![6, 7, 9, 13], "{:?}", scan_manifest("x", manifest, workspace));
    let clean = "[dependencies]\nrand = { version = \"0.10\", default-features = false }\n";
    assert_eq!(scan_manifest("x", clean, ""), Vec::new());
    let thread_rng = "[dependencies]\nrand = { workspace = true, features = [\"thread_rng\"] }\n";
    let workspace =
        "[workspace.dependencies]\nrand = { version = \"0.10\", default-features = false }\n";
    assert_eq!(scan_manifest("x", thread_rng, workspace).len(), 1);
}
