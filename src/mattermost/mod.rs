//! The Mattermost API client: the only code in the daemon that opens sockets. Nine blocking calls over HTTPS
//! (attohttpc + rustls/ring), each bounded in time and size, JSON read leniently where the server is lenient, and
//! one error type that never carries the token.
//!
//! Reading order: `Client` (the calls), `ApiError` (how they fail), `wire` (the JSON), `tls` (whom we trust),
//! and, outside, `crate::base_url` (where we may send the token).

mod client;
mod error;
mod tls;
mod wire;

#[cfg(test)]
mod tests;

pub(crate) use client::{Client, Timeouts};
pub(crate) use error::ApiError;
// The client tests reach these through `super::*`.
#[cfg(test)]
use {client::MAX_BODY_BYTES, error::ApiErrorKind};

pub(crate) use crate::secret::Secret;

use crate::model::{CustomStatus, User, UserStatus};

/// What each parser of server responses makes of one body. For the `server_response` fuzz target only: a
/// hidden function in the library costs nothing and keeps the parsers' own visibility `pub(super)`, where a cargo
/// feature would leave this code outside the normal clippy and test runs.
#[doc(hidden)]
#[derive(Debug)]
pub struct ParsedResponse {
    pub user: Result<User, String>,
    pub status: Result<UserStatus, String>,
    /// The body read as the JSON string inside `props.customStatus`.
    pub custom_status: Option<CustomStatus>,
    /// The id and message an error response with this body would report.
    pub error_text: (Option<String>, Option<String>),
}

/// Runs every response parser over `body`, as the client would after reading a 2xx (or error) response.
#[doc(hidden)]
pub fn parse_every_response(body: &[u8]) -> ParsedResponse {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not utf-8".to_owned());
    ParsedResponse {
        user: text.clone().and_then(wire::decode_user),
        status: text.clone().and_then(wire::decode_status),
        custom_status: text.ok().and_then(wire::parse_custom_status),
        error_text: client::error_text(body),
    }
}

/// The body the client sends to set `status`, for the fuzz target's round trip.
#[doc(hidden)]
pub fn custom_status_request_body(status: &CustomStatus) -> String {
    wire::custom_status_body(status)
}
