//! The Mattermost facts the meeting logic reasons about, in the server's own shapes, shared by the client, the
//! meeting logic and the state file so that nothing is translated twice.

use std::borrow::Cow;
use std::fmt;

use miniserde::de::Visitor;
use miniserde::ser::Fragment;
use miniserde::{Deserialize, Serialize};

/// Most characters (Unicode scalar values, Go runes) the server keeps of a custom status text; it silently cuts
/// longer texts (`CustomStatusTextMaxRunes`).
pub(crate) const CUSTOM_STATUS_TEXT_MAX: usize = 100;

/// A custom status as the server stores it in `props.customStatus`: `json.Marshal` of Go's `CustomStatus`, so all four
/// fields are always present and `expires_at` is an RFC 3339 time (`0001-01-01T00:00:00Z` for "never").
///
/// `expires_at` is kept as the server's text, not parsed, so that putting a status back sends exactly what was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomStatus {
    pub emoji: String,
    pub text: String,
    pub(crate) duration: String,
    pub(crate) expires_at: String,
}

/// The Go zero time, which the server writes for a custom status that never expires.
pub(crate) const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl CustomStatus {
    /// When the status stops being shown, in Unix seconds, or `None` if it never does.
    ///
    /// Mirrors the web app's `isCustomStatusExpired`: an empty `duration` never expires, whatever `expires_at` says;
    /// any other duration expires at `expires_at`. An unparsable time with a duration counts as already expired,
    /// because the server would reject it if we sent it back.
    pub(crate) fn expires_at_unix(&self) -> Option<i64> {
        if self.duration.is_empty() {
            return None;
        }
        Some(crate::time::parse_rfc3339(&self.expires_at).unwrap_or(i64::MIN))
    }

    /// Whether clients no longer show this status at `now` (Unix seconds).
    pub(crate) fn is_expired(&self, now: i64) -> bool {
        self.expires_at_unix().is_some_and(|t| now >= t)
    }

    /// Whether `other` is the same status for a person looking at it: same emoji and same text as the server keeps
    /// it. Expiry is left out on purpose: the daemon renews its own status's expiry during a meeting, and a renewal
    /// that was sent but not yet recorded must still be recognised as ours.
    pub(crate) fn looks_like(&self, other: &CustomStatus) -> bool {
        self.emoji == other.emoji
            && truncate_runes(&self.text, CUSTOM_STATUS_TEXT_MAX) == truncate_runes(&other.text, CUSTOM_STATUS_TEXT_MAX)
    }
}

/// A user's availability (`model.Status.Status`). The server knows these five; a value it may add later is kept as
/// [`Availability::Other`] and treated as something the daemon must not touch, rather than refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Availability {
    Online,
    Away,
    /// Do Not Disturb.
    Dnd,
    Offline,
    /// Out of office, set by the auto-responder; a PUT cannot set it, and any PUT turns the auto-responder off.
    Ooo,
    /// A value this daemon does not know.
    Other(String),
}

impl Availability {
    /// Reads the server's value; the comparison is exact (the server itself is case-sensitive).
    pub(crate) fn parse(s: &str) -> Availability {
        match s {
            "online" => Availability::Online,
            "away" => Availability::Away,
            "dnd" => Availability::Dnd,
            "offline" => Availability::Offline,
            "ooo" => Availability::Ooo,
            other => Availability::Other(other.to_owned()),
        }
    }

    /// The server's value.
    pub fn as_str(&self) -> &str {
        match self {
            Availability::Online => "online",
            Availability::Away => "away",
            Availability::Dnd => "dnd",
            Availability::Offline => "offline",
            Availability::Ooo => "ooo",
            Availability::Other(s) => s,
        }
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Availability {
    fn from(s: &str) -> Availability {
        Availability::parse(s)
    }
}

/// In JSON (the state file) an availability is the server's string.
impl Serialize for Availability {
    fn begin(&self) -> Fragment<'_> {
        Fragment::Str(Cow::Borrowed(self.as_str()))
    }
}

/// Reading a string in place: the slot starts as a placeholder and any other JSON type fails the whole value.
impl Visitor for Availability {
    fn string(&mut self, s: &str) -> miniserde::Result<()> {
        *self = Availability::parse(s);
        Ok(())
    }
}

impl Deserialize for Availability {
    fn begin(out: &mut Option<Self>) -> &mut dyn Visitor {
        out.insert(Availability::Other(String::new()))
    }
}

/// Presence as `GET /users/{id}/status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatus {
    pub status: Availability,
    /// True when the user (or an API call) set it; automatic transitions leave a manual status alone.
    pub(crate) manual: bool,
    /// Seconds since the epoch when a timed DND ends; 0 for none. An old server's GET may show 0 for a timed DND
    /// (docs/mattermost-semantics.md, section 3).
    pub(crate) dnd_end_time: i64,
}

/// The user behind the token, as far as the daemon needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub(crate) username: String,
    /// `props.customStatus`, parsed; `None` when absent, empty or not valid JSON (the server ignores those too).
    pub custom_status: Option<CustomStatus>,
}

/// One entry of the user's preferences (`model.Preference`): a per-user key/value store every device of the user
/// reads and writes. The user id is the client's business, so it is not kept here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Preference {
    pub(crate) category: String,
    pub(crate) name: String,
    pub(crate) value: String,
}

/// The first `max` Unicode scalar values of `s` (Go's rune truncation).
pub(crate) fn truncate_runes(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Lets the rules' table tests compare with the server's words.
#[cfg(test)]
impl PartialEq<&str> for Availability {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
