//! A fake Mattermost server for the tests: a real HTTP/1.1 (or HTTPS) server on 127.0.0.1 that implements the few
//! endpoints mm-status-sync uses the way `docs/mattermost-semantics.md` says the real server does (status
//! and its `manual` flag, timed DND and its expiry job, custom status validation and storage, errors, auth, rate
//! limiting), records every call, and can be told to misbehave.
//!
//! # Public API
//!
//! ```text
//! FakeMattermost::start() -> FakeMattermost                  plain HTTP on 127.0.0.1:<free port>
//! FakeMattermost::start_tls(&TestTls) -> FakeMattermost       HTTPS with TestTls's server certificate
//! url() -> String ("http://127.0.0.1:PORT" / "https://...", plus the site path), addr() -> SocketAddr
//! set_site_path("/chat")                                     served under a path, as a SiteURL with a path is
//! user_id(), username(), token() -> String                    the default user and its personal access token
//! set_token(&str), revoke_token(), add_user(&str) -> FakeUser
//!
//! set_status(status, manual, dnd_end_time), set_prev_status(&str), set_last_activity_at(ms), set_out_of_office()
//! set_custom_status_raw(&str), remove_custom_status_prop(), set_custom_status(emoji, text, duration, expires_at)
//! set_custom_status_enabled(bool), set_user_statuses_enabled(bool), set_rate_limit(Option<RateLimit>)
//! preferences(category) -> Vec<(name, value)>, set_preference(category, name, value), delete_preference(category, name)
//! add_custom_emoji(&str), delete_custom_emoji(&str), set_custom_emoji_enabled(bool)
//! state() -> UserState, state_of(user_id) -> UserState
//! calls() / calls_to(method, path_prefix) -> Vec<RecordedCall>, clear_calls(), request_count()
//! connections_accepted(), open_connections()
//! wait_until(timeout, |&UserState| -> bool) -> bool, wait_for_requests(n, timeout) -> bool
//!
//! set_fault(Fault, FaultScope), clear_faults(), pending_faults()
//! respond_with(Fault)                                        one canned answer to the next request, in order
//! set_fault_on_nth(Fault, method, exact_path, nth)             one fault, on the nth such request from now on
//! run_dnd_expiry() -> usize, set_dnd_expiry_interval(Option<Duration>) (default every 200 ms), dnd_expiry_runs()
//! set_dnd_expiry_like_the_server()                           every minute at second :00 of the fake's clock
//! advance_clock(secs), set_clock_offset(secs), now_unix(), now_millis()
//! ```
//!
//! The fake's clock is the system clock plus an offset the test controls; every server-side time (status
//! `last_activity_at`, DND expiry, custom status expiry checks) uses it. Rate limiting uses real time.
//!
//! Where older and newer servers differ, the fake follows current ones. Choices left open:
//! - `dnd_end_time` is truncated like Go's `time.Unix(t, 0).Truncate(time.Minute)`, i.e. `floor(t / 60) * 60` for
//!   every `t` (0 stays 0, negative values stay negative and never expire).
//! - `expires_at` is stored re-serialised the way Go does (RFC 3339 with nanoseconds, trailing zeros dropped, `Z` for
//!   offset zero, other offsets kept): `2025-01-01T10:00:00Z` round-trips unchanged, `...10:00:00.000+00:00` becomes
//!   `...10:00:00Z`.
//! - Fault bodies for 5xx codes are arbitrary (real Mattermost rarely sends them; proxies send HTML).

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::go_json::{self, Json, quote};
use super::go_time::GoTime;
use super::http::{self, Connection, ReadOutcome, ReadWrite, Request, Response};
use super::tls::TestTls;

/// The server version the fake claims in `X-Version-Id`.
const VERSION_ID: &str = "9.11.0.fake";
/// Mattermost's id alphabet (`model.NewId`: base32 with this encoding).
const ID_ALPHABET: &[u8] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
/// Keep-alive connections idle this long are closed (Mattermost's default `IdleTimeout` is 60 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a `NeverAnswer` fault holds a connection if neither the client nor the fake's drop ends it.
const MAX_HANG: Duration = Duration::from_secs(300);
/// Valid custom status durations (`validCustomStatusDuration`).
const DURATIONS: [&str; 6] = ["thirty_minutes", "one_hour", "four_hours", "today", "this_week", "date_and_time"];
/// `CustomStatusTextMaxRunes`.
const TEXT_MAX_RUNES: usize = 100;
/// `MaxRecentCustomStatuses`.
const MAX_RECENT: usize = 5;
/// `maxUpdatePreferences`: most entries one preferences PUT or delete takes.
const MAX_PREFERENCES_PER_REQUEST: usize = 100;
/// `MaxPreferenceValueLength`, in runes.
const MAX_PREFERENCE_VALUE_RUNES: usize = 20_000;
/// System emoji names the fake accepts: a subset of the server's list (`model/emoji_data.go`), namely every emoji the
/// tests and the daemon's default use and a few dozen common ones. Anything else must be a custom emoji that a test
/// added (docs/mattermost-semantics.md, section 6).
const SYSTEM_EMOJI: &[&str] = &[
    "+1",
    "-1",
    "airplane",
    "alarm_clock",
    "beach_umbrella",
    "bike",
    "books",
    "briefcase",
    "bus",
    "calendar",
    "calling",
    "car",
    "coffee",
    "computer",
    "date",
    "desert_island",
    "face_with_thermometer",
    "hamburger",
    "headphones",
    "hospital",
    "house",
    "house_with_garden",
    "hourglass",
    "laptop",
    "lock",
    "memo",
    "microphone",
    "movie_camera",
    "mute",
    "no_bell",
    "no_entry",
    "palm_tree",
    "pencil",
    "phone",
    "pizza",
    "red_circle",
    "runner",
    "sandwich",
    "school",
    "sleeping",
    "slightly_smiling_face",
    "smile",
    "speech_balloon",
    "spiral_calendar_pad",
    "studio_microphone",
    "sunny",
    "tada",
    "telephone_receiver",
    "thinking_face",
    "thumbsup",
    "train",
    "video_camera",
    "warning",
    "x",
    "zzz",
];

/// A running fake server. Dropping it stops every thread it started (within a few tens of milliseconds, or the
/// 5 s write timeout of a connection whose peer stopped reading).
pub struct FakeMattermost {
    shared: Arc<Shared>,
    addr: SocketAddr,
    scheme: &'static str,
    accept_thread: Option<JoinHandle<()>>,
    expiry_thread: Option<JoinHandle<()>>,
}

/// A user the fake knows, with its personal access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeUser {
    pub id: String,
    pub username: String,
    pub token: String,
}

/// The server-side view of one user, as a test wants to assert on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserState {
    pub user_id: String,
    /// `online` | `away` | `offline` | `dnd` | `ooo`.
    pub status: String,
    pub manual: bool,
    /// Milliseconds.
    pub last_activity_at: i64,
    /// Seconds; 0 = no expiry.
    pub dnd_end_time: i64,
    /// What the DND expiry job restores (never exposed over the API).
    pub prev_status: String,
    /// `props.customStatus` as stored: `None` when the key is absent, `Some("")` after a DELETE.
    pub custom_status_raw: Option<String>,
    /// `custom_status_raw` parsed like the server's `GetCustomStatus` (`None` when absent, empty or unparsable).
    pub custom_status: Option<CustomStatus>,
    /// The recent custom statuses preference, newest first.
    pub recent_custom_statuses: Vec<CustomStatus>,
    /// Whether the out-of-office auto-responder is on (set by `set_out_of_office`).
    pub auto_responder_active: bool,
    /// True once a status PUT found the user `ooo` and disabled the auto-responder.
    pub auto_responder_disabled: bool,
    /// Milliseconds; bumped by every change of the user (custom status).
    pub update_at: i64,
}

/// A custom status as the server stores it; `expires_at` is Go's RFC 3339 text (`0001-01-01T00:00:00Z` = none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomStatus {
    pub emoji: String,
    pub text: String,
    pub duration: String,
    pub expires_at: String,
}

/// One request the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedCall {
    pub method: String,
    /// Path as sent (with `me` or the id), without the query string.
    pub path: String,
    pub query: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// The request body as text (lossy UTF-8).
    pub body: String,
    /// The status the fake answered with; `None` when it sent no status line (closed, hung).
    pub status: Option<u16>,
    /// The response body the fake meant to send (before any fault mangled the transfer).
    pub response_body: String,
    /// The fault applied to this request, if any (`Debug` of the `Fault`).
    pub fault: Option<String>,
    pub at: SystemTime,
}

impl RecordedCall {
    /// The first request header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The request line as sent: `GET /api/v4/users/me HTTP/1.1` (with `?query` when there was one).
    pub fn request_line(&self) -> String {
        let query = if self.query.is_empty() { String::new() } else { format!("?{}", self.query) };
        format!("{} {}{query} {}", self.method, self.path, self.version)
    }
}

/// Mattermost's rate limiter settings (`RateLimitSettings`): `per_sec` requests a second with bursts of
/// `max_burst + 1` (GCRA, as `throttled` implements it), shared by every client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_sec: u32,
    pub max_burst: u32,
}

/// A way to misbehave. "Processed" faults let the request change the server state and mangle only the answer;
/// the others answer (or not) without touching the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Stop listening: new connections are refused (ECONNREFUSED) and idle keep-alive connections are closed, until
    /// `clear_faults`. The scope is ignored.
    RefuseConnections,
    /// Read the request, then close the connection without a byte. Not processed.
    CloseWithoutAnswer,
    /// Process the request, then close without answering (the answer is lost in transit).
    DropResponse,
    /// Read the request and never answer; the connection stays open until the client gives up or the fake is
    /// dropped (at most 5 minutes). Not processed.
    NeverAnswer,
    /// Process the request, then never answer, like `NeverAnswer`: the server has applied the call but the client
    /// has not seen the answer. With `NeverAnswer`, this freezes a client on either side of a call taking effect.
    ProcessThenNeverAnswer,
    /// Process the request and send the real answer one byte every `interval`.
    Trickle { interval: Duration },
    /// Answer with this status code and body. Not processed.
    Status { code: u16, body: FaultBody },
    /// Answer 429 `limit exceeded` (text/plain) with `Retry-After: retry_after_secs`. Not processed.
    RateLimited { retry_after_secs: u64 },
    /// Process the request and answer 200 with a body that is not JSON.
    MalformedJson,
    /// Process the request, announce a `Content-Length` 100 bytes longer than the real body, send the body, close.
    TruncatedBody,
    /// Process the request and answer with the real JSON padded with spaces to `bytes` bytes (valid JSON, huge).
    HugeBody { bytes: usize },
    /// Answer `code` with the request's headers reflected in the body, `Authorization` included, as a debugging
    /// proxy or a misconfigured gateway does. Not processed.
    EchoRequestHeaders { code: u16, style: EchoStyle },
    /// Answer with this response instead of the API's: any status, headers and body, as a proxy in front of the
    /// server or a server of another version may send (a redirect, a login page, a body of the wrong shape).
    /// `Content-Length` is added. Not processed.
    Respond(Response),
    /// Write exactly these bytes as the whole answer, status line included, then close. Not processed. For what
    /// no HTTP library writes on purpose but a broken peer does: a body shorter than its `Content-Length`, a chunk
    /// cut off, a body that ends only at close.
    Raw(Vec<u8>),
    /// Keep the port open but stop accepting, as a hung server process does: the kernel still completes new TCP
    /// connections into the listen backlog, and nothing ever reads from them (no TLS handshake, no answer). Until
    /// `clear_faults`. The scope is ignored.
    StopAccepting,
}

/// How `Fault::EchoRequestHeaders` writes the reflected headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoStyle {
    /// One short text/plain line naming only the `Authorization` header: `bad request: unexpected header
    /// Authorization: Bearer <token>` (short enough for a client to quote).
    AuthorizationLine,
    /// A Mattermost-shaped AppError (id `fake.proxy.headers_rejected`) whose message lists every header.
    AppErrorMessage,
    /// text/plain, one `Name: value` line per header, like a TRACE echo.
    HeaderLines,
}

/// The body of a `Fault::Status` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultBody {
    /// A Mattermost AppError JSON; the id and message follow the code (401 session expired, 403 permissions,
    /// 404 not found, 501 custom status disabled, 400 invalid status param, others arbitrary).
    AppError,
    /// An nginx-style HTML error page (what a reverse proxy sends for 502/503/504).
    Html,
    /// No body at all.
    Empty,
    /// This content type and body.
    Custom { content_type: String, body: String },
}

impl Fault {
    /// `Status { code, body: AppError }`.
    pub fn app_error(code: u16) -> Fault {
        Fault::Status { code, body: FaultBody::AppError }
    }

    /// `Status { code, body: Html }`.
    pub fn html(code: u16) -> Fault {
        Fault::Status { code, body: FaultBody::Html }
    }

    /// What a server with custom statuses switched off answers (501 `api.custom_status.disabled`).
    pub fn custom_status_disabled() -> Fault {
        Fault::app_error(501)
    }

    /// A 10 MB body.
    pub fn ten_megabytes() -> Fault {
        Fault::HugeBody { bytes: 10 * 1024 * 1024 }
    }

    /// How a call records this fault: its `Debug` form, with canned bodies shown by length only.
    fn describe(&self) -> String {
        match self {
            Fault::Respond(r) => format!("Respond({} with a {}-byte body)", r.status, r.body.len()),
            Fault::Raw(bytes) => format!("Raw({} bytes)", bytes.len()),
            other => format!("{other:?}"),
        }
    }

    /// Whether the fault acts on the listener rather than on requests.
    fn on_listener(&self) -> bool {
        matches!(self, Fault::RefuseConnections | Fault::StopAccepting)
    }
}

/// Which requests a fault applies to, and how many times. Paths match by prefix; `/api/v4/users/me` and
/// `/api/v4/users/<default user id>` are the same path for matching.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultScope {
    pub method: Option<String>,
    pub path_prefix: Option<String>,
    /// `None` = until `clear_faults`; `Some(k)` = the next `k` matching requests.
    pub times: Option<u32>,
}

impl FaultScope {
    /// Every request, until cleared.
    pub fn all() -> FaultScope {
        FaultScope::default()
    }

    /// Requests with this method whose path starts with `path_prefix`.
    pub fn on(method: &str, path_prefix: &str) -> FaultScope {
        FaultScope { method: Some(method.to_string()), path_prefix: Some(path_prefix.to_string()), times: None }
    }

    /// Requests (any method) whose path starts with `path_prefix`.
    pub fn path(path_prefix: &str) -> FaultScope {
        FaultScope { method: None, path_prefix: Some(path_prefix.to_string()), times: None }
    }

    /// Only the next `k` matching requests.
    pub fn times(mut self, k: u32) -> FaultScope {
        self.times = Some(k);
        self
    }
}

struct ActiveFault {
    fault: Fault,
    scope: FaultScope,
    remaining: Option<u32>,
    /// Matching requests still to let through before the fault applies.
    skip: u32,
    /// The scope's path must match whole, not as a prefix (`/users/me` must not catch `/users/me/status`).
    exact_path: bool,
}

struct StatusRecord {
    status: String,
    manual: bool,
    last_activity_at: i64,
    dnd_end_time: i64,
    prev_status: String,
}

impl StatusRecord {
    /// What the server reports for a user without a status row.
    fn offline() -> StatusRecord {
        StatusRecord {
            status: "offline".into(),
            manual: false,
            last_activity_at: 0,
            dnd_end_time: 0,
            prev_status: String::new(),
        }
    }
}

struct UserRecord {
    id: String,
    username: String,
    token: Option<String>,
    csrf: String,
    create_at: i64,
    update_at: i64,
    props: BTreeMap<String, String>,
    /// `None` until the recent custom statuses preference exists.
    recent: Option<Vec<StoredCustomStatus>>,
    /// Every other preference, keyed by (category, name): the table's primary key is (user, category, name).
    preferences: BTreeMap<(String, String), String>,
    auto_responder_active: bool,
    auto_responder_disabled: bool,
}

/// The Go `CustomStatus` struct.
#[derive(Clone, Debug, PartialEq)]
struct StoredCustomStatus {
    emoji: String,
    text: String,
    duration: String,
    expires_at: GoTime,
}

impl StoredCustomStatus {
    /// `json.Marshal(CustomStatus)`.
    fn to_go_json(&self) -> String {
        format!(
            "{{\"emoji\":{},\"text\":{},\"duration\":{},\"expires_at\":{}}}",
            quote(&self.emoji),
            quote(&self.text),
            quote(&self.duration),
            quote(&self.expires_at.to_rfc3339_nano())
        )
    }

    /// `json.Unmarshal` into a `CustomStatus` (also what the request body decoder uses, with `decode_first`).
    fn from_json(value: &Json) -> Result<StoredCustomStatus, go_json::JsonError> {
        value.check_struct()?;
        let expires_at = match value.field("expires_at") {
            None | Some(Json::Null) => GoTime::zero(),
            Some(Json::String(s)) => {
                GoTime::parse_rfc3339(s).ok_or_else(|| go_json::JsonError(format!("parsing time {s:?} as RFC 3339")))?
            }
            Some(_) => return Err(go_json::JsonError("Time.UnmarshalJSON: input is not a JSON string".into())),
        };
        Ok(StoredCustomStatus {
            emoji: go_json::string_field(value, "emoji", "")?,
            text: go_json::string_field(value, "text", "")?,
            duration: go_json::string_field(value, "duration", "")?,
            expires_at,
        })
    }

    fn public(&self) -> CustomStatus {
        CustomStatus {
            emoji: self.emoji.clone(),
            text: self.text.clone(),
            duration: self.duration.clone(),
            expires_at: self.expires_at.to_rfc3339_nano(),
        }
    }
}

struct Gcra {
    limit: RateLimit,
    /// Theoretical arrival time, in nanoseconds since `epoch`.
    tat: i128,
    epoch: Instant,
}

struct ServerState {
    users: Vec<UserRecord>,
    statuses: HashMap<String, StatusRecord>,
    calls: Vec<RecordedCall>,
    faults: Vec<ActiveFault>,
    custom_statuses_enabled: bool,
    /// Custom emoji by name (`ServiceSettings.EnableCustomEmoji` is `custom_emoji_enabled`).
    custom_emoji: Vec<String>,
    custom_emoji_enabled: bool,
    /// The path the server is served under (`""`, or e.g. `/chat`): every route is below it.
    site_path: String,
    user_statuses_enabled: bool,
    rate_limit: Option<Gcra>,
    clock_offset_secs: i64,
    dnd_expiry_interval: Option<Duration>,
    /// Runs at the fake clock's multiples of the interval, as the server's scheduler does, instead of every
    /// interval from the last run.
    dnd_expiry_aligned: bool,
    dnd_expiry_runs: u64,
    rng: u64,
}

struct Shared {
    state: Mutex<ServerState>,
    shutdown: AtomicBool,
    refusing: AtomicBool,
    /// `Fault::StopAccepting` is armed.
    not_accepting: AtomicBool,
    tls: Option<Arc<rustls::ServerConfig>>,
    connections_accepted: AtomicU64,
    open_connections: AtomicUsize,
    connection_threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        // A panicking test thread must not turn every later call into a second panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl FakeMattermost {
    /// Starts a plain HTTP fake with one user, automatic DND expiry every 200 ms, custom and user statuses on.
    pub fn start() -> FakeMattermost {
        FakeMattermost::start_with(None)
    }

    /// Same as `start`, serving HTTPS with `tls`'s certificate (valid for 127.0.0.1 and localhost).
    pub fn start_tls(tls: &TestTls) -> FakeMattermost {
        FakeMattermost::start_with(Some(tls.server_config()))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> FakeMattermost {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut state = ServerState {
            users: Vec::new(),
            statuses: HashMap::new(),
            calls: Vec::new(),
            faults: Vec::new(),
            custom_statuses_enabled: true,
            custom_emoji: Vec::new(),
            custom_emoji_enabled: true,
            site_path: String::new(),
            user_statuses_enabled: true,
            rate_limit: None,
            clock_offset_secs: 0,
            dnd_expiry_interval: Some(Duration::from_millis(200)),
            dnd_expiry_aligned: false,
            dnd_expiry_runs: 0,
            rng: seed(),
        };
        state.add_user("meeting.tester");
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            shutdown: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            not_accepting: AtomicBool::new(false),
            tls,
            connections_accepted: AtomicU64::new(0),
            open_connections: AtomicUsize::new(0),
            connection_threads: Mutex::new(Vec::new()),
        });
        let accept_shared = shared.clone();
        let accept_thread = std::thread::Builder::new()
            .name("fake-mm-accept".into())
            .spawn(move || accept_loop(accept_shared, listener, addr))
            .expect("spawn accept thread");
        let expiry_shared = shared.clone();
        let expiry_thread = std::thread::Builder::new()
            .name("fake-mm-dnd-expiry".into())
            .spawn(move || expiry_loop(expiry_shared))
            .expect("spawn expiry thread");
        FakeMattermost { shared, addr, scheme, accept_thread: Some(accept_thread), expiry_thread: Some(expiry_thread) }
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.addr, self.shared.lock().site_path)
    }

    /// Serves everything under `path` (e.g. `/chat`), as a server whose SiteURL has a path: `/chat/api/v4/...`;
    /// the bare `/api/v4/...` is then not found.
    pub fn set_site_path(&self, path: &str) {
        self.shared.lock().site_path = path.trim_end_matches('/').to_string();
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The default user's id (26 characters, random per fake).
    pub fn user_id(&self) -> String {
        self.shared.lock().users[0].id.clone()
    }

    pub fn username(&self) -> String {
        self.shared.lock().users[0].username.clone()
    }

    /// The default user's current token; empty after `revoke_token`.
    pub fn token(&self) -> String {
        self.shared.lock().users[0].token.clone().unwrap_or_default()
    }

    /// Replaces the default user's token; the old one gets 401 from now on.
    pub fn set_token(&self, token: &str) {
        self.shared.lock().users[0].token = Some(token.to_string());
    }

    /// Revokes the default user's token: every authenticated call gets 401.
    pub fn revoke_token(&self) {
        self.shared.lock().users[0].token = None;
    }

    /// Another user with its own token (for permission tests: it may read but not change the default user).
    pub fn add_user(&self, username: &str) -> FakeUser {
        let mut st = self.shared.lock();
        let i = st.add_user(username);
        let u = &st.users[i];
        FakeUser { id: u.id.clone(), username: u.username.clone(), token: u.token.clone().unwrap_or_default() }
    }

    /// Puts the default user's status row in this state (`prev_status` and `last_activity_at` are kept).
    pub fn set_status(&self, status: &str, manual: bool, dnd_end_time: i64) {
        let mut st = self.shared.lock();
        let id = st.users[0].id.clone();
        let row = st.statuses.entry(id).or_insert_with(StatusRecord::offline);
        row.status = status.to_string();
        row.manual = manual;
        row.dnd_end_time = dnd_end_time;
    }

    /// Sets what the DND expiry job would restore for the default user.
    pub fn set_prev_status(&self, prev: &str) {
        let mut st = self.shared.lock();
        let id = st.users[0].id.clone();
        st.statuses.entry(id).or_insert_with(StatusRecord::offline).prev_status = prev.to_string();
    }

    pub fn set_last_activity_at(&self, millis: i64) {
        let mut st = self.shared.lock();
        let id = st.users[0].id.clone();
        st.statuses.entry(id).or_insert_with(StatusRecord::offline).last_activity_at = millis;
    }

    /// Turns the out-of-office auto-responder on, which makes the status `ooo` (manual), as the server does.
    pub fn set_out_of_office(&self) {
        let mut st = self.shared.lock();
        let id = st.users[0].id.clone();
        st.users[0].auto_responder_active = true;
        let row = st.statuses.entry(id).or_insert_with(StatusRecord::offline);
        row.status = "ooo".into();
        row.manual = true;
    }

    /// Stores `raw` verbatim as `props.customStatus` (any string, even invalid JSON).
    pub fn set_custom_status_raw(&self, raw: &str) {
        let mut st = self.shared.lock();
        st.users[0].props.insert("customStatus".into(), raw.to_string());
        st.touch_user(0);
    }

    /// Removes the `customStatus` key from the default user's props.
    pub fn remove_custom_status_prop(&self) {
        let mut st = self.shared.lock();
        st.users[0].props.remove("customStatus");
        st.touch_user(0);
    }

    /// Stores a custom status as the server would have written it (Go's `json.Marshal`, no validation); panics if
    /// `expires_at` is not RFC 3339 (use `set_custom_status_raw` for broken values).
    pub fn set_custom_status(&self, emoji: &str, text: &str, duration: &str, expires_at: &str) {
        let expires_at = GoTime::parse_rfc3339(expires_at).expect("expires_at must be RFC 3339");
        let cs = StoredCustomStatus { emoji: emoji.into(), text: text.into(), duration: duration.into(), expires_at };
        self.set_custom_status_raw(&cs.to_go_json());
    }

    /// `TeamSettings.EnableCustomUserStatuses`: off => custom status PUT/DELETE answer 501.
    /// Adds a custom emoji (as a user uploading one would).
    pub fn add_custom_emoji(&self, name: &str) {
        let mut st = self.shared.lock();
        if !st.custom_emoji.iter().any(|e| e == name) {
            st.custom_emoji.push(name.to_string());
        }
    }

    /// Deletes a custom emoji; custom statuses that use it keep it, as on the server.
    pub fn delete_custom_emoji(&self, name: &str) {
        self.shared.lock().custom_emoji.retain(|e| e != name);
    }

    /// `ServiceSettings.EnableCustomEmoji`: while off, no custom emoji is accepted in a custom status.
    pub fn set_custom_emoji_enabled(&self, on: bool) {
        self.shared.lock().custom_emoji_enabled = on;
    }

    pub fn set_custom_status_enabled(&self, on: bool) {
        self.shared.lock().custom_statuses_enabled = on;
    }

    /// `ServiceSettings.EnableUserStatuses`: off => status GET (and PUT) answer 404, PUTs change nothing.
    pub fn set_user_statuses_enabled(&self, on: bool) {
        self.shared.lock().user_statuses_enabled = on;
    }

    /// Turns Mattermost's rate limiter on (`Some`) or off.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.shared.lock().rate_limit = limit.map(|limit| Gcra { limit, tat: 0, epoch: Instant::now() });
    }

    /// The default user's preferences in `category` as (name, value), ordered by name.
    pub fn preferences(&self, category: &str) -> Vec<(String, String)> {
        let st = self.shared.lock();
        let prefs = &st.users[0].preferences;
        prefs.iter().filter(|((c, _), _)| c == category).map(|((_, n), v)| (n.clone(), v.clone())).collect()
    }

    /// Stores a preference of the default user directly (no validation).
    pub fn set_preference(&self, category: &str, name: &str, value: &str) {
        self.shared.lock().users[0].preferences.insert((category.into(), name.into()), value.into());
    }

    /// Removes a preference of the default user directly.
    pub fn delete_preference(&self, category: &str, name: &str) {
        self.shared.lock().users[0].preferences.remove(&(category.to_string(), name.to_string()));
    }

    /// The default user's server-side state.
    pub fn state(&self) -> UserState {
        let st = self.shared.lock();
        let id = st.users[0].id.clone();
        st.user_state(&id)
    }

    /// Any user's server-side state (an unknown id has the offline status and no props).
    pub fn state_of(&self, user_id: &str) -> UserState {
        self.shared.lock().user_state(user_id)
    }

    /// Every request received so far, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// The calls with this method whose path starts with `path_prefix` (`me` and the default id match each other).
    pub fn calls_to(&self, method: &str, path_prefix: &str) -> Vec<RecordedCall> {
        let st = self.shared.lock();
        let scope = FaultScope::on(method, path_prefix);
        st.calls.iter().filter(|c| st.scope_matches(&scope, &c.method, &c.path)).cloned().collect()
    }

    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().calls.len()
    }

    /// TCP connections accepted so far (TLS handshakes included, failed or not).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted.load(Ordering::SeqCst)
    }

    /// Connections currently held open by the fake (a leak check for keep-alive and hung requests).
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::SeqCst)
    }

    /// Polls (every 10 ms) until `check` holds for the default user's state; false after `timeout`.
    pub fn wait_until(&self, timeout: Duration, check: impl Fn(&UserState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.state()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls until at least `n` requests were received; false after `timeout`.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.request_count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Adds a fault; faults are tried in the order they were set, the first matching one applies.
    pub fn set_fault(&self, fault: Fault, scope: FaultScope) {
        match fault {
            Fault::RefuseConnections => self.shared.refusing.store(true, Ordering::SeqCst),
            Fault::StopAccepting => self.shared.not_accepting.store(true, Ordering::SeqCst),
            _ => {}
        }
        let remaining = scope.times;
        self.shared.lock().faults.push(ActiveFault { fault, scope, remaining, skip: 0, exact_path: false });
    }

    /// Arms `fault` for exactly one request: the `nth` (1-based, counted from now) whose method is `method` and
    /// whose path is exactly `path` (`me` and the default user's id are the same path; the query is ignored).
    /// The earlier matching requests are served normally. This is how a test freezes a client at one precise step
    /// of a sequence, e.g. the second `GET /api/v4/users/me`.
    pub fn set_fault_on_nth(&self, fault: Fault, method: &str, path: &str, nth: u32) {
        assert!(nth >= 1, "nth counts from 1");
        let scope = FaultScope::on(method, path).times(1);
        let active = ActiveFault { fault, scope, remaining: Some(1), skip: nth - 1, exact_path: true };
        self.shared.lock().faults.push(active);
    }

    /// Removes every fault (and starts listening again after `RefuseConnections`).
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
        self.shared.refusing.store(false, Ordering::SeqCst);
        self.shared.not_accepting.store(false, Ordering::SeqCst);
    }

    /// Arms `answer` (typically `Respond` or `Raw`) for the next request that no earlier armed fault takes: calls
    /// made one after another get the answers in the order they were armed. The way to script a conversation
    /// answer by answer.
    pub fn respond_with(&self, answer: Fault) {
        self.set_fault(answer, FaultScope::all().times(1));
    }

    /// Faults still armed.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Runs the DND expiry job once, now; returns how many statuses it restored.
    pub fn run_dnd_expiry(&self) -> usize {
        self.shared.lock().expire_dnd()
    }

    /// How often the background job runs (`None` = only through `run_dnd_expiry`). Default 200 ms.
    pub fn set_dnd_expiry_interval(&self, every: Option<Duration>) {
        let mut st = self.shared.lock();
        st.dnd_expiry_interval = every;
        st.dnd_expiry_aligned = false;
    }

    /// The expiry job as current servers run it (docs/mattermost-semantics.md, section 2): every minute, on the
    /// wall clock's minute boundary (the fake's clock).
    pub fn set_dnd_expiry_like_the_server(&self) {
        let mut st = self.shared.lock();
        st.dnd_expiry_interval = Some(Duration::from_secs(60));
        st.dnd_expiry_aligned = true;
    }

    /// How many times the expiry job ran (background and explicit).
    pub fn dnd_expiry_runs(&self) -> u64 {
        self.shared.lock().dnd_expiry_runs
    }

    /// Moves the fake's clock `secs` seconds forward (negative: back).
    pub fn advance_clock(&self, secs: i64) {
        self.shared.lock().clock_offset_secs += secs;
    }

    /// Sets the fake's clock to the system clock plus `secs`.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.lock().clock_offset_secs = secs;
    }

    /// The fake's "now" in Unix seconds.
    pub fn now_unix(&self) -> i64 {
        (self.shared.lock().now_nanos() / 1_000_000_000) as i64
    }

    /// The fake's "now" in Unix milliseconds.
    pub fn now_millis(&self) -> i64 {
        self.shared.lock().now_millis()
    }
}

impl Drop for FakeMattermost {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.expiry_thread.take() {
            let _ = t.join();
        }
        let threads = std::mem::take(&mut *self.shared.connection_threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
    let mut listener = Some(listener);
    while !shared.shutdown.load(Ordering::SeqCst) {
        let refusing = shared.refusing.load(Ordering::SeqCst);
        if refusing && listener.is_some() {
            // Closing the socket is what makes connect() fail with "connection refused".
            listener = None;
        } else if !refusing && listener.is_none() {
            match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
                Ok(l) => listener = Some(l),
                Err(e) => eprintln!("fake mattermost: cannot listen on {addr} again yet: {e}"),
            }
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if shared.not_accepting.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match l.accept() {
            Ok((stream, _)) => {
                shared.connections_accepted.fetch_add(1, Ordering::SeqCst);
                shared.open_connections.fetch_add(1, Ordering::SeqCst);
                let conn_shared = shared.clone();
                let spawned = std::thread::Builder::new().name("fake-mm-conn".into()).spawn(move || {
                    serve_connection(&conn_shared, stream);
                    conn_shared.open_connections.fetch_sub(1, Ordering::SeqCst);
                });
                let mut threads = shared.connection_threads.lock().unwrap_or_else(|p| p.into_inner());
                threads.retain(|t| !t.is_finished());
                match spawned {
                    Ok(handle) => threads.push(handle),
                    Err(e) => {
                        eprintln!("fake mattermost: cannot spawn a connection thread: {e}");
                        shared.open_connections.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                eprintln!("fake mattermost: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn expiry_loop(shared: Arc<Shared>) {
    let mut last_run = Instant::now();
    // For the aligned mode: the index of the last interval (of the fake's clock) the job ran in.
    let mut last_slot = None;
    while !shared.shutdown.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
        let mut st = shared.lock();
        let Some(every) = st.dnd_expiry_interval else { continue };
        if st.dnd_expiry_aligned {
            let slot = st.now_millis().div_euclid(every.as_millis().max(1) as i64);
            // The first boundary after the mode was switched on, then each one.
            if last_slot.is_some_and(|last| slot > last) {
                st.expire_dnd();
            }
            last_slot = Some(slot);
        } else {
            last_slot = None;
            if last_run.elapsed() >= every {
                st.expire_dnd();
                last_run = Instant::now();
            }
        }
    }
}

/// What to do on the wire with the answer to one request.
enum Delivery {
    Send(Response),
    Close,
    Hang,
    Trickle(Response, Duration),
    Truncate(Response),
    /// These bytes, then close.
    Raw(Vec<u8>),
}

fn serve_connection(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(http::POLL));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let boxed: Box<dyn ReadWrite> = match &shared.tls {
        None => Box::new(stream),
        Some(config) => match rustls::ServerConnection::new(config.clone()) {
            Ok(tls) => Box::new(rustls::StreamOwned::new(tls, stream)),
            Err(e) => {
                eprintln!("fake mattermost: TLS setup failed: {e}");
                return;
            }
        },
    };
    let mut conn = Connection::new(boxed);
    let stopping = || shared.shutdown.load(Ordering::SeqCst);
    let idle_stop = || stopping() || shared.refusing.load(Ordering::SeqCst);
    loop {
        let request = match conn.read_request(&idle_stop, IDLE_TIMEOUT) {
            ReadOutcome::Request(r) => r,
            ReadOutcome::Closed => return,
            ReadOutcome::Malformed(why) => {
                let answer = Response::new(400, "text/plain; charset=utf-8", format!("400 Bad Request: {why}\n"));
                let _ = conn.write_all(&answer.to_bytes(true));
                return;
            }
        };
        let close = request.wants_close();
        let delivery = shared.lock().handle(&request);
        let kept_alive = match delivery {
            Delivery::Send(response) => conn.write_all(&response.to_bytes(close)).is_ok(),
            Delivery::Close => false,
            Delivery::Hang => {
                conn.hang(&stopping, MAX_HANG);
                false
            }
            Delivery::Trickle(response, interval) => {
                conn.trickle(&response.to_bytes(close), interval, &stopping).is_ok()
            }
            Delivery::Truncate(response) => {
                let mut bytes = response.head_bytes(response.body.len() + 100, true);
                bytes.extend_from_slice(&response.body);
                let _ = conn.write_all(&bytes);
                false
            }
            Delivery::Raw(bytes) => {
                let _ = conn.write_all(&bytes);
                false
            }
        };
        if close || !kept_alive {
            return;
        }
    }
}

impl ServerState {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*: plenty for ids that only need to differ.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn new_id(&mut self) -> String {
        (0..26).map(|_| ID_ALPHABET[(self.next_rand() % 32) as usize] as char).collect()
    }

    fn now_nanos(&self) -> i128 {
        let real = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        real + i128::from(self.clock_offset_secs) * 1_000_000_000
    }

    fn now_millis(&self) -> i64 {
        (self.now_nanos().div_euclid(1_000_000)) as i64
    }

    fn now_secs(&self) -> i64 {
        (self.now_nanos().div_euclid(1_000_000_000)) as i64
    }

    fn add_user(&mut self, username: &str) -> usize {
        let id = self.new_id();
        let token = self.new_id();
        let csrf = self.new_id();
        let now = self.now_millis();
        self.users.push(UserRecord {
            id,
            username: username.to_string(),
            token: Some(token),
            csrf,
            create_at: now - 86_400_000,
            update_at: now - 86_400_000,
            props: BTreeMap::new(),
            recent: None,
            preferences: BTreeMap::new(),
            auto_responder_active: false,
            auto_responder_disabled: false,
        });
        self.users.len() - 1
    }

    fn user_index(&self, id: &str) -> Option<usize> {
        self.users.iter().position(|u| u.id == id)
    }

    fn touch_user(&mut self, i: usize) {
        let now = self.now_millis();
        // update_at must change on every update even within one millisecond, or ETags would repeat.
        self.users[i].update_at = now.max(self.users[i].update_at + 1);
    }

    fn user_state(&self, id: &str) -> UserState {
        let fallback = StatusRecord::offline();
        let row = self.statuses.get(id).unwrap_or(&fallback);
        let user = self.user_index(id).map(|i| &self.users[i]);
        let raw = user.and_then(|u| u.props.get("customStatus").cloned());
        let parsed = raw
            .as_deref()
            .and_then(|r| go_json::parse_complete(r).ok())
            .and_then(|j| StoredCustomStatus::from_json(&j).ok())
            .map(|cs| cs.public());
        UserState {
            user_id: id.to_string(),
            status: row.status.clone(),
            manual: row.manual,
            last_activity_at: row.last_activity_at,
            dnd_end_time: row.dnd_end_time,
            prev_status: row.prev_status.clone(),
            custom_status_raw: raw,
            custom_status: parsed,
            recent_custom_statuses: user
                .and_then(|u| u.recent.as_ref())
                .map(|r| r.iter().map(StoredCustomStatus::public).collect())
                .unwrap_or_default(),
            auto_responder_active: user.is_some_and(|u| u.auto_responder_active),
            auto_responder_disabled: user.is_some_and(|u| u.auto_responder_disabled),
            update_at: user.map_or(0, |u| u.update_at),
        }
    }

    /// `UPDATE Status SET Status = PrevStatus, PrevStatus = 'dnd', DNDEndTime = 0, Manual = false
    ///  WHERE Status = 'dnd' AND DNDEndTime > 0 AND DNDEndTime <= now`.
    fn expire_dnd(&mut self) -> usize {
        self.dnd_expiry_runs += 1;
        let now = self.now_secs();
        let mut expired = 0;
        for row in self.statuses.values_mut() {
            if row.status == "dnd" && row.dnd_end_time > 0 && row.dnd_end_time <= now {
                row.status = std::mem::replace(&mut row.prev_status, "dnd".into());
                row.dnd_end_time = 0;
                row.manual = false;
                expired += 1;
            }
        }
        expired
    }

    /// Path with the default user's id spelled `me`, so scopes and filters treat both spellings alike.
    fn normalise_path(&self, path: &str) -> String {
        let own = format!("/api/v4/users/{}", self.users[0].id);
        match path.strip_prefix(&own) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("/api/v4/users/me{rest}"),
            _ => path.to_string(),
        }
    }

    fn scope_matches(&self, scope: &FaultScope, method: &str, path: &str) -> bool {
        if scope.method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case(method)) {
            return false;
        }
        match &scope.path_prefix {
            None => true,
            Some(prefix) => {
                path.starts_with(prefix.as_str()) || self.normalise_path(path).starts_with(&self.normalise_path(prefix))
            }
        }
    }

    /// The first armed fault matching this request, used up by one if it is counted. A fault still skipping
    /// requests counts this one and lets it through to the next fault.
    fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let mut found = None;
        for i in 0..self.faults.len() {
            let f = &self.faults[i];
            let exact = !f.exact_path
                || f.scope.path_prefix.as_deref().is_some_and(|p| self.normalise_path(p) == self.normalise_path(path));
            if f.fault.on_listener() || !exact || !self.scope_matches(&f.scope, method, path) {
                continue;
            }
            if self.faults[i].skip > 0 {
                self.faults[i].skip -= 1;
                continue;
            }
            found = Some(i);
            break;
        }
        let i = found?;
        let fault = self.faults[i].fault.clone();
        if let Some(n) = &mut self.faults[i].remaining {
            *n -= 1;
            if *n == 0 {
                self.faults.remove(i);
            }
        }
        Some(fault)
    }

    /// Everything that happens to one request: faults, rate limit, the API itself; records the call.
    fn handle(&mut self, req: &Request) -> Delivery {
        let fault = self.take_fault(&req.method, &req.path);
        let request_id = self.new_id();
        let delivery = match &fault {
            Some(Fault::CloseWithoutAnswer) => Delivery::Close,
            Some(Fault::NeverAnswer) => Delivery::Hang,
            Some(Fault::Status { code, body }) => Delivery::Send(fault_response(*code, body, &request_id)),
            Some(Fault::RateLimited { retry_after_secs }) => Delivery::Send(limit_exceeded(*retry_after_secs)),
            Some(Fault::EchoRequestHeaders { code, style }) => {
                Delivery::Send(echo_headers(*code, *style, req, &request_id))
            }
            Some(Fault::Respond(response)) => Delivery::Send(response.clone()),
            Some(Fault::Raw(bytes)) => Delivery::Raw(bytes.clone()),
            _ => {
                let response = self.rate_limited_api(req, &request_id);
                match &fault {
                    Some(Fault::DropResponse) => Delivery::Close,
                    Some(Fault::ProcessThenNeverAnswer) => Delivery::Hang,
                    Some(Fault::Trickle { interval }) => Delivery::Trickle(response, *interval),
                    Some(Fault::MalformedJson) => {
                        let mut r = response;
                        r.status = 200;
                        r.body = b"{\"status\": online, \"user_id\": ".to_vec();
                        Delivery::Send(r)
                    }
                    Some(Fault::TruncatedBody) => Delivery::Truncate(response),
                    Some(Fault::HugeBody { bytes }) => {
                        let mut r = response;
                        if r.body.len() < *bytes {
                            r.body.resize(*bytes, b' ');
                        }
                        Delivery::Send(r)
                    }
                    _ => Delivery::Send(response),
                }
            }
        };
        let (status, response_body) = match &delivery {
            Delivery::Send(r) | Delivery::Trickle(r, _) | Delivery::Truncate(r) => {
                (Some(r.status), String::from_utf8_lossy(&r.body[..r.body.len().min(64 * 1024)]).into_owned())
            }
            Delivery::Raw(bytes) => {
                let (status, body) = http::split_raw_response(bytes);
                (status, String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]).into_owned())
            }
            Delivery::Close | Delivery::Hang => (None, String::new()),
        };
        self.calls.push(RecordedCall {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            version: req.version.clone(),
            headers: req.headers.clone(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            status,
            response_body,
            fault: fault.map(|f| f.describe()),
            at: SystemTime::now(),
        });
        delivery
    }

    /// Mattermost's rate limiter in front of the API (GCRA as `throttled` does it, real time).
    fn rate_limited_api(&mut self, req: &Request, request_id: &str) -> Response {
        let Some(gcra) = &mut self.rate_limit else {
            return self.api(req, request_id);
        };
        let period = 1_000_000_000i128 / i128::from(gcra.limit.per_sec.max(1));
        let tolerance = period * i128::from(gcra.limit.max_burst + 1);
        let now = gcra.epoch.elapsed().as_nanos() as i128;
        let tat = gcra.tat.max(now);
        let new_tat = tat + period;
        let diff = now - (new_tat - tolerance);
        let limit = gcra.limit.max_burst + 1;
        let ceil_secs = |ns: i128| ((ns + 999_999_999) / 1_000_000_000).max(0);
        if diff < 0 {
            let reset = ceil_secs(tat - now);
            return limit_exceeded(ceil_secs(-diff) as u64)
                .header("X-Ratelimit-Limit", limit.to_string())
                .header("X-Ratelimit-Remaining", "0")
                .header("X-Ratelimit-Reset", reset.to_string());
        }
        gcra.tat = new_tat;
        let ttl = new_tat - now;
        let next = tolerance - ttl;
        let remaining = if next > -period { next / period } else { 0 };
        let reset = ceil_secs(ttl);
        self.api(req, request_id)
            .header("X-Ratelimit-Limit", limit.to_string())
            .header("X-Ratelimit-Remaining", remaining.to_string())
            .header("X-Ratelimit-Reset", reset.to_string())
    }

    /// The Mattermost API proper: routing, session, handlers. Adds the headers every API answer carries.
    fn api(&mut self, req: &Request, request_id: &str) -> Response {
        let mut response = self.route(req, request_id);
        response.headers.push(("X-Request-Id".into(), request_id.to_string()));
        response.headers.push(("X-Version-Id".into(), VERSION_ID.into()));
        if req.method == "GET" {
            response.headers.push(("Expires".into(), "0".into()));
        }
        response
    }

    fn route(&mut self, req: &Request, request_id: &str) -> Response {
        let err = |code: u16, id: &str, message: &str| app_error(code, id, message, request_id);
        let Some(rest) = req.path.strip_prefix(self.site_path.as_str()).and_then(|p| p.strip_prefix("/api/v4/")) else {
            return err(404, "api.context.404.app_error", "Sorry, we could not find the page.");
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let is_id = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        let method = req.method.as_str();
        enum Route<'a> {
            Ping,
            GetUser(&'a str),
            StatusIds,
            GetStatus(&'a str),
            PutStatus(&'a str),
            PutCustom(&'a str),
            DeleteCustom(&'a str),
            DeleteRecent(&'a str),
            Preferences(&'a str, &'a str),
            PutPreferences(&'a str),
            DeletePreferences(&'a str),
            EmojiByName(&'a str),
        }
        let route = match (method, segments.as_slice()) {
            ("GET", ["system", "ping"]) => Route::Ping,
            ("POST", ["users", "status", "ids"]) => Route::StatusIds,
            ("GET", ["users", id]) if is_id(id) => Route::GetUser(id),
            ("GET", ["users", id, "status"]) if is_id(id) => Route::GetStatus(id),
            ("PUT", ["users", id, "status"]) if is_id(id) => Route::PutStatus(id),
            ("PUT", ["users", id, "status", "custom"]) if is_id(id) => Route::PutCustom(id),
            ("DELETE", ["users", id, "status", "custom"]) if is_id(id) => Route::DeleteCustom(id),
            ("DELETE", ["users", id, "status", "custom", "recent"]) if is_id(id) => Route::DeleteRecent(id),
            ("POST", ["users", id, "status", "custom", "recent", "delete"]) if is_id(id) => Route::DeleteRecent(id),
            // The router's pattern `{category:[A-Za-z0-9_]+}`: a hyphen is no route at all (404).
            ("GET", ["users", id, "preferences", category])
                if is_id(id)
                    && !category.is_empty()
                    && category.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Route::Preferences(id, category)
            }
            ("PUT", ["users", id, "preferences"]) if is_id(id) => Route::PutPreferences(id),
            ("POST", ["users", id, "preferences", "delete"]) if is_id(id) => Route::DeletePreferences(id),
            ("GET", ["emoji", "name", name]) => Route::EmojiByName(name),
            _ => return err(404, "api.context.404.app_error", "Sorry, we could not find the page."),
        };
        if let Route::Ping = route {
            return Response::json(200, "{\"status\":\"OK\"}");
        }
        let session = match self.session(req) {
            Ok(i) => i,
            Err((id, message)) => return err(401, id, message),
        };
        let session_user = self.users[session].id.clone();
        // RequireUserId: `me` is the session's user, anything else must be a valid id.
        let resolve = |id: &str| -> Result<String, Response> {
            let id = if id == "me" { session_user.clone() } else { id.to_string() };
            if id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                Ok(id)
            } else {
                Err(invalid_url_param("user_id", request_id))
            }
        };
        let result = match route {
            Route::Ping => unreachable!("answered before the session check"),
            Route::GetUser(id) => resolve(id).map(|id| self.get_user(req, &id, &session_user, request_id)),
            Route::StatusIds => Ok(self.status_ids(req, request_id)),
            Route::GetStatus(id) => resolve(id).map(|id| self.get_status(&id, request_id)),
            Route::PutStatus(id) => resolve(id).map(|id| self.put_status(req, &id, &session_user, request_id)),
            Route::PutCustom(id) => resolve(id).map(|id| self.put_custom_status(req, &id, &session_user, request_id)),
            Route::DeleteCustom(id) => resolve(id).map(|id| self.delete_custom_status(&id, &session_user, request_id)),
            Route::DeleteRecent(id) => resolve(id).map(|id| self.delete_recent(req, &id, &session_user, request_id)),
            Route::Preferences(id, category) => {
                resolve(id).map(|id| self.preferences(&id, category, &session_user, request_id))
            }
            Route::PutPreferences(id) => {
                resolve(id).map(|id| self.update_preferences(req, &id, &session_user, false, request_id))
            }
            Route::DeletePreferences(id) => {
                resolve(id).map(|id| self.update_preferences(req, &id, &session_user, true, request_id))
            }
            Route::EmojiByName(name) => Ok(self.emoji_by_name(name, request_id)),
        };
        result.unwrap_or_else(|e| e)
    }

    /// `ParseAuthTokenFromRequest` + `GetSession` + the CSRF check: the session's user index, or the error id and
    /// message of the 401.
    fn session(&self, req: &Request) -> Result<usize, (&'static str, &'static str)> {
        const EXPIRED: (&str, &str) =
            ("api.context.session_expired.app_error", "Invalid or expired session, please login again.");
        let cookie = req.header("cookie").and_then(|c| {
            c.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == "MMAUTHTOKEN").map(|(_, v)| v)
        });
        let auth = req.header("authorization").unwrap_or("").as_bytes();
        enum From {
            Cookie,
            Header,
            Query,
        }
        let (token, from) = if let Some(c) = cookie {
            (c.to_string(), From::Cookie)
        } else if auth.len() > 6 && auth[..6].eq_ignore_ascii_case(b"bearer") {
            (String::from_utf8_lossy(&auth[7..]).into_owned(), From::Header)
        } else if auth.len() > 5 && auth[..5].eq_ignore_ascii_case(b"token") {
            (String::from_utf8_lossy(&auth[6..]).into_owned(), From::Header)
        } else if let Some(t) = req.query_param("access_token").filter(|t| !t.is_empty()) {
            (t.to_string(), From::Query)
        } else {
            return Err(EXPIRED);
        };
        if token.is_empty() {
            return Err(EXPIRED);
        }
        let Some(i) = self.users.iter().position(|u| u.token.as_deref() == Some(token.as_str())) else {
            return Err(EXPIRED);
        };
        match from {
            From::Query => Err((
                "api.context.token_provided.app_error",
                "Session is not OAuth but token was provided in the query string.",
            )),
            From::Cookie if req.method != "GET" => {
                let csrf_ok = req.header("x-csrf-token") == Some(self.users[i].csrf.as_str())
                    || req.header("x-requested-with") == Some("XMLHttpRequest");
                if csrf_ok { Ok(i) } else { Err(EXPIRED) }
            }
            _ => Ok(i),
        }
    }

    fn get_user(&self, req: &Request, id: &str, session_user: &str, request_id: &str) -> Response {
        let Some(i) = self.user_index(id) else {
            return app_error(404, "app.user.missing_account.const", "Unable to find the user.", request_id);
        };
        let user = &self.users[i];
        let own = user.id == session_user;
        let etag = format!("{VERSION_ID}.{}.{}.true.true", user.id, user.update_at);
        if req.header("if-none-match") == Some(etag.as_str()) {
            return Response { status: 304, headers: vec![("Etag".into(), etag)], body: Vec::new() };
        }
        Response::json(200, user_json(user, own)).header("Etag", etag)
    }

    fn status_json(&self, id: &str) -> String {
        let fallback = StatusRecord::offline();
        let row = self.statuses.get(id).unwrap_or(&fallback);
        format!(
            "{{\"user_id\":{},\"status\":{},\"manual\":{},\"last_activity_at\":{},\"dnd_end_time\":{}}}",
            quote(id),
            quote(&row.status),
            row.manual,
            row.last_activity_at,
            row.dnd_end_time
        )
    }

    /// `getUserStatus`: no permission check; unknown ids are offline; 404 only when statuses are disabled.
    fn get_status(&self, id: &str, request_id: &str) -> Response {
        if !self.user_statuses_enabled {
            return app_error(404, "api.status.user_not_found.app_error", "User not found.", request_id);
        }
        // json.NewEncoder(w).Encode adds a newline.
        Response::json(200, format!("{}\n", self.status_json(id)))
    }

    fn status_ids(&self, req: &Request, request_id: &str) -> Response {
        // model.ArrayFromJSON ignores decode errors and yields an empty list.
        let ids: Vec<String> = match go_json::decode_first(&String::from_utf8_lossy(&req.body)) {
            Ok(Json::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Json::String(s) => s,
                    _ => String::new(),
                })
                .collect(),
            _ => Vec::new(),
        };
        if ids.is_empty() || ids.iter().any(|id| id.len() != 26) {
            return invalid_param("user_ids", request_id);
        }
        if !self.user_statuses_enabled {
            return Response::json(200, "[]");
        }
        let items: Vec<String> = ids.iter().map(|id| self.status_json(id)).collect();
        Response::json(200, format!("[{}]", items.join(",")))
    }

    /// `updateUserStatus`, in the server's order of checks.
    fn put_status(&mut self, req: &Request, id: &str, session_user: &str, request_id: &str) -> Response {
        let body = String::from_utf8_lossy(&req.body);
        let decoded = go_json::decode_first(&body).and_then(|v| {
            v.check_struct()?;
            let user_id = go_json::string_field(&v, "user_id", "")?;
            let status = go_json::string_field(&v, "status", "")?;
            go_json::bool_field(&v, "manual", false)?;
            go_json::i64_field(&v, "last_activity_at", 0)?;
            go_json::string_field(&v, "active_channel", "")?;
            let dnd_end_time = go_json::i64_field(&v, "dnd_end_time", 0)?;
            Ok((user_id, status, dnd_end_time))
        });
        let Ok((body_user_id, new_status, dnd_end_time)) = decoded else {
            return invalid_param("status", request_id);
        };
        if body_user_id != id {
            return invalid_param("user_id", request_id);
        }
        if id != session_user {
            return permission_error(request_id);
        }
        let out_of_office = self.statuses.get(id).is_some_and(|s| s.status == "ooo");
        if let Some(i) =
            self.user_index(id).filter(|_| self.user_statuses_enabled && out_of_office && new_status != "ooo")
        {
            // DisableAutoResponder runs before the new value is even looked at.
            if self.users[i].auto_responder_active {
                self.users[i].auto_responder_active = false;
                self.touch_user(i);
            }
            self.users[i].auto_responder_disabled = true;
        }
        if !matches!(new_status.as_str(), "online" | "offline" | "away" | "dnd") {
            return invalid_param("status", request_id);
        }
        if self.user_statuses_enabled {
            let now_ms = self.now_millis();
            let row = self.statuses.entry(id.to_string()).or_insert_with(StatusRecord::offline);
            match new_status.as_str() {
                "online" => {
                    row.status = "online".into();
                    row.manual = false;
                    row.last_activity_at = now_ms;
                }
                "offline" => {
                    *row = StatusRecord {
                        status: "offline".into(),
                        manual: true,
                        last_activity_at: now_ms,
                        dnd_end_time: 0,
                        prev_status: String::new(),
                    };
                }
                "away" => {
                    row.status = "away".into();
                    row.manual = true;
                }
                _ => {
                    row.prev_status = std::mem::replace(&mut row.status, "dnd".into());
                    row.manual = true;
                    // time.Unix(t, 0).Truncate(time.Minute): rounds down, also below zero.
                    row.dnd_end_time = dnd_end_time.div_euclid(60) * 60;
                }
            }
        }
        self.get_status(id, request_id)
    }

    fn put_custom_status(&mut self, req: &Request, id: &str, session_user: &str, request_id: &str) -> Response {
        if !self.custom_statuses_enabled {
            return custom_status_disabled(request_id);
        }
        let now = self.now_nanos();
        let body = String::from_utf8_lossy(&req.body);
        let decoded = go_json::decode_first(&body).and_then(|v| StoredCustomStatus::from_json(&v));
        let Ok(mut cs) = decoded else {
            return invalid_param("custom_status", request_id);
        };
        let past = cs.expires_at.is_before(now);
        let valid_expiry = (cs.duration.is_empty() && (cs.expires_at.is_zero() || !past))
            || (DURATIONS.contains(&cs.duration.as_str()) && !past);
        if (cs.emoji.is_empty() && cs.text.is_empty()) || !valid_expiry {
            return invalid_param("custom_status", request_id);
        }
        if id != session_user {
            return permission_error(request_id);
        }
        // SetCustomStatus -> confirmEmojiExists, after the permission check.
        if !cs.emoji.is_empty() && !self.emoji_exists(&cs.emoji) {
            return app_error(
                400,
                "api.custom_status.set_custom_statuses.emoji_not_found",
                "Failed to update the custom status. Emoji not found.",
                request_id,
            );
        }
        // PreSave.
        if cs.duration.is_empty() && !past {
            cs.duration = "date_and_time".into();
        }
        if cs.text.chars().count() > TEXT_MAX_RUNES {
            cs.text = cs.text.chars().take(TEXT_MAX_RUNES).collect();
        }
        let Some(i) = self.user_index(id) else {
            return app_error(404, "app.user.missing_account.const", "Unable to find the user.", request_id);
        };
        self.users[i].props.insert("customStatus".into(), cs.to_go_json());
        self.touch_user(i);
        // RecentCustomStatuses.Add: newest first, same text replaced, at most 5.
        let recent = self.users[i].recent.get_or_insert_with(Vec::new);
        recent.retain(|r| r.text != cs.text);
        recent.insert(0, cs);
        recent.truncate(MAX_RECENT);
        status_ok()
    }

    /// A system emoji, or a custom emoji that exists while custom emoji are on.
    fn emoji_exists(&self, name: &str) -> bool {
        SYSTEM_EMOJI.contains(&name) || (self.custom_emoji_enabled && self.custom_emoji.iter().any(|e| e == name))
    }

    /// `GET /api/v4/emoji/name/{name}`: custom emoji only (system emoji are not in the store): 501 while custom
    /// emoji are off, 404 when there is no such custom emoji.
    fn emoji_by_name(&self, name: &str, request_id: &str) -> Response {
        if !self.custom_emoji_enabled {
            let message = "Custom emoji have been disabled by the system admin.";
            return app_error(501, "api.emoji.disabled.app_error", message, request_id);
        }
        match self.custom_emoji.iter().position(|e| e == name) {
            Some(i) => Response::json(
                200,
                format!(
                    "{{\"id\":\"emoji{i:0>21}\",\"creator_id\":\"\",\"name\":{},\"create_at\":0,\"update_at\":0,\"delete_at\":0}}",
                    quote(name)
                ),
            ),
            None => app_error(404, "app.emoji.get_by_name.app_error", "Unable to get emoji.", request_id),
        }
    }

    fn delete_custom_status(&mut self, id: &str, session_user: &str, request_id: &str) -> Response {
        if !self.custom_statuses_enabled {
            return custom_status_disabled(request_id);
        }
        if id != session_user {
            return permission_error(request_id);
        }
        let Some(i) = self.user_index(id) else {
            return app_error(404, "app.user.missing_account.const", "Unable to find the user.", request_id);
        };
        // ClearCustomStatus keeps the key with an empty value.
        self.users[i].props.insert("customStatus".into(), String::new());
        self.touch_user(i);
        status_ok()
    }

    fn delete_recent(&mut self, req: &Request, id: &str, session_user: &str, request_id: &str) -> Response {
        if !self.custom_statuses_enabled {
            return custom_status_disabled(request_id);
        }
        let body = String::from_utf8_lossy(&req.body);
        let Ok(cs) = go_json::decode_first(&body).and_then(|v| StoredCustomStatus::from_json(&v)) else {
            return invalid_param("recent_custom_status", request_id);
        };
        if id != session_user {
            return permission_error(request_id);
        }
        let not_found = || {
            app_error(
                400,
                "api.custom_status.recent_custom_statuses.delete.app_error",
                "Failed to delete recent custom status. Please try adding the custom status first or contact the \
                 System Administrator with details.",
                request_id,
            )
        };
        let Some(recent) = self.user_index(id).and_then(|i| self.users[i].recent.as_mut()) else {
            return not_found();
        };
        let wanted = cs.to_go_json();
        if (cs.emoji.is_empty() && cs.text.is_empty()) || !recent.iter().any(|r| r.to_go_json() == wanted) {
            return not_found();
        }
        recent.retain(|r| r.to_go_json() != wanted);
        status_ok()
    }

    /// `getPreferencesByCategory`: `RequireCategory` (lower case, 2 or more characters, starting and ending with a
    /// letter or digit), the permission check, then 404 when the category holds nothing.
    fn preferences(&self, id: &str, category: &str, session_user: &str, request_id: &str) -> Response {
        if !valid_category_param(category) {
            return invalid_url_param("category", request_id);
        }
        if id != session_user {
            return permission_error(request_id);
        }
        let Some(user) = self.user_index(id).map(|i| &self.users[i]) else {
            return no_preferences(request_id);
        };
        let mut items: Vec<String> = user
            .preferences
            .iter()
            .filter(|((c, _), _)| c == category)
            .map(|((c, n), v)| preference_json(id, c, n, v))
            .collect();
        if let Some(list) = user.recent.as_ref().filter(|_| category == "custom_status") {
            let value = format!("[{}]", list.iter().map(|cs| cs.to_go_json()).collect::<Vec<_>>().join(","));
            items.push(preference_json(id, "custom_status", "recent_custom_statuses", &value));
        }
        if items.is_empty() {
            return no_preferences(request_id);
        }
        Response::json(200, format!("[{}]", items.join(",")))
    }

    /// `updatePreferences` and `deletePreferences`, in the server's order: permission, body (1 to 100 entries),
    /// every entry's `user_id` equal to the resolved user (403, so `me` in an entry is refused), then, for a PUT,
    /// `Preference.IsValid` on each entry inside one transaction (all or nothing) and an upsert per (category, name);
    /// for a delete, removal by (category, name) with the value ignored and a missing entry no error.
    fn update_preferences(
        &mut self,
        req: &Request,
        id: &str,
        session_user: &str,
        delete: bool,
        request_id: &str,
    ) -> Response {
        if id != session_user {
            return permission_error(request_id);
        }
        let body = String::from_utf8_lossy(&req.body);
        let decoded = go_json::decode_first(&body).and_then(|v| match v {
            Json::Array(items) => items
                .iter()
                .map(|item| {
                    item.check_struct()?;
                    Ok((
                        go_json::string_field(item, "user_id", "")?,
                        go_json::string_field(item, "category", "")?,
                        go_json::string_field(item, "name", "")?,
                        go_json::string_field(item, "value", "")?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>(),
            Json::Null => Ok(Vec::new()),
            other => Err(go_json::JsonError(format!("cannot unmarshal {other:?} into Preferences"))),
        });
        let Ok(entries) = decoded else {
            return invalid_param("preferences", request_id);
        };
        if entries.is_empty() || entries.len() > MAX_PREFERENCES_PER_REQUEST {
            return invalid_param("preferences", request_id);
        }
        if entries.iter().any(|(user_id, ..)| user_id != id) {
            let (error_id, message) = if delete {
                ("api.preference.delete_preferences.delete.app_error", "Unable to delete user preferences.")
            } else {
                ("api.preference.update_preferences.set.app_error", "Unable to set user preferences.")
            };
            return app_error(403, error_id, message, request_id);
        }
        let Some(i) = self.user_index(id) else {
            return app_error(404, "app.user.missing_account.const", "Unable to find the user.", request_id);
        };
        if delete {
            for (_, category, name, _) in &entries {
                self.users[i].preferences.remove(&(category.clone(), name.clone()));
            }
            return status_ok();
        }
        for (user_id, category, name, value) in &entries {
            let invalid = |field: &str| {
                app_error(
                    400,
                    &format!("model.preference.is_valid.{field}.app_error"),
                    &format!("Invalid {field}."),
                    request_id,
                )
            };
            if !is_valid_id(user_id) {
                return invalid("id");
            }
            if category.is_empty() || category.len() > 32 {
                return invalid("category");
            }
            if name.len() > 32 {
                return invalid("name");
            }
            if value.chars().count() > MAX_PREFERENCE_VALUE_RUNES {
                return invalid("value");
            }
        }
        for (_, category, name, value) in entries {
            self.users[i].preferences.insert((category, name), value);
        }
        status_ok()
    }
}

/// `model.IsValidAlphaNumHyphenUnderscore(s, true)`: `^[a-z0-9]+([a-z\-\_0-9]+|(__)?)[a-z0-9]+$`.
fn valid_category_param(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.len() >= 2 && edge(b[0]) && edge(b[b.len() - 1]) && b.iter().all(|&c| edge(c) || c == b'-' || c == b'_')
}

/// `model.IsValidId`: 26 letters and digits.
fn is_valid_id(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// One `model.Preference` as `json.Marshal` writes it.
fn preference_json(user_id: &str, category: &str, name: &str, value: &str) -> String {
    format!(
        "{{\"user_id\":{},\"category\":{},\"name\":{},\"value\":{}}}",
        quote(user_id),
        quote(category),
        quote(name),
        quote(value)
    )
}

/// What `GetPreferenceByCategoryForUser` answers for a category with no entry.
fn no_preferences(request_id: &str) -> Response {
    app_error(
        404,
        "api.preference.preferences_category.get.app_error",
        "Unable to find preferences for the given category.",
        request_id,
    )
}

/// `model.User` after `Sanitize`, fields in the Go struct's order; `props` omitted when empty.
fn user_json(u: &UserRecord, own: bool) -> String {
    let map = |m: &BTreeMap<String, String>| {
        let items: Vec<String> = m.iter().map(|(k, v)| format!("{}:{}", quote(k), quote(v))).collect();
        format!("{{{}}}", items.join(","))
    };
    let mut out = format!(
        "{{\"id\":{},\"create_at\":{},\"update_at\":{},\"delete_at\":0,\"username\":{},\"auth_data\":\"\",\
         \"auth_service\":\"\",\"email\":{},\"email_verified\":true,\"nickname\":\"\",\"first_name\":\"Meeting\",\
         \"last_name\":\"Tester\",\"position\":\"\",\"roles\":\"system_user\"",
        quote(&u.id),
        u.create_at,
        u.update_at,
        quote(&u.username),
        quote(&format!("{}@example.com", u.username)),
    );
    if !u.props.is_empty() {
        out.push_str(&format!(",\"props\":{}", map(&u.props)));
    }
    if own {
        let notify: BTreeMap<String, String> = [
            ("auto_responder_active", if u.auto_responder_active { "true" } else { "false" }),
            ("auto_responder_message", "Hello, I am out of office and unable to respond to messages."),
            ("channel", "true"),
            ("comments", "never"),
            ("desktop", "mention"),
            ("desktop_sound", "true"),
            ("email", "true"),
            ("first_name", "false"),
            ("mention_keys", ""),
            ("push", "mention"),
            ("push_status", "away"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        out.push_str(&format!(",\"notify_props\":{},\"last_password_update\":{}", map(&notify), u.create_at));
    }
    out.push_str(
        ",\"locale\":\"en\",\"timezone\":{\"automaticTimezone\":\"\",\"manualTimezone\":\"\",\
         \"useAutomaticTimezone\":\"true\"},\"disable_welcome_email\":false}",
    );
    out
}

/// An AppError answer: `{"id","message","detailed_error":"","request_id","status_code"}`.
fn app_error(code: u16, id: &str, message: &str, request_id: &str) -> Response {
    Response::json(
        code,
        format!(
            "{{\"id\":{},\"message\":{},\"detailed_error\":\"\",\"request_id\":{},\"status_code\":{code}}}",
            quote(id),
            quote(message),
            quote(request_id)
        ),
    )
}

fn invalid_param(name: &str, request_id: &str) -> Response {
    app_error(
        400,
        "api.context.invalid_body_param.app_error",
        &format!("Invalid or missing {name} in request body."),
        request_id,
    )
}

fn invalid_url_param(name: &str, request_id: &str) -> Response {
    app_error(
        400,
        "api.context.invalid_url_param.app_error",
        &format!("Invalid or missing {name} parameter in request URL."),
        request_id,
    )
}

fn permission_error(request_id: &str) -> Response {
    app_error(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.", request_id)
}

fn custom_status_disabled(request_id: &str) -> Response {
    app_error(
        501,
        "api.custom_status.disabled",
        "Custom status feature has been disabled. Please contact your system administrator for details.",
        request_id,
    )
}

fn status_ok() -> Response {
    Response::json(200, "{\"status\":\"OK\"}")
}

/// Go's `http.Error(w, "limit exceeded", 429)` as the rate limiter writes it.
fn limit_exceeded(retry_after_secs: u64) -> Response {
    Response::new(429, "text/plain; charset=utf-8", "limit exceeded\n")
        .header("X-Content-Type-Options", "nosniff")
        .header("Retry-After", retry_after_secs.to_string())
}

fn fault_response(code: u16, body: &FaultBody, request_id: &str) -> Response {
    let response = match body {
        FaultBody::AppError => match code {
            400 => invalid_param("status", request_id),
            401 => app_error(
                401,
                "api.context.session_expired.app_error",
                "Invalid or expired session, please login again.",
                request_id,
            ),
            403 => permission_error(request_id),
            404 => app_error(404, "api.context.404.app_error", "Sorry, we could not find the page.", request_id),
            501 => custom_status_disabled(request_id),
            _ => app_error(code, "app.status.get.app_error", "Encountered an error retrieving the status.", request_id),
        },
        FaultBody::Html => {
            let title = format!("{code} {}", html_title(code));
            Response::new(
                code,
                "text/html",
                format!(
                    "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n\
                     <hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
                ),
            )
        }
        FaultBody::Empty => Response { status: code, headers: Vec::new(), body: Vec::new() },
        FaultBody::Custom { content_type, body } => Response::new(code, content_type, body.as_bytes()),
    };
    response.header("X-Request-Id", request_id)
}

fn echo_headers(code: u16, style: EchoStyle, req: &Request, request_id: &str) -> Response {
    let header = |name: &str| req.header(name).unwrap_or("");
    let response = match style {
        EchoStyle::AuthorizationLine => Response::new(
            code,
            "text/plain; charset=utf-8",
            format!("bad request: unexpected header Authorization: {}\n", header("authorization")),
        ),
        EchoStyle::AppErrorMessage => {
            let all: Vec<String> = req.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let message = format!("Request rejected by the proxy; headers were {}", all.join(", "));
            app_error(code, "fake.proxy.headers_rejected", &message, request_id)
        }
        EchoStyle::HeaderLines => {
            let mut body = format!("{} {}\r\n", req.method, req.path);
            for (k, v) in &req.headers {
                body.push_str(&format!("{k}: {v}\r\n"));
            }
            Response::new(code, "text/plain; charset=utf-8", body)
        }
    };
    response.header("X-Request-Id", request_id)
}

fn html_title(code: u16) -> &'static str {
    match code {
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => "Error",
    }
}
