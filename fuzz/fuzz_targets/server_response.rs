//! Fuzzes every parser of Mattermost responses: any body must give a value or an error, never a panic, a stack
//! overflow or an unbounded allocation, and what the parsers accept must keep the promises the daemon relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mm_status_sync::mattermost::{custom_status_request_body, parse_every_response};

fuzz_target!(|body: &[u8]| {
    let parsed = parse_every_response(body);
    if let Ok(user) = &parsed.user {
        assert!(!user.id.is_empty(), "a user without an id was accepted");
        if let Some(cs) = &user.custom_status {
            assert!(!cs.emoji.is_empty() || !cs.text.is_empty(), "an empty custom status was kept");
        }
    }
    if let Ok(status) = &parsed.status {
        assert!(!status.status.as_str().is_empty(), "an empty availability was accepted");
    }
    if let Some(cs) = &parsed.custom_status {
        assert!(!cs.emoji.is_empty() || !cs.text.is_empty(), "an empty custom status was kept");
        // What is put back at the end of a meeting is what was read at its start: the request body the client
        // sends reads back as the same custom status.
        let sent = custom_status_request_body(cs);
        let again = parse_every_response(sent.as_bytes()).custom_status;
        assert_eq!(again.as_ref(), Some(cs), "custom status changed on its way back: {sent}");
    }
    // An error's id and message end up in an ApiError, which is one line of bounded length.
    let (id, message) = &parsed.error_text;
    for text in id.iter().chain(message) {
        assert!(text.len() <= 400 && !text.chars().any(char::is_control), "{text:?}");
    }
});
