//! The documentation generated from the key table stays generated: the README's key table, `dist/config.env` and
//! the man page `dist/mm-status-sync.1` are what `cargo run --example gen_docs` writes from the table now, the man
//! page renders with `man -l`, and every key of `config --keys` is in the man page and in `--help` (the README
//! table and `dist/config.env` are checked against the same list by tests/packaging.rs).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use mm_status_sync::config::docs;
use support::BIN;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative)).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn binary_keys() -> Vec<String> {
    let out = Command::new(BIN).args(["config", "--keys"]).env_clear().output().unwrap();
    assert!(out.status.success(), "config --keys: {out:?}");
    let keys: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    assert!(keys.len() > 10 && keys.contains(&"url".to_owned()), "{keys:?}");
    keys
}

/// Fails naming the file and the first line that differs, and how to regenerate.
fn assert_generated(relative: &str, committed: &str, generated: &str) {
    if committed == generated {
        return;
    }
    let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b).unwrap_or(0);
    panic!(
        "{relative} differs from what the key table generates (first at line {}: committed {:?}, generated {:?}); \
         run `cargo run --example gen_docs` and commit the result",
        line + 1,
        committed.lines().nth(line),
        generated.lines().nth(line)
    );
}

#[test]
fn readme_key_table_is_generated_from_the_table() {
    let readme = read("README.md");
    let generated = docs::with_readme_table(&readme).expect("README.md has the key table markers");
    assert_generated("README.md", &readme, &generated);
}

#[test]
fn example_config_is_generated_from_the_table() {
    assert_generated("dist/config.env", &read("dist/config.env"), &docs::config_env());
}

#[test]
fn man_page_is_generated_from_the_table() {
    assert_generated("dist/mm-status-sync.1", &read("dist/mm-status-sync.1"), &docs::man_page());
}

#[test]
fn help_lists_every_key() {
    let out = Command::new(BIN).arg("--help").env_clear().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    for key in binary_keys() {
        let var = format!("MM_STATUS_SYNC_{}", key.replace('-', "_").to_ascii_uppercase());
        let flag = format!("--{key}");
        let listed = help.lines().any(|l| {
            let first = l.split_whitespace().next().unwrap_or_default();
            first == flag || first == var
        });
        assert!(listed, "--help does not list {key}:\n{help}");
    }
}

/// The man page as `man -l` renders it (plain text, ASCII, wide enough that no key is hyphenated); `None` when
/// man-db is not installed (CI installs it).
fn rendered_man_page() -> Option<String> {
    if Command::new("man").arg("--version").output().is_err() {
        return None;
    }
    let out = Command::new("man")
        .args(["--warnings", "-l", "-P", "cat"])
        .arg(repo_path("dist/mm-status-sync.1"))
        .env("LC_ALL", "C")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "man -l dist/mm-status-sync.1 failed: {stderr}");
    assert!(stderr.trim().is_empty(), "man -l dist/mm-status-sync.1 warns: {stderr}");
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn man_page_renders_and_lists_every_key() {
    let Some(text) = rendered_man_page() else {
        eprintln!("SKIPPED man_page_renders_and_lists_every_key: `man` (man-db) is not installed, so the man page");
        eprintln!("SKIPPED was not rendered; install man-db (CI does) to run this check");
        return;
    };
    for section in ["NAME", "SYNOPSIS", "COMMANDS", "OPTIONS", "CONFIGURATION", "EXIT STATUS"] {
        assert!(text.lines().any(|l| l == section), "no {section} section in the rendered man page:\n{text}");
    }
    for key in binary_keys() {
        let var = format!("MM_STATUS_SYNC_{}", key.replace('-', "_").to_ascii_uppercase());
        let flag = format!("--{key}");
        let listed = text.lines().any(|l| {
            let first = l.split_whitespace().next().unwrap_or_default();
            first == flag || first == var
        });
        assert!(listed, "the rendered man page has no entry for {key}:\n{text}");
    }
}
