//! Fuzzes the config file: parsing, then precedence and validation of every key it sets, as `--config` does.
//! Any bytes give a configuration or one error line, never a panic, and an error never shows the token; a
//! configuration that loads is printed by `config` as a file that loads back to the same configuration.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mm_status_sync::config::{self, Config, ConfigError, Inputs, file};

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
        Ok(config) => {
            // What `config` prints is a config file that reads back to the same configuration (with the token,
            // which it never prints, given again).
            let rendered = config::render(&raw, &config);
            let token = config.server.as_ref().map(|s| s.token.expose().to_owned());
            let env = token.map(|t| vec![("MM_STATUS_SYNC_TOKEN".to_owned(), t.into())]).unwrap_or_default();
            let reread = Inputs { env, ..inputs.clone() };
            let again = reread.raw_with_file(Some((path, rendered.as_bytes()))).and_then(|r| reread.validate(&r));
            let again = again.unwrap_or_else(|e| panic!("rendered configuration does not read back: {e}\n{rendered}"));
            assert_eq!(summary(&again), summary(&config), "{rendered}");
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "error of more than one line: {line:?}");
            if let ConfigError::Invalid { key: "token", value, .. } = &e {
                assert_eq!(value, "(value not shown)", "the token is in the error: {line:?}");
            }
        }
    }
});

/// Everything a configuration decides except the token, which `config` never prints.
fn summary(c: &Config) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {:?} {:?} {:?} {:?}",
        c.devices,
        c.ignore_processes,
        c.require_streaming_for,
        c.start_delay,
        c.end_delay,
        c.interval,
        c.state_dir,
        c.log,
        c.log_level,
        c.dry_run,
        c.meeting,
        c.server.as_ref().map(|s| (&s.url, &s.user_id, &s.ca_file)),
        c.on_meeting_start,
        c.on_meeting_end,
    )
}
