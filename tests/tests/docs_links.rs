//! The README and the docs link only to files that exist in the repository
//! (relative links; web links are not followed).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The targets of the inline links `[text](target)` in `markdown`.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else {
            break;
        };
        out.push(rest[..end].trim().to_string());
        rest = &rest[end..];
    }
    out
}

/// Whether `target` names a file of the repository (not a web address, a
/// mail address or an anchor of the same page).
fn is_local(target: &str) -> bool {
    !(target.is_empty()
        || target.starts_with('#')
        || target.contains("://")
        || target.starts_with("mailto:"))
}

#[test]
fn the_link_parser_finds_inline_links() {
    let md = "see [a](docs/A.md#x), [b](https://e.org) and [c](../c.rs).";
    assert_eq!(
        link_targets(md),
        vec!["docs/A.md#x", "https://e.org", "../c.rs"]
    );
    assert!(is_local("docs/A.md#x") && !is_local("https://e.org") && !is_local("#top"));
}

#[test]
fn readme_and_docs_links_resolve_inside_the_repository() {
    let root = root();
    let mut files = vec![root.join("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ exists");
    for entry in docs.flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            files.push(entry.path());
        }
    }
    assert!(files.len() > 3, "README and docs found: {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable markdown");
        let dir = file.parent().unwrap_or(&root);
        for target in link_targets(&text).into_iter().filter(|t| is_local(t)) {
            let path = target.split('#').next().unwrap_or_default();
            checked += 1;
            if !dir.join(path).exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(checked > 10, "only {checked} local links found");
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
}
