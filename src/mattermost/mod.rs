//! The Mattermost API client: the only code in the daemon that opens sockets. Six blocking calls over HTTPS
//! (attohttpc + rustls/ring), each bounded in time and size, JSON read leniently where the server is lenient, and
//! one error type that never carries the token.
//!
//! Reading order: [`Client`] (the calls), [`ApiError`] (how they fail), `wire` (the JSON), `tls` (whom we trust),
//! `base_url` (where we may send the token).

mod base_url;
mod client;
mod error;
mod tls;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;

pub use base_url::validate_base_url;
pub use client::{Client, MAX_BODY_BYTES, Timeouts};
pub use error::{ApiError, ApiErrorKind};

/// The personal access token. Its `Debug` and `Display` print `<redacted>` so that it cannot reach a log line or
/// an error message by accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(token: impl Into<String>) -> Secret {
        Secret(token.into())
    }

    /// The token itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(token: String) -> Secret {
        Secret(token)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
