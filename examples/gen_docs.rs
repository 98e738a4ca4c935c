//! Writes the documentation generated from the key table: the key table in README.md (between its markers),
//! dist/config.env and the man page dist/mm-status-sync.1. Run it after changing src/config/keys.rs:
//! `cargo run --example gen_docs`. tests/generated_docs.rs fails until the committed files match.

use std::path::Path;

use mm_status_sync::config::docs;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let readme = docs::with_readme_table(&readme).unwrap_or_else(|| {
        panic!("README.md has no key table markers: {} ... {}", docs::README_BEGIN, docs::README_END)
    });
    let files = [
        (readme_path, readme),
        (root.join("dist/config.env"), docs::config_env()),
        (root.join("dist/mm-status-sync.1"), docs::man_page()),
    ];
    for (path, text) in files {
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if old != text {
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            println!("wrote {}", path.display());
        } else {
            println!("unchanged {}", path.display());
        }
    }
}
