//! Tests of the fake Mattermost server itself, point by point against `docs/mattermost-semantics.md` (the real
//! server's behaviour, read from its source), over raw sockets (not the project's client), so the end-to-end tests built on the fake can trust it.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::go_json::{self, Json};
use support::{FakeMattermost, Fault, FaultBody, FaultScope, RateLimit, TestTls, WAIT, wait_for};

/// Tells a fake that stops at once from one that waits out its connection limits (a minute for an idle
/// connection, five for a hung one): a failure deadline with room for a busy machine, not a speed requirement.
const SOONER_THAN_A_MINUTE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------------------------
// A tiny HTTP client over std::net.

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Json {
        go_json::parse_complete(&self.body).unwrap_or_else(|e| panic!("not JSON ({e:?}): {:?}", self.body))
    }

    fn str_field(&self, name: &str) -> String {
        match self.json().field(name) {
            Some(Json::String(s)) => s.clone(),
            other => panic!("field {name} is {other:?} in {}", self.body),
        }
    }

    /// Asserts the AppError shape and returns its id.
    fn app_error_id(&self) -> String {
        let json = self.json();
        let Json::Object(entries) = &json else { panic!("not an object: {}", self.body) };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["id", "message", "detailed_error", "request_id", "status_code"], "{}", self.body);
        assert_eq!(json.field("detailed_error"), Some(&Json::String(String::new())));
        assert_eq!(json.field("status_code"), Some(&Json::Number(self.status.to_string())));
        let request_id = self.str_field("request_id");
        assert_eq!(request_id.len(), 26);
        assert_eq!(self.header("x-request-id"), Some(request_id.as_str()));
        assert_eq!(self.header("content-type"), Some("application/json"));
        self.str_field("id")
    }
}

/// Reads one response (head, then `Content-Length` bytes, or to EOF when there is none).
fn read_reply(stream: &mut impl Read) -> std::io::Result<Reply> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed before a full head"));
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).expect("ASCII head");
    let mut lines = head.trim_end().split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let length =
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.parse().unwrap());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            stream.read_exact(&mut body)?;
        }
        None if status == 304 => {}
        None => {
            stream.read_to_end(&mut body)?;
        }
    }
    Ok(Reply { status, headers, body: String::from_utf8(body).expect("UTF-8 body") })
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        raw.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(body.unwrap_or(""));
    raw.into_bytes()
}

fn connect(fake: &FakeMattermost) -> TcpStream {
    let stream = TcpStream::connect(fake.addr()).expect("connect to the fake");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// One request on a fresh connection, with exactly these headers.
fn send(fake: &FakeMattermost, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let mut stream = connect(fake);
    stream.write_all(&request_bytes(method, path, headers, body)).unwrap();
    read_reply(&mut stream).expect("a reply")
}

/// One request as the default user (`Authorization: Bearer <token>`).
fn call(fake: &FakeMattermost, method: &str, path: &str, body: Option<&str>) -> Reply {
    let auth = format!("Bearer {}", fake.token());
    send(fake, method, path, &[("Authorization", &auth), ("Connection", "close")], body)
}

fn put_status(fake: &FakeMattermost, status: &str, dnd_end_time: Option<i64>) -> Reply {
    let end = dnd_end_time.map(|t| format!(",\"dnd_end_time\":{t}")).unwrap_or_default();
    let body = format!("{{\"user_id\":\"{}\",\"status\":\"{status}\"{end}}}", fake.user_id());
    call(fake, "PUT", "/api/v4/users/me/status", Some(&body))
}

fn put_custom(fake: &FakeMattermost, body: &str) -> Reply {
    call(fake, "PUT", "/api/v4/users/me/status/custom", Some(body))
}

fn rfc3339(unix: i64) -> String {
    support::go_time::GoTime { unix_secs: unix, nanos: 0, offset_secs: 0 }.to_rfc3339_nano()
}

/// A fake whose DND expiry runs only when a test asks.
fn quiet_fake() -> FakeMattermost {
    let fake = FakeMattermost::start();
    fake.set_dnd_expiry_interval(None);
    fake
}

// ---------------------------------------------------------------------------------------------------------------
// Users and authentication (docs/mattermost-semantics.md, section 7).

#[test]
fn users_me_has_the_always_present_fields_and_no_props_by_default() {
    let fake = FakeMattermost::start();
    let reply = call(&fake, "GET", "/api/v4/users/me", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let user = reply.json();
    for field in [
        "id",
        "delete_at",
        "username",
        "auth_service",
        "email",
        "nickname",
        "first_name",
        "last_name",
        "position",
        "roles",
        "locale",
        "timezone",
        "disable_welcome_email",
    ] {
        assert!(user.field(field).is_some(), "{field} missing in {}", reply.body);
    }
    assert_eq!(reply.str_field("id"), fake.user_id());
    assert_eq!(fake.user_id().len(), 26);
    assert_eq!(reply.str_field("username"), fake.username());
    assert_eq!(reply.str_field("auth_data"), "");
    assert!(user.field("props").is_none(), "props is omitempty: {}", reply.body);
    let by_id = call(&fake, "GET", &format!("/api/v4/users/{}", fake.user_id()), None);
    assert_eq!(by_id.body, reply.body);
}

#[test]
fn users_me_honours_if_none_match() {
    let fake = FakeMattermost::start();
    let first = call(&fake, "GET", "/api/v4/users/me", None);
    let etag = first.header("etag").expect("an ETag").to_string();
    let auth = format!("Bearer {}", fake.token());
    let again = send(&fake, "GET", "/api/v4/users/me", &[("Authorization", &auth), ("If-None-Match", &etag)], None);
    assert_eq!(again.status, 304);
    assert_eq!(again.body, "");
    fake.set_custom_status("calendar", "x", "", "0001-01-01T00:00:00Z");
    let changed = send(&fake, "GET", "/api/v4/users/me", &[("Authorization", &auth), ("If-None-Match", &etag)], None);
    assert_eq!(changed.status, 200);
}

#[test]
fn accepts_bearer_and_token_prefixes_in_any_case_with_exactly_one_space() {
    let fake = FakeMattermost::start();
    let token = fake.token();
    for (header, expected) in [
        (format!("Bearer {token}"), 200),
        (format!("bearer {token}"), 200),
        (format!("BEARER {token}"), 200),
        (format!("Token {token}"), 200),
        (format!("token {token}"), 200),
        (format!("TOKEN {token}"), 200),
        (format!("Bearer  {token}"), 401),
        // Go's header parsing trims the value, so a trailing space is harmless.
        (format!("Bearer {token} "), 200),
        (format!("Basic {token}"), 401),
        (token.clone(), 401),
        ("Bearer ".to_string(), 401),
        ("Bearer wrongtoken".to_string(), 401),
    ] {
        let reply = send(&fake, "GET", "/api/v4/users/me", &[("Authorization", &header)], None);
        assert_eq!(reply.status, expected, "Authorization: {header:?} => {}", reply.body);
        if expected == 401 {
            assert_eq!(reply.app_error_id(), "api.context.session_expired.app_error");
            assert_eq!(reply.str_field("message"), "Invalid or expired session, please login again.");
        }
    }
    let none = send(&fake, "GET", "/api/v4/users/me/status", &[], None);
    assert_eq!(none.status, 401);
    assert_eq!(none.app_error_id(), "api.context.session_expired.app_error");
}

#[test]
fn revoked_and_replaced_tokens_get_401() {
    let fake = FakeMattermost::start();
    let old = fake.token();
    fake.set_token("newtoken1234567890abcdefgh");
    let reply = send(&fake, "GET", "/api/v4/users/me", &[("Authorization", &format!("Bearer {old}"))], None);
    assert_eq!(reply.status, 401);
    assert_eq!(call(&fake, "GET", "/api/v4/users/me", None).status, 200);
    fake.revoke_token();
    assert_eq!(fake.token(), "");
    let reply = send(
        &fake,
        "PUT",
        "/api/v4/users/me/status",
        &[("Authorization", "Bearer newtoken1234567890abcdefgh")],
        Some("{}"),
    );
    assert_eq!(reply.status, 401);
    assert_eq!(reply.app_error_id(), "api.context.session_expired.app_error");
}

#[test]
fn query_string_tokens_are_refused_and_cookies_need_csrf_for_writes() {
    let fake = FakeMattermost::start();
    let reply = send(&fake, "GET", &format!("/api/v4/users/me?access_token={}", fake.token()), &[], None);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.app_error_id(), "api.context.token_provided.app_error");

    let cookie = format!("MMAUTHTOKEN={}", fake.token());
    assert_eq!(send(&fake, "GET", "/api/v4/users/me", &[("Cookie", &cookie)], None).status, 200);
    let body = format!("{{\"user_id\":\"{}\",\"status\":\"away\"}}", fake.user_id());
    let put = send(&fake, "PUT", "/api/v4/users/me/status", &[("Cookie", &cookie)], Some(&body));
    assert_eq!(put.status, 401, "cookie without CSRF token");
    // The cookie wins over a good Authorization header.
    let bad_cookie = send(
        &fake,
        "GET",
        "/api/v4/users/me",
        &[("Cookie", "MMAUTHTOKEN=stale"), ("Authorization", &format!("Bearer {}", fake.token()))],
        None,
    );
    assert_eq!(bad_cookie.status, 401);
    let xhr = send(
        &fake,
        "PUT",
        "/api/v4/users/me/status",
        &[("Cookie", &cookie), ("X-Requested-With", "XMLHttpRequest")],
        Some(&body),
    );
    assert_eq!(xhr.status, 200, "{}", xhr.body);
}

#[test]
fn unknown_routes_are_404_app_errors() {
    let fake = FakeMattermost::start();
    let reply = call(&fake, "GET", "/api/v4/users/me/nothing", None);
    assert_eq!(reply.status, 404);
    assert_eq!(reply.app_error_id(), "api.context.404.app_error");
    assert_eq!(call(&fake, "POST", "/api/v4/users/me/status", Some("{}")).status, 404);
    assert_eq!(call(&fake, "GET", "/api/v4/users/not-an-id/status", None).status, 404);
}

#[test]
fn other_users_can_be_read_but_not_changed() {
    let fake = quiet_fake();
    let other = fake.add_user("someone.else");
    let mine = format!("/api/v4/users/{}", fake.user_id());
    let auth = format!("Bearer {}", other.token);
    let read = send(&fake, "GET", &format!("{mine}/status"), &[("Authorization", &auth)], None);
    assert_eq!(read.status, 200, "GET status has no permission check");
    assert_eq!(send(&fake, "GET", &mine, &[("Authorization", &auth)], None).status, 200);

    let body = format!("{{\"user_id\":\"{}\",\"status\":\"dnd\"}}", fake.user_id());
    let write = send(&fake, "PUT", &format!("{mine}/status"), &[("Authorization", &auth)], Some(&body));
    assert_eq!(write.status, 403);
    assert_eq!(write.app_error_id(), "api.context.permissions.app_error");
    assert_eq!(write.str_field("message"), "You do not have the appropriate permissions.");
    let custom = send(
        &fake,
        "PUT",
        &format!("{mine}/status/custom"),
        &[("Authorization", &auth)],
        Some(r#"{"emoji":"calendar","text":"x"}"#),
    );
    assert_eq!(custom.status, 403);
    assert_eq!(fake.state().status, "offline");
    assert_eq!(fake.state().custom_status_raw, None);
    let unknown = call(&fake, "GET", "/api/v4/users/abcdefghijklmnopqrstuvwxyz", None);
    assert_eq!(unknown.status, 404);
}

// ---------------------------------------------------------------------------------------------------------------
// GET / PUT status (docs/mattermost-semantics.md, sections 1 and 2).

#[test]
fn get_status_is_the_status_json_with_a_trailing_newline() {
    let fake = quiet_fake();
    let id = fake.user_id();
    let reply = call(&fake, "GET", "/api/v4/users/me/status", None);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        format!(
            "{{\"user_id\":\"{id}\",\"status\":\"offline\",\"manual\":false,\"last_activity_at\":0,\"dnd_end_time\":0}}\n"
        )
    );
    let unknown = call(&fake, "GET", "/api/v4/users/abcdefghijklmnopqrstuvwxyz/status", None);
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.str_field("status"), "offline");
    let malformed = call(&fake, "GET", "/api/v4/users/abc/status", None);
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.app_error_id(), "api.context.invalid_url_param.app_error");
    assert_eq!(malformed.str_field("message"), "Invalid or missing user_id parameter in request URL.");
}

#[test]
fn put_online_is_automatic_and_stamps_last_activity() {
    let fake = quiet_fake();
    fake.set_status("away", true, 0);
    let before = fake.now_millis();
    let reply = put_status(&fake, "online", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.ends_with("}\n"));
    let state = fake.state();
    assert_eq!((state.status.as_str(), state.manual), ("online", false));
    assert!(state.last_activity_at >= before && state.last_activity_at <= fake.now_millis());
    assert_eq!(reply.json().field("manual"), Some(&Json::Bool(false)));
    assert_eq!(reply.json().field("last_activity_at"), Some(&Json::Number(state.last_activity_at.to_string())));
}

#[test]
fn put_away_is_manual_and_keeps_the_rest() {
    let fake = quiet_fake();
    fake.set_status("dnd", true, 1_900_000_020);
    fake.set_prev_status("online");
    fake.set_last_activity_at(1234);
    assert_eq!(put_status(&fake, "away", None).status, 200);
    let s = fake.state();
    assert_eq!((s.status.as_str(), s.manual, s.last_activity_at), ("away", true, 1234));
    assert_eq!((s.dnd_end_time, s.prev_status.as_str()), (1_900_000_020, "online"));
}

#[test]
fn put_offline_is_manual_and_resets_dnd_bookkeeping() {
    let fake = quiet_fake();
    fake.set_status("dnd", true, 1_900_000_020);
    fake.set_prev_status("online");
    assert_eq!(put_status(&fake, "offline", None).status, 200);
    let s = fake.state();
    assert_eq!((s.status.as_str(), s.manual, s.dnd_end_time, s.prev_status.as_str()), ("offline", true, 0, ""));
    assert!(s.last_activity_at > 0);
}

#[test]
fn put_dnd_remembers_the_previous_status_and_truncates_the_end_to_the_minute() {
    let fake = quiet_fake();
    for (given, stored) in [
        (0, 0),
        (59, 0),
        (61, 60),
        (1_900_000_019, 1_899_999_960),
        (1_900_000_020, 1_900_000_020),
        (1_900_000_079_123, 1_900_000_079_100),
        (-30, -60),
    ] {
        fake.set_status("online", false, 0);
        let reply = put_status(&fake, "dnd", Some(given));
        assert_eq!(reply.status, 200);
        let s = fake.state();
        assert_eq!((s.status.as_str(), s.manual, s.prev_status.as_str()), ("dnd", true, "online"));
        assert_eq!(s.dnd_end_time, stored, "dnd_end_time {given}");
        assert_eq!(reply.json().field("dnd_end_time"), Some(&Json::Number(stored.to_string())));
    }
    fake.set_status("away", true, 0);
    put_status(&fake, "dnd", None);
    assert_eq!((fake.state().prev_status.as_str(), fake.state().dnd_end_time), ("away", 0));
}

#[test]
fn put_status_rejects_bad_bodies_in_the_servers_order() {
    let fake = quiet_fake();
    let id = fake.user_id();
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "status"),
        ("not json".into(), "status"),
        ("[]".into(), "status"),
        (format!("{{\"user_id\":\"{id}\",\"status\":\"dnd\",\"dnd_end_time\":1.5}}"), "status"),
        (format!("{{\"user_id\":\"{id}\",\"status\":\"dnd\",\"dnd_end_time\":\"60\"}}"), "status"),
        (format!("{{\"user_id\":\"{id}\",\"status\":5}}"), "status"),
        ("{\"status\":\"online\"}".into(), "user_id"),
        ("null".into(), "user_id"),
        ("{\"user_id\":\"abcdefghijklmnopqrstuvwxyz\",\"status\":\"online\"}".into(), "user_id"),
        (format!("{{\"user_id\":\"{id}\",\"status\":\"ooo\"}}"), "status"),
        (format!("{{\"user_id\":\"{id}\",\"status\":\"DND\"}}"), "status"),
        (format!("{{\"user_id\":\"{id}\",\"status\":\"\"}}"), "status"),
        (format!("{{\"user_id\":\"{id}\"}}"), "status"),
    ];
    for (body, param) in cases {
        let reply = call(&fake, "PUT", "/api/v4/users/me/status", Some(&body));
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.app_error_id(), "api.context.invalid_body_param.app_error");
        assert_eq!(reply.str_field("message"), format!("Invalid or missing {param} in request body."), "{body}");
    }
    assert_eq!(fake.state().status, "offline");
    // Like Go's json.Decoder: the first value counts, the rest is never read; `manual` and field case are ignored.
    let lenient = format!("{{\"USER_ID\":\"{id}\",\"Status\":\"away\",\"manual\":false}} trailing");
    assert_eq!(call(&fake, "PUT", "/api/v4/users/me/status", Some(&lenient)).status, 200);
    assert_eq!((fake.state().status.as_str(), fake.state().manual), ("away", true));
}

#[test]
fn any_put_while_out_of_office_disables_the_auto_responder_even_an_invalid_one() {
    let fake = quiet_fake();
    fake.set_out_of_office();
    assert!(fake.state().auto_responder_active);
    let reply = put_status(&fake, "DND", None);
    assert_eq!(reply.status, 400);
    let s = fake.state();
    assert!(s.auto_responder_disabled && !s.auto_responder_active);
    assert_eq!(s.status, "ooo", "the invalid value changed nothing else");
    let user = call(&fake, "GET", "/api/v4/users/me", None).json();
    let Some(Json::Object(notify)) = user.field("notify_props") else { panic!("notify_props") };
    assert!(notify.contains(&("auto_responder_active".into(), Json::String("false".into()))));

    let fresh = quiet_fake();
    fresh.set_out_of_office();
    assert_eq!(put_status(&fresh, "dnd", Some(0)).status, 200);
    let s = fresh.state();
    assert!(s.auto_responder_disabled);
    assert_eq!((s.status.as_str(), s.prev_status.as_str()), ("dnd", "ooo"));

    let never_ooo = quiet_fake();
    put_status(&never_ooo, "away", None);
    assert!(!never_ooo.state().auto_responder_disabled);
}

#[test]
fn disabled_user_statuses_answer_404_and_change_nothing() {
    let fake = quiet_fake();
    fake.set_status("away", true, 0);
    fake.set_user_statuses_enabled(false);
    let get = call(&fake, "GET", "/api/v4/users/me/status", None);
    assert_eq!(get.status, 404);
    assert_eq!(get.app_error_id(), "api.status.user_not_found.app_error");
    assert_eq!(get.str_field("message"), "User not found.");
    assert_eq!(put_status(&fake, "dnd", Some(0)).status, 404);
    assert_eq!(put_status(&fake, "nonsense", None).status, 400);
    assert_eq!(fake.state().status, "away");
}

#[test]
fn status_ids_lists_statuses_and_checks_id_lengths() {
    let fake = quiet_fake();
    fake.set_status("dnd", true, 0);
    let body = format!("[\"{}\",\"abcdefghijklmnopqrstuvwxyz\"]", fake.user_id());
    let reply = call(&fake, "POST", "/api/v4/users/status/ids", Some(&body));
    assert_eq!(reply.status, 200);
    let Json::Array(items) = reply.json() else { panic!("array") };
    assert_eq!(items[0].field("status"), Some(&Json::String("dnd".into())));
    assert_eq!(items[1].field("status"), Some(&Json::String("offline".into())));
    let bad = call(&fake, "POST", "/api/v4/users/status/ids", Some("[\"short\"]"));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.str_field("message"), "Invalid or missing user_ids in request body.");
}

// ---------------------------------------------------------------------------------------------------------------
// DND expiry (docs/mattermost-semantics.md, section 2).

#[test]
fn expiry_restores_the_previous_status_as_automatic() {
    let fake = quiet_fake();
    put_status(&fake, "away", None);
    let end = fake.now_unix() + 120;
    put_status(&fake, "dnd", Some(end));
    assert_eq!(fake.run_dnd_expiry(), 0, "not yet due");
    assert_eq!(fake.state().status, "dnd");
    fake.advance_clock(121);
    assert_eq!(fake.run_dnd_expiry(), 1);
    let s = fake.state();
    assert_eq!((s.status.as_str(), s.manual), ("away", false), "manual away comes back automatic");
    assert_eq!((s.prev_status.as_str(), s.dnd_end_time), ("dnd", 0));
    let reply = call(&fake, "GET", "/api/v4/users/me/status", None);
    assert_eq!(reply.json().field("manual"), Some(&Json::Bool(false)));
}

#[test]
fn dnd_over_dnd_overwrites_prev_and_expires_back_into_dnd() {
    let fake = quiet_fake();
    put_status(&fake, "online", None);
    put_status(&fake, "dnd", Some(0));
    put_status(&fake, "dnd", Some(fake.now_unix() - 61));
    assert_eq!(fake.state().prev_status, "dnd");
    assert_eq!(fake.run_dnd_expiry(), 1);
    let s = fake.state();
    assert_eq!((s.status.as_str(), s.manual, s.dnd_end_time), ("dnd", false, 0));
}

#[test]
fn dnd_without_a_positive_end_never_expires() {
    let fake = quiet_fake();
    for end in [0, -120] {
        put_status(&fake, "dnd", Some(end));
        fake.advance_clock(10 * 365 * 86_400);
        assert_eq!(fake.run_dnd_expiry(), 0);
        assert_eq!(fake.state().status, "dnd");
    }
}

#[test]
fn expiry_runs_by_itself_and_follows_the_shifted_clock() {
    let fake = FakeMattermost::start();
    put_status(&fake, "online", None);
    put_status(&fake, "dnd", Some(fake.now_unix() + 600));
    // The job runs every 200 ms by itself: wait for a run rather than sleep through one (a busy machine may not
    // schedule the job's thread for a while).
    wait_for("the background job ran", || fake.dnd_expiry_runs() >= 1).unwrap();
    assert_eq!(fake.state().status, "dnd", "not due yet");
    let runs = fake.dnd_expiry_runs();
    fake.advance_clock(660);
    assert!(fake.wait_until(WAIT, |s| s.status == "online" && !s.manual));
    assert!(fake.dnd_expiry_runs() > runs);
}

// ---------------------------------------------------------------------------------------------------------------
// Custom status (docs/mattermost-semantics.md, sections 5 and 6).

#[test]
fn custom_status_is_stored_as_go_json_and_exposed_in_props() {
    let fake = quiet_fake();
    let expires = rfc3339(fake.now_unix() + 3600);
    let reply = put_custom(
        &fake,
        &format!(r#"{{"emoji":"calendar","text":"In a meeting","duration":"one_hour","expires_at":"{expires}"}}"#),
    );
    assert_eq!((reply.status, reply.body.as_str()), (200, r#"{"status":"OK"}"#));
    let raw = format!(r#"{{"emoji":"calendar","text":"In a meeting","duration":"one_hour","expires_at":"{expires}"}}"#);
    assert_eq!(fake.state().custom_status_raw.as_deref(), Some(raw.as_str()));
    let user = call(&fake, "GET", "/api/v4/users/me", None).json();
    let props = user.field("props").expect("props present");
    assert_eq!(props.field("customStatus"), Some(&Json::String(raw)));
}

#[test]
fn custom_status_validation_rejects_what_the_server_rejects() {
    let fake = quiet_fake();
    let now = fake.now_unix();
    let future = rfc3339(now + 3600);
    let past = rfc3339(now - 60);
    let cases = [
        "not json".to_string(),
        String::new(),
        "[]".into(),
        r#"{"emoji":"","text":""}"#.into(),
        "{}".into(),
        r#"{"emoji":5,"text":"x"}"#.into(),
        r#"{"text":"x","expires_at":""}"#.into(),
        r#"{"text":"x","expires_at":"tomorrow"}"#.into(),
        r#"{"text":"x","expires_at":"2030-01-01 10:00:00Z"}"#.into(),
        r#"{"text":"x","expires_at":"2030-01-01t10:00:00z"}"#.into(),
        r#"{"text":"x","expires_at":1893456000}"#.into(),
        r#"{"text":"x","duration":"one_hour"}"#.into(),
        r#"{"text":"x","duration":"one_hour","expires_at":null}"#.into(),
        r#"{"text":"x","duration":"one_hour","expires_at":"0001-01-01T00:00:00Z"}"#.into(),
        format!(r#"{{"text":"x","duration":"forever","expires_at":"{future}"}}"#),
        format!(r#"{{"text":"x","duration":"dont_clear","expires_at":"{future}"}}"#),
        format!(r#"{{"text":"x","expires_at":"{past}"}}"#),
        format!(r#"{{"text":"x","duration":"one_hour","expires_at":"{past}"}}"#),
    ];
    for body in &cases {
        let reply = put_custom(&fake, body);
        assert_eq!(reply.status, 400, "{body} => {}", reply.body);
        assert_eq!(reply.app_error_id(), "api.context.invalid_body_param.app_error");
        assert_eq!(reply.str_field("message"), "Invalid or missing custom_status in request body.");
    }
    assert_eq!(fake.state().custom_status_raw, None);
    assert!(fake.state().recent_custom_statuses.is_empty());
}

#[test]
fn custom_status_presave_and_time_serialisation() {
    let fake = quiet_fake();
    let now = fake.now_unix();
    let future = rfc3339(now + 7200);
    let future_plus_two =
        support::go_time::GoTime { unix_secs: now + 7200, nanos: 0, offset_secs: 7200 }.to_rfc3339_nano();
    let zero = "0001-01-01T00:00:00Z";
    let cases: Vec<(String, String)> = vec![
        (
            r#"{"text":"only text"}"#.into(),
            format!(r#"{{"emoji":"","text":"only text","duration":"","expires_at":"{zero}"}}"#),
        ),
        (
            r#"{"emoji":"calendar"}"#.into(),
            format!(r#"{{"emoji":"calendar","text":"","duration":"","expires_at":"{zero}"}}"#),
        ),
        (
            r#"{"emoji":"x","text":"y","expires_at":null,"duration":null}"#.to_string(),
            format!(r#"{{"emoji":"x","text":"y","duration":"","expires_at":"{zero}"}}"#),
        ),
        (
            format!(r#"{{"emoji":"x","text":"y","expires_at":"{zero}"}}"#),
            format!(r#"{{"emoji":"x","text":"y","duration":"","expires_at":"{zero}"}}"#),
        ),
        (
            format!(r#"{{"emoji":"x","text":"future, no duration","expires_at":"{future}"}}"#),
            format!(
                r#"{{"emoji":"x","text":"future, no duration","duration":"date_and_time","expires_at":"{future}"}}"#
            ),
        ),
        (
            format!(r#"{{"emoji":"x","text":"offset kept","duration":"today","expires_at":"{future_plus_two}"}}"#),
            format!(r#"{{"emoji":"x","text":"offset kept","duration":"today","expires_at":"{future_plus_two}"}}"#),
        ),
        (
            format!(
                r#"{{"emoji":"x","text":"zero offset","duration":"today","expires_at":"{}"}}"#,
                future.replace('Z', ".500+00:00")
            ),
            format!(
                r#"{{"emoji":"x","text":"zero offset","duration":"today","expires_at":"{}"}}"#,
                future.replace('Z', ".5Z")
            ),
        ),
        (
            r#"{"emoji":"a<b>&c","text":"quote \" and \u00e9"}"#.into(),
            format!(
                r#"{{"emoji":"a\u003cb\u003e\u0026c","text":"quote \" and é","duration":"","expires_at":"{zero}"}}"#
            ),
        ),
    ];
    // No real server has an emoji of that name; it is added so that the emoji field reaches Go's HTML escaping.
    fake.add_custom_emoji("a<b>&c");
    for (body, stored) in cases {
        let reply = put_custom(&fake, &body);
        assert_eq!(reply.status, 200, "{body} => {}", reply.body);
        assert_eq!(fake.state().custom_status_raw.as_deref(), Some(stored.as_str()), "{body}");
    }
}

#[test]
fn custom_status_text_is_cut_to_100_runes_not_bytes() {
    let fake = quiet_fake();
    let text: String = "é🎉a".repeat(50); // 150 runes, 350 bytes
    let reply = put_custom(&fake, &format!(r#"{{"emoji":"calendar","text":"{text}"}}"#));
    assert_eq!(reply.status, 200);
    let stored = fake.state().custom_status.expect("a custom status").text;
    assert_eq!(stored.chars().count(), 100);
    assert_eq!(stored, text.chars().take(100).collect::<String>());
    let exactly: String = "é".repeat(100);
    put_custom(&fake, &format!(r#"{{"text":"{exactly}"}}"#));
    assert_eq!(fake.state().custom_status.unwrap().text, exactly);
}

/// `SetCustomStatus` -> `confirmEmojiExists` (docs/mattermost-semantics.md, section 6): a system emoji or an
/// existing custom emoji; anything else, a deleted custom emoji, or any custom emoji while they are off, is 400
/// `emoji_not_found`. An empty emoji with a text is fine. `GET /emoji/name/{name}` knows custom emoji only.
#[test]
fn custom_status_emoji_must_exist() {
    let fake = quiet_fake();
    let put = |emoji: &str| put_custom(&fake, &format!(r#"{{"emoji":"{emoji}","text":"t"}}"#));
    let refused = |emoji: &str| {
        let reply = put(emoji);
        assert_eq!(reply.status, 400, "{emoji}");
        assert_eq!(
            reply.json().field("id"),
            Some(&Json::String("api.custom_status.set_custom_statuses.emoji_not_found".into()))
        );
    };
    assert_eq!(put("calendar").status, 200);
    assert_eq!(put("").status, 200);
    refused("no_such_emoji");
    refused(":calendar:");
    refused("\u{1f4c5}");
    assert_eq!(call(&fake, "GET", "/api/v4/emoji/name/partyparrot", None).status, 404);
    assert_eq!(call(&fake, "GET", "/api/v4/emoji/name/calendar", None).status, 404, "system emoji are not stored");
    fake.add_custom_emoji("partyparrot");
    let got = call(&fake, "GET", "/api/v4/emoji/name/partyparrot", None);
    assert_eq!((got.status, got.json().field("name")), (200, Some(&Json::String("partyparrot".into()))));
    assert_eq!(put("partyparrot").status, 200);
    fake.set_custom_emoji_enabled(false);
    refused("partyparrot");
    assert_eq!(call(&fake, "GET", "/api/v4/emoji/name/partyparrot", None).status, 501);
    fake.set_custom_emoji_enabled(true);
    fake.delete_custom_emoji("partyparrot");
    refused("partyparrot");
    assert_eq!(fake.state().custom_status.unwrap().emoji, "partyparrot", "a stored status keeps a deleted emoji");
}

#[test]
fn recent_custom_statuses_keep_five_newest_first_deduplicated_by_text() {
    let fake = quiet_fake();
    for text in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(put_custom(&fake, &format!(r#"{{"emoji":"x","text":"{text}"}}"#)).status, 200);
    }
    fake.add_custom_emoji("other");
    put_custom(&fake, r#"{"emoji":"other","text":"d"}"#);
    let recent: Vec<(String, String)> =
        fake.state().recent_custom_statuses.into_iter().map(|c| (c.emoji, c.text)).collect();
    let expected = [("other", "d"), ("x", "f"), ("x", "e"), ("x", "c"), ("x", "b")];
    assert_eq!(recent, expected.map(|(e, t)| (e.to_string(), t.to_string())));
    let prefs = call(&fake, "GET", "/api/v4/users/me/preferences/custom_status", None);
    assert_eq!(prefs.status, 200);
    let Json::Array(items) = prefs.json() else { panic!("array") };
    assert_eq!(items[0].field("name"), Some(&Json::String("recent_custom_statuses".into())));

    let first = r#"{"emoji":"other","text":"d","duration":"","expires_at":"0001-01-01T00:00:00Z"}"#;
    assert_eq!(call(&fake, "POST", "/api/v4/users/me/status/custom/recent/delete", Some(first)).status, 200);
    assert_eq!(fake.state().recent_custom_statuses.len(), 4);
    let again = call(&fake, "POST", "/api/v4/users/me/status/custom/recent/delete", Some(first));
    assert_eq!(again.status, 400);
    assert_eq!(again.app_error_id(), "api.custom_status.recent_custom_statuses.delete.app_error");
}

#[test]
fn delete_custom_status_keeps_the_key_with_an_empty_string() {
    let fake = quiet_fake();
    put_custom(&fake, r#"{"emoji":"calendar","text":"x"}"#);
    let reply = call(&fake, "DELETE", "/api/v4/users/me/status/custom", None);
    assert_eq!((reply.status, reply.body.as_str()), (200, r#"{"status":"OK"}"#));
    assert_eq!(fake.state().custom_status_raw.as_deref(), Some(""));
    assert_eq!(fake.state().custom_status, None);
    let user = call(&fake, "GET", "/api/v4/users/me", None).json();
    assert_eq!(user.field("props").and_then(|p| p.field("customStatus")), Some(&Json::String(String::new())));
    assert_eq!(fake.state().recent_custom_statuses.len(), 1, "the recent list is untouched");
}

#[test]
fn disabled_custom_statuses_answer_501_before_looking_at_the_body() {
    let fake = quiet_fake();
    fake.set_custom_status_raw("kept");
    fake.set_custom_status_enabled(false);
    for (method, body) in [("PUT", Some(r#"{"text":"x"}"#)), ("PUT", Some("not json")), ("DELETE", None)] {
        let reply = call(&fake, method, "/api/v4/users/me/status/custom", body);
        assert_eq!(reply.status, 501);
        assert_eq!(reply.app_error_id(), "api.custom_status.disabled");
        assert_eq!(
            reply.str_field("message"),
            "Custom status feature has been disabled. Please contact your system administrator for details."
        );
    }
    assert_eq!(fake.state().custom_status_raw.as_deref(), Some("kept"));
}

#[test]
fn custom_statuses_never_expire_on_the_server() {
    let fake = FakeMattermost::start();
    let expires = rfc3339(fake.now_unix() + 60);
    put_custom(&fake, &format!(r#"{{"emoji":"x","text":"y","duration":"thirty_minutes","expires_at":"{expires}"}}"#));
    fake.advance_clock(3600);
    fake.run_dnd_expiry();
    std::thread::sleep(Duration::from_millis(300));
    let cs = fake.state().custom_status.expect("still stored");
    assert_eq!(cs.expires_at, expires);
    // ...and putting the expired status back is refused.
    let again = put_custom(&fake, fake.state().custom_status_raw.as_deref().unwrap());
    assert_eq!(again.status, 400);
}

#[test]
fn raw_custom_status_setters_store_verbatim() {
    let fake = quiet_fake();
    fake.set_custom_status_raw("{broken");
    assert_eq!(fake.state().custom_status_raw.as_deref(), Some("{broken"));
    assert_eq!(fake.state().custom_status, None);
    fake.set_custom_status("calendar", "In a meeting", "one_hour", "2030-01-01T10:00:00Z");
    let cs = fake.state().custom_status.unwrap();
    assert_eq!(
        (cs.emoji.as_str(), cs.duration.as_str(), cs.expires_at.as_str()),
        ("calendar", "one_hour", "2030-01-01T10:00:00Z")
    );
    fake.remove_custom_status_prop();
    assert_eq!(fake.state().custom_status_raw, None);
}

// ---------------------------------------------------------------------------------------------------------------
// Rate limiting (docs/mattermost-semantics.md, section 9).

#[test]
fn rate_limit_answers_429_in_plain_text_with_retry_after() {
    let fake = quiet_fake();
    fake.set_rate_limit(Some(RateLimit { per_sec: 1, max_burst: 1 }));
    let first = call(&fake, "GET", "/api/v4/users/me/status", None);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(call(&fake, "GET", "/api/v4/users/me/status", None).status, 200);
    let limited = call(&fake, "GET", "/api/v4/users/me/status", None);
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body, "limit exceeded\n");
    assert_eq!(limited.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(limited.header("retry-after"), Some("1"));
    let unauthenticated = send(&fake, "GET", "/api/v4/users/me", &[], None);
    assert_eq!(unauthenticated.status, 429, "the limiter runs before authentication");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(call(&fake, "GET", "/api/v4/users/me/status", None).status, 200);
    fake.set_rate_limit(None);
    let free = call(&fake, "GET", "/api/v4/users/me/status", None);
    assert_eq!((free.status, free.header("x-ratelimit-limit")), (200, None));
}

#[test]
fn rate_limited_fault_answers_the_next_k_requests() {
    let fake = quiet_fake();
    fake.set_fault(Fault::RateLimited { retry_after_secs: 7 }, FaultScope::all().times(2));
    for _ in 0..2 {
        let reply = put_status(&fake, "dnd", Some(0));
        assert_eq!((reply.status, reply.body.as_str()), (429, "limit exceeded\n"));
        assert_eq!(reply.header("retry-after"), Some("7"));
    }
    assert_eq!(fake.state().status, "offline", "limited requests change nothing");
    assert_eq!(put_status(&fake, "dnd", Some(0)).status, 200);
    assert_eq!(fake.pending_faults(), 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Faults.

#[test]
fn refuse_connections_closes_the_listener_until_cleared() {
    let fake = quiet_fake();
    let mut idle = connect(&fake);
    idle.write_all(&request_bytes("GET", "/api/v4/system/ping", &[], None)).unwrap();
    assert_eq!(read_reply(&mut idle).unwrap().status, 200);
    fake.set_fault(Fault::RefuseConnections, FaultScope::all());
    // The accept loop closes the listener at its next turn: wait for that, not a fixed while.
    let mut last = Ok(());
    let refused = wait_for("connections refused", || {
        last = TcpStream::connect(fake.addr()).map(drop).map_err(|e| e.kind());
        last == Err(ErrorKind::ConnectionRefused)
    });
    assert!(refused.is_ok(), "connect ended with {last:?}");
    let mut buf = [0u8; 1];
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0, "idle keep-alive connections are closed too");
    fake.clear_faults();
    wait_for("listening again", || TcpStream::connect(fake.addr()).is_ok()).unwrap();
    assert_eq!(call(&fake, "GET", "/api/v4/users/me", None).status, 200);
}

#[test]
fn close_without_answer_leaves_the_state_alone_and_drop_response_applies_it() {
    let fake = quiet_fake();
    fake.set_fault(Fault::CloseWithoutAnswer, FaultScope::on("PUT", "/api/v4/users/me/status").times(1));
    let mut stream = connect(&fake);
    let body = format!("{{\"user_id\":\"{}\",\"status\":\"dnd\"}}", fake.user_id());
    let auth = format!("Bearer {}", fake.token());
    stream
        .write_all(&request_bytes("PUT", "/api/v4/users/me/status", &[("Authorization", &auth)], Some(&body)))
        .unwrap();
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0), 0);
    assert_eq!(fake.state().status, "offline");
    assert_eq!(fake.calls().last().unwrap().status, None);

    // The scope matches the id spelling of the same path.
    fake.set_fault(Fault::DropResponse, FaultScope::on("PUT", "/api/v4/users/me/status").times(1));
    let path = format!("/api/v4/users/{}/status", fake.user_id());
    let mut stream = connect(&fake);
    stream.write_all(&request_bytes("PUT", &path, &[("Authorization", &auth)], Some(&body))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0), 0);
    assert_eq!(fake.state().status, "dnd", "processed, answer lost");
}

#[test]
fn never_answer_hangs_until_the_client_gives_up_and_stops_on_drop() {
    let fake = quiet_fake();
    fake.set_fault(Fault::NeverAnswer, FaultScope::path("/api/v4/users/me"));
    let mut stream = connect(&fake);
    stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    stream.write_all(&request_bytes("GET", "/api/v4/users/me", &[], None)).unwrap();
    // The fake has the request (it records it when it takes the fault): from now on no answer may come.
    wait_for("the request recorded", || fake.calls().len() == 1).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let err = stream.read(&mut buf).expect_err("no answer");
    assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(fake.open_connections(), 1);
    assert_eq!(fake.calls()[0].status, None, "recorded as unanswered");
    // Other paths still work.
    assert_eq!(call(&fake, "GET", "/api/v4/system/ping", None).status, 200);
    let dropped = Instant::now();
    drop(fake);
    // Left alone the hang lasts five minutes: a drop that waited for it would take that long. The limit is a
    // failure deadline with room for a busy machine, not a speed requirement.
    assert!(dropped.elapsed() < SOONER_THAN_A_MINUTE, "drop stops the hung connection: took {:?}", dropped.elapsed());
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(stream.read(&mut buf).unwrap_or(0), 0, "the fake closed it");
}

#[test]
fn a_fault_on_the_nth_exact_request_freezes_the_client_after_the_call_took_effect() {
    let fake = quiet_fake();
    fake.set_status("online", false, 0);
    // The second GET of exactly /users/me: neither the status path under it nor the first GET is caught.
    fake.set_fault_on_nth(Fault::NeverAnswer, "GET", "/api/v4/users/me", 2);
    assert_eq!(call(&fake, "GET", "/api/v4/users/me/status", None).status, 200);
    assert_eq!(call(&fake, "GET", &format!("/api/v4/users/{}", fake.user_id()), None).status, 200);
    assert_eq!(fake.pending_faults(), 1);
    let mut stream = connect(&fake);
    stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    stream.write_all(&request_bytes("GET", "/api/v4/users/me", &[], None)).unwrap();
    // A read that times out proves nothing until the fake has the request: wait for it to take the fault.
    wait_for("the fault used up", || fake.pending_faults() == 0).unwrap();
    let mut buf = [0u8; 1];
    assert!(stream.read(&mut buf).is_err(), "the second GET hangs");
    assert_eq!(call(&fake, "GET", "/api/v4/users/me", None).status, 200, "the third is served");

    // Processed, then no answer: the status changed although the client never hears so.
    fake.set_fault_on_nth(Fault::ProcessThenNeverAnswer, "PUT", "/api/v4/users/me/status", 1);
    let body = format!("{{\"user_id\":\"{}\",\"status\":\"dnd\"}}", fake.user_id());
    let auth = format!("Bearer {}", fake.token());
    let mut stream = connect(&fake);
    stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    stream
        .write_all(&request_bytes("PUT", "/api/v4/users/me/status", &[("Authorization", &auth)], Some(&body)))
        .unwrap();
    wait_for("the fault used up", || fake.pending_faults() == 0).unwrap();
    assert!(stream.read(&mut buf).is_err(), "no answer");
    assert_eq!(fake.state().status, "dnd", "applied");
    assert_eq!(fake.calls().last().unwrap().status, None);
}

#[test]
fn trickle_sends_the_real_answer_one_byte_at_a_time() {
    let fake = quiet_fake();
    fake.set_fault(Fault::Trickle { interval: Duration::from_millis(30) }, FaultScope::all().times(1));
    let mut stream = connect(&fake);
    stream.write_all(&request_bytes("GET", "/api/v4/system/ping", &[("Connection", "close")], None)).unwrap();
    let started = Instant::now();
    let mut first = [0u8; 10];
    stream.read_exact(&mut first).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "10 bytes took {:?}", started.elapsed());
    assert_eq!(&first, b"HTTP/1.1 2");
    drop(stream);
    assert_eq!(fake.calls()[0].status, Some(200));
}

#[test]
fn fixed_status_faults_send_app_errors_or_proxy_pages() {
    let fake = quiet_fake();
    for (code, id) in [
        (400, "api.context.invalid_body_param.app_error"),
        (401, "api.context.session_expired.app_error"),
        (403, "api.context.permissions.app_error"),
        (500, "app.status.get.app_error"),
        (501, "api.custom_status.disabled"),
    ] {
        fake.set_fault(Fault::app_error(code), FaultScope::all().times(1));
        let reply = put_status(&fake, "dnd", Some(0));
        assert_eq!(reply.status, code);
        assert_eq!(reply.app_error_id(), id);
    }
    for code in [502, 503] {
        fake.set_fault(Fault::html(code), FaultScope::all().times(1));
        let reply = call(&fake, "GET", "/api/v4/users/me", None);
        assert_eq!(reply.status, code);
        assert_eq!(reply.header("content-type"), Some("text/html"));
        assert!(reply.body.contains(&format!("<title>{code} ")), "{}", reply.body);
    }
    fake.set_fault(Fault::Status { code: 503, body: FaultBody::Empty }, FaultScope::all().times(1));
    assert_eq!(call(&fake, "GET", "/api/v4/users/me", None).body, "");
    assert_eq!(fake.state().status, "offline", "none of them reached the API");
    let custom = Fault::custom_status_disabled();
    fake.set_fault(custom, FaultScope::path("/api/v4/users/me/status/custom"));
    assert_eq!(put_custom(&fake, r#"{"text":"x"}"#).status, 501);
    assert_eq!(put_status(&fake, "away", None).status, 200, "the scope leaves other paths alone");
}

#[test]
fn malformed_truncated_and_huge_bodies() {
    let fake = quiet_fake();
    fake.set_fault(Fault::MalformedJson, FaultScope::on("GET", "/api/v4/users/me").times(1));
    let reply = call(&fake, "GET", "/api/v4/users/me", None);
    assert_eq!(reply.status, 200);
    assert!(go_json::parse_complete(&reply.body).is_err(), "{}", reply.body);

    fake.set_fault(Fault::TruncatedBody, FaultScope::all().times(1));
    let mut stream = connect(&fake);
    stream.write_all(&request_bytes("GET", "/api/v4/system/ping", &[], None)).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("Content-Length: {}", body.len() + 100)), "{head}");

    fake.set_fault(Fault::ten_megabytes(), FaultScope::all().times(1));
    let huge = put_status(&fake, "dnd", Some(0));
    assert_eq!(huge.status, 200);
    assert_eq!(huge.body.len(), 10 * 1024 * 1024);
    assert_eq!(go_json::parse_complete(&huge.body).unwrap().field("status"), Some(&Json::String("dnd".into())));
    assert_eq!(fake.state().status, "dnd", "processed");
}

// ---------------------------------------------------------------------------------------------------------------
// Transport, recording, TLS, lifetime.

#[test]
fn keep_alive_pipelining_chunked_bodies_and_connection_close() {
    let fake = quiet_fake();
    let auth = format!("Bearer {}", fake.token());
    let mut stream = connect(&fake);
    for _ in 0..3 {
        stream.write_all(&request_bytes("GET", "/api/v4/users/me/status", &[("Authorization", &auth)], None)).unwrap();
        assert_eq!(read_reply(&mut stream).unwrap().status, 200);
    }
    let body = format!("{{\"user_id\":\"{}\",\"status\":\"away\"}}", fake.user_id());
    let (a, b) = body.split_at(10);
    let chunked = format!(
        "PUT /api/v4/users/me/status HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let pipelined = format!(
        "{chunked}{}",
        String::from_utf8(request_bytes("GET", "/api/v4/system/ping", &[("Connection", "close")], None)).unwrap()
    );
    stream.write_all(pipelined.as_bytes()).unwrap();
    assert_eq!(read_reply(&mut stream).unwrap().status, 200);
    let last = read_reply(&mut stream).unwrap();
    assert_eq!(last.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0, "closed after Connection: close");
    assert_eq!(fake.state().status, "away");
    assert_eq!(fake.connections_accepted(), 1);
}

#[test]
fn calls_are_recorded_with_bodies_statuses_and_headers() {
    let fake = quiet_fake();
    put_status(&fake, "dnd", Some(0));
    put_custom(&fake, r#"{"text":"x"}"#);
    call(&fake, "GET", &format!("/api/v4/users/{}/status", fake.user_id()), None);
    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str(), calls[0].status),
        ("PUT", "/api/v4/users/me/status", Some(200))
    );
    assert!(calls[0].body.contains("\"dnd\""));
    assert!(calls[0].response_body.contains("\"dnd\""));
    assert_eq!(calls[0].header("authorization"), Some(format!("Bearer {}", fake.token()).as_str()));
    assert_eq!(fake.calls_to("GET", "/api/v4/users/me/status").len(), 1, "me and the id are the same path");
    assert_eq!(fake.calls_to("PUT", "/api/v4/users/me/status").len(), 2, "prefix match");
    assert_eq!(fake.request_count(), 3);
    fake.clear_calls();
    assert!(fake.calls().is_empty());
}

#[test]
fn https_with_the_test_ca() {
    let tls = TestTls::new();
    assert!(std::fs::read_to_string(tls.ca_file()).unwrap().contains("BEGIN CERTIFICATE"));
    let fake = FakeMattermost::start_tls(&tls);
    assert!(fake.url().starts_with("https://127.0.0.1:"));
    let mut tcp = connect(&fake);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(tls.client_config(), name).unwrap();
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    let auth = format!("Bearer {}", fake.token());
    stream.write_all(&request_bytes("GET", "/api/v4/users/me", &[("Authorization", &auth)], None)).unwrap();
    let reply = read_reply(&mut stream).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.str_field("id"), fake.user_id());

    // A client trusting another CA fails the handshake.
    let other = TestTls::new();
    let mut tcp = connect(&fake);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(other.client_config(), name).unwrap();
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    assert!(
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").and_then(|()| stream.flush()).is_err() || {
            let mut buf = [0u8; 1];
            stream.read(&mut buf).is_err()
        }
    );
    assert_eq!(fake.request_count(), 1);
}

#[test]
fn tls_variants_fail_verification_for_the_right_reason() {
    let verify = |tls: &TestTls, host: &str| -> Result<(), String> {
        let fake = FakeMattermost::start_tls(tls);
        let mut tcp = connect(&fake);
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(tls.client_config(), name).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    assert_eq!(verify(&TestTls::new(), "localhost"), Ok(()));
    let wrong_name = verify(&TestTls::for_names(&["other.example"]), "127.0.0.1").unwrap_err();
    assert!(wrong_name.contains("not valid for name"), "{wrong_name}");
    let expired = verify(&TestTls::expired(), "127.0.0.1").unwrap_err();
    assert!(expired.to_lowercase().contains("expired"), "{expired}");
    let _: Arc<rustls::ServerConfig> = TestTls::new().server_config();
}

#[test]
fn dropping_the_fake_stops_it() {
    let fake = FakeMattermost::start();
    let addr = fake.addr();
    let mut idle = connect(&fake);
    idle.write_all(&request_bytes("GET", "/api/v4/system/ping", &[], None)).unwrap();
    assert_eq!(read_reply(&mut idle).unwrap().status, 200);
    let started = Instant::now();
    drop(fake);
    // An idle keep-alive connection is otherwise kept for a minute: a drop that waited for it would take that long.
    // The limit is a failure deadline with room for a busy machine, not a speed requirement.
    assert!(started.elapsed() < SOONER_THAN_A_MINUTE, "drop took {:?}", started.elapsed());
    assert_eq!(TcpStream::connect(addr).map_err(|e| e.kind()).err(), Some(ErrorKind::ConnectionRefused));
    let mut buf = [0u8; 1];
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Preferences: the per-user key/value store the daemons of one user share.

fn pref_body(user_id: &str, entries: &[(&str, &str, &str)]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|(c, n, v)| {
            format!(
                "{{\"user_id\":{},\"category\":{},\"name\":{},\"value\":{}}}",
                go_json::quote(user_id),
                go_json::quote(c),
                go_json::quote(n),
                go_json::quote(v)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn put_prefs(fake: &FakeMattermost, entries: &[(&str, &str, &str)]) -> Reply {
    call(fake, "PUT", "/api/v4/users/me/preferences", Some(&pref_body(&fake.user_id(), entries)))
}

fn get_prefs(fake: &FakeMattermost, category: &str) -> Reply {
    call(fake, "GET", &format!("/api/v4/users/me/preferences/{category}"), None)
}

fn names_and_values(reply: &Reply) -> Vec<(String, String)> {
    let Json::Array(items) = reply.json() else { panic!("not an array: {}", reply.body) };
    items
        .iter()
        .map(|item| {
            let text = |f: &str| match item.field(f) {
                Some(Json::String(s)) => s.clone(),
                other => panic!("{f} is {other:?}"),
            };
            (text("name"), text("value"))
        })
        .collect()
}

#[test]
fn preferences_upsert_per_category_and_name_and_leave_the_others_alone() {
    let fake = quiet_fake();
    // An empty category is a 404, not an empty list.
    let empty = get_prefs(&fake, "mm_status_sync");
    assert_eq!(empty.status, 404);
    assert_eq!(empty.app_error_id(), "api.preference.preferences_category.get.app_error");

    let put = put_prefs(&fake, &[("mm_status_sync", "a", "1"), ("mm_status_sync", "b", "2"), ("other", "a", "x")]);
    assert_eq!((put.status, put.body.as_str()), (200, "{\"status\":\"OK\"}"));
    assert_eq!(put_prefs(&fake, &[("mm_status_sync", "a", "3")]).status, 200);
    let got = get_prefs(&fake, "mm_status_sync");
    assert_eq!(got.status, 200);
    assert_eq!(got.json().field("x"), None);
    let expected = [("a", "3"), ("b", "2")].map(|(n, v)| (n.to_string(), v.to_string()));
    assert_eq!(names_and_values(&got), expected);
    assert_eq!(fake.preferences("other"), [("a".to_string(), "x".to_string())]);

    // Delete by (category, name); the value is ignored and a missing entry is no error.
    let body = pref_body(&fake.user_id(), &[("mm_status_sync", "a", "ignored"), ("mm_status_sync", "gone", "")]);
    assert_eq!(call(&fake, "POST", "/api/v4/users/me/preferences/delete", Some(&body)).status, 200);
    assert_eq!(fake.preferences("mm_status_sync"), [("b".to_string(), "2".to_string())]);
    let body = pref_body(&fake.user_id(), &[("mm_status_sync", "b", "")]);
    assert_eq!(call(&fake, "POST", "/api/v4/users/me/preferences/delete", Some(&body)).status, 200);
    assert_eq!(get_prefs(&fake, "mm_status_sync").status, 404);
    // The recent custom statuses share the GET with stored entries of that category.
    assert_eq!(get_prefs(&fake, "custom_status").status, 404);
    put_custom(&fake, r#"{"emoji":"x","text":"t"}"#);
    assert_eq!(get_prefs(&fake, "custom_status").status, 200);
}

#[test]
fn preference_entries_must_name_the_resolved_user() {
    let fake = quiet_fake();
    // `me` is resolved in the URL only: an entry saying `me` is another user to the server.
    for path in ["/api/v4/users/me/preferences", "/api/v4/users/me/preferences/delete"] {
        let method = if path.ends_with("delete") { "POST" } else { "PUT" };
        let reply = call(&fake, method, path, Some(&pref_body("me", &[("mm_status_sync", "a", "1")])));
        assert_eq!(reply.status, 403, "{path}");
        assert!(reply.app_error_id().starts_with("api.preference."), "{path}");
    }
    let other = fake.add_user("someone.else");
    let reply = call(&fake, "PUT", "/api/v4/users/me/preferences", Some(&pref_body(&other.id, &[("c1", "a", "1")])));
    assert_eq!(reply.status, 403);
    // Another user's preferences need edit_other_users.
    let reply = call(&fake, "GET", &format!("/api/v4/users/{}/preferences/c1", other.id), None);
    assert_eq!((reply.status, reply.app_error_id().as_str()), (403, "api.context.permissions.app_error"));
    assert!(fake.preferences("mm_status_sync").is_empty());
}

#[test]
fn preference_limits_are_the_servers() {
    let fake = quiet_fake();
    let id = fake.user_id();
    let long_name = "n".repeat(33);
    let long_category = "c".repeat(33);
    let long_value = "é".repeat(20_001);
    let cases: [(&str, &str, &str, &str); 4] = [
        ("", "a", "1", "model.preference.is_valid.category.app_error"),
        (&long_category, "a", "1", "model.preference.is_valid.category.app_error"),
        ("mm_status_sync", &long_name, "1", "model.preference.is_valid.name.app_error"),
        ("mm_status_sync", "a", &long_value, "model.preference.is_valid.value.app_error"),
    ];
    for (category, name, value, error) in cases {
        // One bad entry fails the whole request: the good one beside it is not stored either.
        let body = pref_body(&id, &[("mm_status_sync", "good", "1"), (category, name, value)]);
        let reply = call(&fake, "PUT", "/api/v4/users/me/preferences", Some(&body));
        assert_eq!((reply.status, reply.app_error_id().as_str()), (400, error), "{category:?} {name:?}");
        assert!(fake.preferences("mm_status_sync").is_empty());
    }
    // At the limits: a 32-byte name, 20000 runes, an empty name.
    let name32 = "n".repeat(32);
    let value = "é".repeat(20_000);
    assert_eq!(put_prefs(&fake, &[("mm_status_sync", &name32, &value), ("mm_status_sync", "", "e")]).status, 200);
    assert_eq!(fake.preferences("mm_status_sync").len(), 2);

    // 1 to 100 entries per request, for PUT and delete alike.
    let names: Vec<String> = (0..101).map(|i| format!("n{i}")).collect();
    let entries: Vec<(&str, &str, &str)> = names.iter().map(|n| ("bulk", n.as_str(), "1")).collect();
    for (method, path) in [("PUT", "/api/v4/users/me/preferences"), ("POST", "/api/v4/users/me/preferences/delete")] {
        for body in [pref_body(&id, &entries), "[]".to_string(), "{}".to_string()] {
            let reply = call(&fake, method, path, Some(&body));
            assert_eq!(reply.status, 400, "{method} {}", &body[..body.len().min(20)]);
            assert_eq!(reply.app_error_id(), "api.context.invalid_body_param.app_error");
        }
    }
    assert_eq!(put_prefs(&fake, &entries[..100]).status, 200);
    assert_eq!(fake.preferences("bulk").len(), 100);
}

#[test]
fn preference_categories_in_urls_follow_the_router_and_require_category() {
    let fake = quiet_fake();
    fake.set_preference("Upper", "a", "1");
    fake.set_preference("x", "a", "1");
    // Upper case passes the route pattern and fails RequireCategory; a hyphen matches no route at all; so does a
    // one-character category.
    let upper = get_prefs(&fake, "Upper");
    assert_eq!((upper.status, upper.app_error_id().as_str()), (400, "api.context.invalid_url_param.app_error"));
    assert_eq!(get_prefs(&fake, "mm-status-sync").status, 404);
    assert_eq!(get_prefs(&fake, "mm-status-sync").app_error_id(), "api.context.404.app_error");
    assert_eq!(get_prefs(&fake, "x").status, 400);
    assert_eq!(get_prefs(&fake, "_mm").status, 400);
}
