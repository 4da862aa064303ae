//! The invariants of ARCHITECTURE.md that a machine can check, over the bridge's own source.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test may unwrap

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A file's product code: without its test module (`#[cfg(test)]` and what follows), and
/// nothing of a file that only holds tests.
fn product_code(p: &Path) -> String {
    if p.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(p).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The string literals of Rust source (plain and raw), without comments; `(line, text)`.
fn string_literals(src: &str) -> Vec<(usize, String)> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                line += usize::from(b[i] == '\n');
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && matches!(b.get(i + 1), Some('"' | '#'))
            && !ident_char(b.get(i.wrapping_sub(1)))
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                i += 1;
                continue;
            }
            let start_line = line;
            let mut s = String::new();
            j += 1;
            while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                line += usize::from(b[j] == '\n');
                s.push(b[j]);
                j += 1;
            }
            out.push((start_line, s));
            i = j;
        } else if c == '"' {
            let start_line = line;
            let mut s = String::new();
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    s.push(b[i]);
                    i += 1;
                }
                line += usize::from(b.get(i) == Some(&'\n'));
                if let Some(ch) = b.get(i) {
                    s.push(*ch);
                }
                i += 1;
            }
            out.push((start_line, s));
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '"'), or a lifetime ('a).
            if b.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < b.len() && b[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// Markup: a closing tag, an XML declaration, a self-closing tag or a namespace declaration.
fn is_markup(s: &str) -> bool {
    let closing = s
        .match_indices("</")
        .any(|(i, _)| s[i + 2..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '{'));
    closing || s.contains("<?xml") || s.contains("/>") || s.contains("xmlns")
}

fn relative(p: &Path) -> String {
    p.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(p)
        .display()
        .to_string()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn only_protocol_writes_a_wire_format() {
    let mut found = Vec::new();
    for f in rust_files(&src()) {
        let rel = relative(&f);
        // protocol/* writes the messages; schema/* renders WSDL/XSD as description documents.
        // ops/page.rs renders the operator page: HTML for people, not a wire format.
        if rel.starts_with("src/protocol/")
            || rel.starts_with("src/schema/")
            || rel == "src/ops/page.rs"
        {
            continue;
        }
        for (line, lit) in string_literals(&product_code(&f)) {
            if is_markup(&lit) {
                found.push(format!("{rel}:{line}: {lit:?}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "XML outside src/protocol (a door must call protocol to write it):\n{}",
        found.join("\n")
    );
}

#[test]
fn only_protocol_and_schema_parse_xml() {
    let mut found = Vec::new();
    for f in rust_files(&src()) {
        let rel = relative(&f);
        if rel.starts_with("src/protocol/") || rel.starts_with("src/schema/") {
            continue;
        }
        let code = product_code(&f);
        for (i, l) in code.lines().enumerate() {
            if l.contains("quick_xml") || l.contains("roxmltree") {
                found.push(format!("{rel}:{}: {}", i + 1, l.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "XML parsers used outside protocol:\n{}",
        found.join("\n")
    );
}

#[test]
fn configuration_rules_live_in_config() {
    // A configuration error is made only where the configuration is compiled.
    let mut found = Vec::new();
    for f in rust_files(&src()) {
        let rel = relative(&f);
        if rel.starts_with("src/config/") {
            continue;
        }
        for (i, l) in product_code(&f).lines().enumerate() {
            if l.contains("ConfigError {") || l.contains("ConfigError::") {
                found.push(format!("{rel}:{}: {}", i + 1, l.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "configuration errors made outside config:\n{}",
        found.join("\n")
    );
}

#[test]
fn anyhow_stays_at_the_binarys_edge() {
    let mut found = Vec::new();
    for f in rust_files(&src()) {
        let rel = relative(&f);
        if rel == "src/main.rs" {
            continue;
        }
        if product_code(&f).contains("anyhow") {
            found.push(rel);
        }
    }
    assert!(found.is_empty(), "anyhow outside src/main.rs: {found:?}");
}

#[test]
fn the_scanner_sees_markup_and_not_messages() {
    let src = r##"
        let a = "<value><array><data>"; // "</ignored>"
        let b = "methods are <service>.<operation>";
        let c = r#"<a xmlns="x"/>"#;
        let d = '"'; let e = "</data>";
        /* "</comment>" */
    "##;
    let lits: Vec<(usize, String)> = string_literals(src);
    let markup: Vec<usize> = lits
        .iter()
        .filter(|(_, s)| is_markup(s))
        .map(|(l, _)| *l)
        .collect();
    assert_eq!(markup, vec![4, 5], "{lits:?}");
}
