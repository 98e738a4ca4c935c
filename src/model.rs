//! The Mattermost facts the meeting logic reasons about, in the server's own shapes, shared by the client, the
//! meeting logic and the state file so that nothing is translated twice.

use miniserde::{Deserialize, Serialize};

/// Most characters (Unicode scalar values, Go runes) the server keeps of a custom status text; it silently cuts
/// longer texts (`CustomStatusTextMaxRunes`).
pub const CUSTOM_STATUS_TEXT_MAX: usize = 100;

/// A custom status as the server stores it in `props.customStatus`: `json.Marshal` of Go's `CustomStatus`, so all four
/// fields are always present and `expires_at` is an RFC 3339 time (`0001-01-01T00:00:00Z` for "never").
///
/// `expires_at` is kept as the server's text, not parsed, so that putting a status back sends exactly what was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomStatus {
    pub emoji: String,
    pub text: String,
    pub duration: String,
    pub expires_at: String,
}

/// The Go zero time, which the server writes for a custom status that never expires.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl CustomStatus {
    /// When the status stops being shown, in Unix seconds, or `None` if it never does.
    ///
    /// Mirrors the web app's `isCustomStatusExpired`: an empty `duration` never expires, whatever `expires_at` says;
    /// any other duration expires at `expires_at`. An unparsable time with a duration counts as already expired,
    /// because the server would reject it if we sent it back.
    pub fn expires_at_unix(&self) -> Option<i64> {
        if self.duration.is_empty() {
            return None;
        }
        Some(crate::time::parse_rfc3339(&self.expires_at).unwrap_or(i64::MIN))
    }

    /// Whether clients no longer show this status at `now` (Unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at_unix().is_some_and(|t| now >= t)
    }

    /// Whether `other` is the same status for a person looking at it: same emoji and same text as the server keeps
    /// it. Expiry is left out on purpose: the daemon renews its own status's expiry during a meeting, and a renewal
    /// that was sent but not yet recorded must still be recognised as ours.
    pub fn looks_like(&self, other: &CustomStatus) -> bool {
        self.emoji == other.emoji
            && truncate_runes(&self.text, CUSTOM_STATUS_TEXT_MAX) == truncate_runes(&other.text, CUSTOM_STATUS_TEXT_MAX)
    }
}

/// Presence as `GET /users/{id}/status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatus {
    /// `online`, `away`, `offline`, `dnd` or `ooo`.
    pub status: String,
    /// True when the user (or an API call) set it; automatic transitions leave a manual status alone.
    pub manual: bool,
    /// Seconds since the epoch when a timed DND ends; 0 for none. Not reliable on every server (see the reference).
    pub dnd_end_time: i64,
}

/// The user behind the token, as far as the daemon needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    /// `props.customStatus`, parsed; `None` when absent, empty or not valid JSON (the server ignores those too).
    pub custom_status: Option<CustomStatus>,
}

/// One entry of the user's preferences (`model.Preference`): a per-user key/value store every device of the user
/// reads and writes. The user id is the client's business, so it is not kept here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preference {
    pub category: String,
    pub name: String,
    pub value: String,
}

/// The first `max` Unicode scalar values of `s` (Go's rune truncation).
pub fn truncate_runes(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
