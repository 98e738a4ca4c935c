//! The blocking HTTP client for the nine Mattermost calls the daemon makes, one at a time, each bounded in time and
//! size, with the token sent only to the configured server and never written anywhere else.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use attohttpc::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, USER_AGENT,
};
use attohttpc::{ProxySettings, Session};

use super::error::{ApiError, ApiErrorKind};
use super::{tls, wire};
use crate::base_url::BaseUrl;
use crate::model::{CustomStatus, Preference, User, UserStatus};
use crate::secret::Secret;

/// Largest response body read; Mattermost's answers to these calls are a few kilobytes.
pub(crate) const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Longest non-JSON error body quoted in an error message (the rate limiter's `limit exceeded` fits).
const MAX_QUOTED_BODY: usize = 200;

/// Time limits of every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// Establishing the TCP connection. Defaults to 5 s.
    pub(crate) connect: Duration,
    /// Waiting for any single read from the server. Defaults to 10 s.
    pub(crate) read: Duration,
    /// The whole call, connection, TLS and body included. Defaults to 20 s. Name resolution is not covered: the
    /// system resolver cannot be interrupted (its own timeout applies, 5 s by default on glibc and musl).
    pub(crate) total: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts { connect: Duration::from_secs(5), read: Duration::from_secs(10), total: Duration::from_secs(20) }
    }
}

/// A Mattermost server and the personal access token to use with it.
pub(crate) struct Client {
    /// Checked and normalised `scheme://host[:port][/subpath]`.
    base_url: String,
    /// Carries timeouts, roots, proxy choice and the fixed headers, the token among them.
    session: Session,
    /// Kept to scrub it from anything the server echoes back into an error.
    token: Secret,
    timeouts: Timeouts,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("token", &self.token)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// What [`Client::new`] takes as its server: a [`BaseUrl`] the configuration already checked, or text (the
/// tests' loopback fakes) checked here by the same rules.
pub(crate) trait IntoBaseUrl {
    fn into_base_url(self) -> Result<BaseUrl, String>;
}

impl IntoBaseUrl for &BaseUrl {
    fn into_base_url(self) -> Result<BaseUrl, String> {
        Ok(self.clone())
    }
}

impl IntoBaseUrl for &str {
    fn into_base_url(self) -> Result<BaseUrl, String> {
        BaseUrl::parse(self)
    }
}

impl IntoBaseUrl for &String {
    fn into_base_url(self) -> Result<BaseUrl, String> {
        BaseUrl::parse(self)
    }
}

impl Client {
    /// Checks everything that can be checked without the network: the base URL (a [`BaseUrl`], or text checked
    /// as one), the token, and the `ca-file` (PEM, one or more certificates, added to the system roots). Proxies
    /// from `https_proxy`/`all_proxy`/`no_proxy` are honoured except for a loopback server.
    pub(crate) fn new(
        base_url: impl IntoBaseUrl,
        token: Secret,
        ca_file: Option<&Path>,
        timeouts: Timeouts,
    ) -> Result<Client, ApiError> {
        let base = base_url.into_base_url().map_err(ApiError::invalid)?;
        let token_value = token.expose();
        if token_value.is_empty() {
            return Err(ApiError::invalid("token is empty"));
        }
        if !token_value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid("token contains spaces, control or non-ASCII characters"));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token_value}"))
            .map_err(|_| ApiError::invalid("token cannot be sent in an http header"))?;
        authorization.set_sensitive(true);

        let mut session = Session::new();
        session.follow_redirects(false);
        session.connect_timeout(timeouts.connect);
        session.read_timeout(timeouts.read);
        session.timeout(timeouts.total);
        session.proxy_settings(if base.is_loopback() {
            ProxySettings::builder().build()
        } else {
            ProxySettings::from_env()
        });
        session.header(AUTHORIZATION, authorization);
        session.header(ACCEPT, HeaderValue::from_static("application/json"));
        session.header(USER_AGENT, HeaderValue::from_static(concat!("mm-status-sync/", env!("CARGO_PKG_VERSION"))));
        for root in tls::root_certificates(ca_file).map_err(ApiError::invalid)? {
            session.add_root_certificate(root);
        }
        Ok(Client { base_url: base.as_str().to_owned(), session, token, timeouts })
    }

    /// The checked base URL the client talks to.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The user behind the token (`GET /api/v4/users/me`): its id is what the other calls need.
    pub(crate) fn get_me(&self) -> Result<User, ApiError> {
        self.get_json("/api/v4/users/me".into(), wire::decode_user)
    }

    /// A user by id (`GET /api/v4/users/{user_id}`).
    pub(crate) fn get_user(&self, user_id: &str) -> Result<User, ApiError> {
        let path = self.user_path(user_id, "")?;
        self.get_json(path, wire::decode_user)
    }

    /// A user's presence (`GET /api/v4/users/{user_id}/status`). An unknown id reads as `offline`, as the server
    /// reports it; `dnd_end_time` is not reliable on every server version.
    pub(crate) fn get_status(&self, user_id: &str) -> Result<UserStatus, ApiError> {
        let path = self.user_path(user_id, "/status")?;
        self.get_json(path, wire::decode_status)
    }

    /// Sets a user's presence (`PUT /api/v4/users/{user_id}/status`) and returns it as the server now reports it.
    ///
    /// `user_id` must be the real id, not `me`: the server compares the body's `user_id` with the resolved one.
    /// `dnd_end_time` (seconds since the epoch, truncated to the minute by the server) is sent only when given.
    pub(crate) fn put_status(
        &self,
        user_id: &str,
        status: &str,
        dnd_end_time: Option<i64>,
    ) -> Result<UserStatus, ApiError> {
        let path = self.user_path(user_id, "/status")?;
        if user_id == "me" {
            return Err(ApiError::new(
                Some("PUT"),
                path,
                ApiErrorKind::Invalid("the user id in the status body must be the real id, not me".into()),
            ));
        }
        let body = self.call(Method::Put, &path, Some(wire::status_body(user_id, status, dnd_end_time)))?;
        self.decode(Method::Put, &path, &body, wire::decode_status)
    }

    /// Sets a user's custom status (`PUT /api/v4/users/{user_id}/status/custom`), sending all four fields exactly
    /// as given.
    pub(crate) fn put_custom_status(&self, user_id: &str, status: &CustomStatus) -> Result<(), ApiError> {
        let path = self.user_path(user_id, "/status/custom")?;
        self.call(Method::Put, &path, Some(wire::custom_status_body(status))).map(drop)
    }

    /// Clears a user's custom status (`DELETE /api/v4/users/{user_id}/status/custom`).
    pub(crate) fn delete_custom_status(&self, user_id: &str) -> Result<(), ApiError> {
        let path = self.user_path(user_id, "/status/custom")?;
        self.call(Method::Delete, &path, None).map(drop)
    }

    /// The user's preferences in `category` (`GET /api/v4/users/{user_id}/preferences/{category}`). The server
    /// answers 404 for a category that holds nothing: that is an empty list here.
    ///
    /// `category` must be lower-case letters, digits and underscores, starting and ending with a letter or digit:
    /// the server's URL pattern refuses anything else.
    pub(crate) fn get_preferences(&self, user_id: &str, category: &str) -> Result<Vec<Preference>, ApiError> {
        if !wire::is_readable_category(category) {
            return Err(ApiError::invalid(format!("preference category {category:?} cannot be read back")));
        }
        let path = self.user_path(user_id, &format!("/preferences/{category}"))?;
        match self.call(Method::Get, &path, None) {
            Ok(body) => self.decode(Method::Get, &path, &body, wire::decode_preferences),
            Err(e) if wire::is_empty_category(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Whether a custom emoji of this name exists (`GET /api/v4/emoji/name/{name}`): 404, and 501 (custom emoji
    /// turned off), are a no. System emoji are not custom emoji: the server knows them without storing them, and
    /// this call answers no for them.
    pub(crate) fn custom_emoji_exists(&self, name: &str) -> Result<bool, ApiError> {
        // Emoji names are lower-case letters, digits, `_`, `-` and `+`; anything else is no emoji at all (and
        // would change the path).
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-+".contains(&b));
        if !valid {
            return Ok(false);
        }
        match self.call(Method::Get, &format!("/api/v4/emoji/name/{name}"), None) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), ApiErrorKind::Http { status: 404 | 501, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces each entry, by (category, name), in one transaction; other entries are left alone
    /// (`PUT /api/v4/users/{user_id}/preferences`). `user_id` must be the real id: the server refuses `me` in an
    /// entry (403).
    pub(crate) fn put_preferences(&self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError> {
        let path = self.user_path(user_id, "/preferences")?;
        let body = self.preferences_body("PUT", &path, user_id, entries)?;
        self.call(Method::Put, &path, Some(body)).map(drop)
    }

    /// Removes each entry by (category, name); a missing one is no error
    /// (`POST /api/v4/users/{user_id}/preferences/delete`).
    pub(crate) fn delete_preferences(&self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError> {
        let path = self.user_path(user_id, "/preferences/delete")?;
        let body = self.preferences_body("POST", &path, user_id, entries)?;
        self.call(Method::Post, &path, Some(body)).map(drop)
    }

    /// The body of a preferences PUT or delete, after the checks the server would answer 400 or 403 to.
    fn preferences_body(
        &self,
        method: &'static str,
        path: &str,
        user_id: &str,
        entries: &[Preference],
    ) -> Result<String, ApiError> {
        let refuse = |reason: String| Err(ApiError::new(Some(method), path, ApiErrorKind::Invalid(reason)));
        if user_id == "me" {
            return refuse("the user id in preference entries must be the real id, not me".into());
        }
        if entries.is_empty() || entries.len() > wire::MAX_PREFERENCES_PER_REQUEST {
            return refuse(format!("{} preference entries: the server takes 1 to 100", entries.len()));
        }
        if let Some(bad) = entries.iter().find_map(wire::preference_problem) {
            return refuse(bad);
        }
        Ok(wire::preferences_body(user_id, entries))
    }

    /// `/api/v4/users/{user_id}{suffix}`. Ids are 26 lowercase letters and digits (or `me`); anything else would
    /// change the path, so it is refused before sending.
    fn user_path(&self, user_id: &str, suffix: &str) -> Result<String, ApiError> {
        if user_id.is_empty() || !user_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let reason = format!("invalid user id {user_id:?}: only letters and digits are allowed");
            return Err(ApiError::invalid(reason).redact(self.token.expose()));
        }
        Ok(format!("/api/v4/users/{user_id}{suffix}"))
    }

    fn get_json<T>(&self, path: String, decode: fn(&str) -> Result<T, String>) -> Result<T, ApiError> {
        let body = self.call(Method::Get, &path, None)?;
        self.decode(Method::Get, &path, &body, decode)
    }

    fn decode<T>(
        &self,
        method: Method,
        path: &str,
        body: &Body,
        decode: fn(&str) -> Result<T, String>,
    ) -> Result<T, ApiError> {
        let parsed = std::str::from_utf8(&body.bytes).map_err(|_| "the body is not utf-8".to_owned()).and_then(decode);
        parsed.map_err(|reason| {
            let reason = match &body.content_type {
                Some(ct) if !ct.starts_with("application/json") => format!("{reason} (content-type {ct})"),
                _ => reason,
            };
            self.error(method, path, ApiErrorKind::Decode { reason, truncated: false })
        })
    }

    /// One request: the 2xx body, or the error.
    fn call(&self, method: Method, path: &str, json: Option<String>) -> Result<Body, ApiError> {
        let url = format!("{}{path}", self.base_url);
        let builder = match method {
            Method::Get => self.session.get(url),
            Method::Put => self.session.put(url),
            Method::Post => self.session.post(url),
            Method::Delete => self.session.delete(url),
        };
        let started = Instant::now();
        let sent = match json {
            Some(json) => builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json")).text(json).send(),
            None => builder.send(),
        };
        let response = sent.map_err(|e| self.error(method, path, self.describe_transport(&e, started)))?;
        let (status, headers, reader) = response.split();
        let status = status.as_u16();
        log::debug!("{} {path}: {status} after {} ms", method.as_str(), started.elapsed().as_millis());
        if (300..400).contains(&status) {
            let location = headers.get(LOCATION).and_then(|v| v.to_str().ok()).and_then(origin_of);
            return Err(self.error(method, path, ApiErrorKind::Redirect { status, location }));
        }
        let content_type = header_text(&headers, CONTENT_TYPE.as_str()).map(str::to_ascii_lowercase);
        let body = read_body(reader, &headers).map_err(|failure| match failure {
            BodyFailure::Io(e) => self.describe_io(&e, started),
            BodyFailure::Truncated(reason) => ApiErrorKind::Decode { reason, truncated: true },
            BodyFailure::TooLarge => ApiErrorKind::TooLarge { limit: MAX_BODY_BYTES },
        });
        if (200..300).contains(&status) {
            let bytes = body.map_err(|kind| self.error(method, path, kind))?;
            return Ok(Body { bytes, content_type });
        }
        // An error status stays the error even when its body could not be read.
        let bytes = body.unwrap_or_default();
        let (id, message) = error_text(&bytes);
        let retry_after = header_text(&headers, "retry-after").and_then(|v| v.trim().parse().ok());
        Err(self.error(method, path, ApiErrorKind::Http { status, id, message, retry_after }))
    }

    fn error(&self, method: Method, path: &str, kind: ApiErrorKind) -> ApiError {
        ApiError::new(Some(method.as_str()), path, kind).redact(self.token.expose())
    }

    fn describe_transport(&self, error: &attohttpc::Error, started: Instant) -> ApiErrorKind {
        use attohttpc::ErrorKind as K;
        match error.kind() {
            K::Io(e) => self.describe_io(e, started),
            K::Tls(e) => ApiErrorKind::Transport(tls::describe_tls_error(e)),
            K::ConnectError { status_code, .. } => {
                ApiErrorKind::Transport(format!("the proxy refused to connect: {}", status_code.as_u16()))
            }
            K::InvalidResponse(k) => ApiErrorKind::Transport(format!("invalid http response: {k}")),
            _ => ApiErrorKind::Transport(error.to_string().to_lowercase()),
        }
    }

    fn describe_io(&self, error: &io::Error, started: Instant) -> ApiErrorKind {
        let elapsed = started.elapsed();
        let timed_out = matches!(error.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
            // At the deadline attohttpc shuts the socket down; a TLS handshake then sees an early end of stream.
            || elapsed >= self.timeouts.total;
        if timed_out {
            let t = &self.timeouts;
            return ApiErrorKind::Transport(format!(
                "timed out after {:.1} s (limits: connect {:?}, read {:?}, total {:?})",
                elapsed.as_secs_f64(),
                t.connect,
                t.read,
                t.total
            ));
        }
        if let Some(tls_error) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return ApiErrorKind::Transport(tls::describe_tls_error(tls_error));
        }
        let text = error.to_string();
        // The standard library's resolver error names neither the host nor the step that failed.
        if let Some(reason) = text.strip_prefix("failed to lookup address information: ") {
            return ApiErrorKind::Transport(format!("cannot resolve {}: {reason}", host_of(&self.base_url)));
        }
        ApiErrorKind::Transport(text)
    }
}

/// A 2xx response body.
struct Body {
    bytes: Vec<u8>,
    content_type: Option<String>,
}

enum BodyFailure {
    Io(io::Error),
    Truncated(String),
    TooLarge,
}

/// Reads at most [`MAX_BODY_BYTES`], refusing a larger announced length up front, and checks that the body is as
/// long as announced (attohttpc ends a short `Content-Length` body silently).
fn read_body(reader: impl Read, headers: &HeaderMap) -> Result<Vec<u8>, BodyFailure> {
    let announced = header_text(headers, CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(BodyFailure::TooLarge);
    }
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0).min(64 * 1024) as usize);
    match reader.take(MAX_BODY_BYTES + 1).read_to_end(&mut bytes) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(BodyFailure::Truncated(format!(
                "the connection closed inside the body after {} bytes",
                bytes.len()
            )));
        }
        Err(e) => return Err(BodyFailure::Io(e)),
    }
    if bytes.len() as u64 > MAX_BODY_BYTES {
        return Err(BodyFailure::TooLarge);
    }
    match announced {
        Some(n) if (bytes.len() as u64) < n => {
            Err(BodyFailure::Truncated(format!("the connection closed after {} of {n} bytes", bytes.len())))
        }
        _ => Ok(bytes),
    }
}

/// Longest AppError id or message kept. Real ones are a sentence; whatever answers in the server's place may
/// send anything there.
const MAX_APP_ERROR_TEXT: usize = 400;

/// The id and message of an error body: an AppError's, or a short one-line text body quoted as the message
/// (the rate limiter answers `limit exceeded`); HTML pages and long bodies are left out. Either is made one line of
/// bounded length, as an [`ApiError`] promises to be: JSON escapes can hide line breaks and terminal controls.
pub(super) fn error_text(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(text) = std::str::from_utf8(body) else { return (None, None) };
    let (id, message) = wire::decode_app_error(text);
    if id.is_some() || message.is_some() {
        let one_line = |s: String| crate::logger::cap_line(&s.replace(char::is_control, " "), MAX_APP_ERROR_TEXT);
        return (id.map(one_line), message.map(one_line));
    }
    let text = text.trim();
    let quotable = !text.is_empty()
        && text.len() <= MAX_QUOTED_BODY
        && !text.starts_with(['<', '{', '['])
        && !text.chars().any(char::is_control);
    (None, quotable.then(|| text.to_owned()))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The host of a checked base URL (`scheme://host[:port][/path]`), without the port.
pub(super) fn host_of(base_url: &str) -> &str {
    let rest = base_url.split_once("://").map_or(base_url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.find(']') {
        Some(end) => &authority[..=end],
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    }
}

/// `scheme://host[:port]` of an absolute URL, `None` for a relative one. Nothing after the authority is kept:
/// paths and queries of redirect targets may carry secrets.
fn origin_of(location: &str) -> Option<String> {
    let (scheme, rest) = location.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic());
    (valid(scheme) && valid(host)).then(|| format!("{scheme}://{host}"))
}
