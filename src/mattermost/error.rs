//! The one error type of the Mattermost client: every failure says which call failed and why, in one greppable
//! line, and tells the caller whether trying again later can help. It never carries the token.

use std::fmt;
use std::time::Duration;

/// A failed Mattermost call, or a client that could not be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// `GET`, `PUT`, ...; `None` when no request was attempted (setup, invalid argument).
    method: Option<&'static str>,
    /// The API path below the base URL (`/api/v4/users/me`), without query string.
    path: String,
    kind: ApiErrorKind,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApiErrorKind {
    /// Refused before any byte was sent: a bad base URL, token, ca-file or argument.
    Invalid(String),
    /// No usable HTTP response: DNS, connection refused or reset, timeout, TLS.
    Transport(String),
    /// The server answered with a non-2xx status other than a redirect.
    Http {
        status: u16,
        /// Mattermost's i18n error id (`api.context.session_expired.app_error`) when the body was an AppError.
        id: Option<String>,
        /// The AppError message, or a short plain-text body such as the rate limiter's `limit exceeded`.
        message: Option<String>,
        /// `Retry-After`, in seconds, when the server sent one (rate limiting).
        retry_after: Option<u64>,
    },
    /// The server redirected; redirects are not followed so that the token goes nowhere else.
    Redirect {
        status: u16,
        /// `scheme://host[:port]` of the `Location` header; path and query are left out, they may hold secrets.
        location: Option<String>,
    },
    /// A 2xx response whose body is not what the API documents.
    Decode {
        reason: String,
        /// The connection ended before the announced end of the body: a network problem, worth retrying.
        truncated: bool,
    },
    /// The response body is larger than the client accepts.
    TooLarge { limit: u64 },
}

impl ApiError {
    pub(super) fn new(method: Option<&'static str>, path: impl Into<String>, kind: ApiErrorKind) -> ApiError {
        ApiError { method, path: path.into(), kind }
    }

    /// An error found before any request: setup or argument checking.
    pub(super) fn invalid(reason: impl Into<String>) -> ApiError {
        ApiError::new(None, String::new(), ApiErrorKind::Invalid(reason.into()))
    }

    /// Removes every occurrence of `secret` from the texts this error carries, in case a server echoed it back.
    pub(super) fn redact(mut self, secret: &str) -> ApiError {
        if secret.is_empty() {
            return self;
        }
        let scrub = |s: &mut String| {
            if s.contains(secret) {
                *s = s.replace(secret, "<redacted>");
            }
        };
        scrub(&mut self.path);
        match &mut self.kind {
            ApiErrorKind::Invalid(s) | ApiErrorKind::Transport(s) | ApiErrorKind::Decode { reason: s, .. } => scrub(s),
            ApiErrorKind::Http { id, message, .. } => {
                id.iter_mut().chain(message.iter_mut()).for_each(scrub);
            }
            ApiErrorKind::Redirect { location, .. } => location.iter_mut().for_each(scrub),
            ApiErrorKind::TooLarge { .. } => {}
        }
        self
    }

    pub(crate) fn kind(&self) -> &ApiErrorKind {
        &self.kind
    }

    /// The HTTP method of the failed call, `None` when no request was attempted.
    #[cfg(test)]
    pub(crate) fn method(&self) -> Option<&'static str> {
        self.method
    }

    /// The API path of the failed call (`/api/v4/users/me`), empty when no request was attempted.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The HTTP status, when the server answered.
    #[cfg(test)]
    pub(crate) fn status(&self) -> Option<u16> {
        match self.kind {
            ApiErrorKind::Http { status, .. } | ApiErrorKind::Redirect { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Whether the same call may succeed later without anyone changing anything: network trouble, a server error
    /// (except 501, which is a setting), rate limiting, a body cut short.
    pub(crate) fn is_retryable(&self) -> bool {
        match self.kind {
            ApiErrorKind::Transport(_) => true,
            ApiErrorKind::Http { status, .. } => status == 429 || (status >= 500 && status != 501),
            ApiErrorKind::Decode { truncated, .. } => truncated,
            ApiErrorKind::Invalid(_) | ApiErrorKind::Redirect { .. } | ApiErrorKind::TooLarge { .. } => false,
        }
    }

    /// Whether the token was refused (401: invalid, revoked or personal access tokens disabled) or lacks the
    /// permission (403).
    pub(crate) fn is_auth(&self) -> bool {
        matches!(self.kind, ApiErrorKind::Http { status: 401 | 403, .. })
    }

    /// Whether the server refused a custom status's emoji as unknown (400
    /// `api.custom_status.set_custom_statuses.emoji_not_found`: neither a system emoji nor an existing custom one).
    pub(crate) fn is_unknown_emoji(&self) -> bool {
        matches!(&self.kind, ApiErrorKind::Http { status: 400, id: Some(id), .. }
            if id == "api.custom_status.set_custom_statuses.emoji_not_found")
    }

    /// Whether the server has the feature switched off (501: custom statuses disabled).
    pub(crate) fn is_not_implemented(&self) -> bool {
        matches!(self.kind, ApiErrorKind::Http { status: 501, .. })
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            ApiErrorKind::Http { retry_after, .. } => retry_after.map(Duration::from_secs),
            _ => None,
        }
    }
}

#[cfg(test)]
impl ApiError {
    /// The server's answer `status` with the AppError `id`, for tests of the code that reacts to it.
    pub(crate) fn answered(method: &'static str, path: &str, status: u16, id: &str) -> ApiError {
        ApiError::new(
            Some(method),
            path,
            ApiErrorKind::Http { status, id: Some(id.to_owned()), message: None, retry_after: None },
        )
    }

    /// A 429 with `Retry-After: secs`.
    pub(crate) fn rate_limited(method: &'static str, path: &str, secs: u64) -> ApiError {
        ApiError::new(
            Some(method),
            path,
            ApiErrorKind::Http { status: 429, id: None, message: None, retry_after: Some(secs) },
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("API ERROR: ")?;
        if let Some(method) = self.method {
            write!(f, "{method} {}: ", self.path)?;
        }
        match &self.kind {
            ApiErrorKind::Invalid(reason) | ApiErrorKind::Transport(reason) => f.write_str(reason),
            ApiErrorKind::Http { status, id, message, retry_after } => {
                write!(f, "{status}")?;
                match id {
                    Some(id) => write!(f, " {id}")?,
                    None => {
                        if let Some(reason) =
                            attohttpc::StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason())
                        {
                            write!(f, " {}", reason.to_ascii_lowercase())?;
                        }
                    }
                }
                if let Some(message) = message {
                    write!(f, ": {message}")?;
                }
                if let Some(secs) = retry_after {
                    write!(f, " (retry after {secs} s)")?;
                }
                Ok(())
            }
            ApiErrorKind::Redirect { status, location } => {
                let to = location.as_deref().unwrap_or("an unnamed location");
                write!(f, "{status} redirect to {to} not followed: set url to the server's final address")
            }
            ApiErrorKind::Decode { reason, .. } => write!(f, "unexpected response: {reason}"),
            ApiErrorKind::TooLarge { limit } => write!(f, "response body larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for ApiError {}
