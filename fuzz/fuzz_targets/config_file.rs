//! Fuzzes the config file: parsing, then precedence and validation of every key it sets, as `--config` does.
//! Any bytes give a configuration or one error line, never a panic, and an error never shows the token.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mm_status_sync::config::{ConfigError, Inputs, file};

fuzz_target!(|bytes: &[u8]| {
    let Ok(assignments) = file::parse(bytes) else { return };
    let inputs = Inputs { context: vec![("HOME".into(), "/home/fuzz".into())], ..Inputs::default() };
    let path = Path::new("/etc/mm-status-sync/config.env");
    let raw = inputs.raw_with_file(Some((path, bytes)));
    let Ok(raw) = raw else { return };
    // Token files are read from disk: a fuzzed path must not make the target read /dev or /proc at random.
    if assignments.iter().any(|a| a.name == "MM_STATUS_SYNC_TOKEN_FILE") {
        return;
    }
    match inputs.validate(&raw) {
        Ok(_) => {}
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "error of more than one line: {line:?}");
            if let ConfigError::Invalid { key: "token", value, .. } = &e {
                assert_eq!(value, "(value not shown)", "the token is in the error: {line:?}");
            }
        }
    }
});
