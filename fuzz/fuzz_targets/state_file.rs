//! Fuzzes the backup file parser: any bytes give a backup or a reason, never a panic, and a backup that parses
//! writes back (as `StateFile::save` writes it) to bytes that parse to the same backup.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mm_status_sync::state;

fuzz_target!(|bytes: &[u8]| {
    let Ok(backup) = state::parse(bytes) else { return };
    let written = format!("{}\n", miniserde::json::to_string(&backup));
    match state::parse(written.as_bytes()) {
        Ok(again) => assert_eq!(again, backup, "backup changed on a round trip: {written}"),
        Err(e) => panic!("a backup we wrote does not read back ({e}): {written}"),
    }
});
