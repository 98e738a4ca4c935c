//! The client against the project's one fake Mattermost server (`tests/support/`) on 127.0.0.1, mostly told
//! answer by answer what to say: what goes on the wire, what comes back, and every way a call can fail, including
//! the ones that must not take longer than the configured limits.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::model::{CustomStatus, Preference, UserStatus, ZERO_TIME};
use fake_mattermost::{FakeMattermost, Fault, FaultScope, RecordedCall};
use http::Response;
use tls::TestTls;

// The fake server and certificate authority of the integration tests, compiled in as modules of this one: the
// client's private parts stay private, and `fake_mattermost` finds its siblings (`super::http`, ...) here as it
// does in `tests/support/`. They are written for the integration test crates, where their items must be `pub`.
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/support/fake_mattermost.rs"]
mod fake_mattermost;
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/support/go_json.rs"]
mod go_json;
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/support/go_time.rs"]
mod go_time;
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/support/http.rs"]
mod http;
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/support/tls.rs"]
mod tls;

/// Shaped like a personal access token, so that a leak would be a realistic one.
const TOKEN: &str = "k9w3pz7tokensecretq4d8f1xa";
const ME: &str = "u1xq5rj8bbyzmg3ifsr3j4c6ya";
const USER_AGENT: &str = concat!("mm-status-sync/", env!("CARGO_PKG_VERSION"));

/// An answer with status `code`, `headers`, and `body` (the fake adds `Content-Length`).
fn reply(code: u16, headers: &[(&str, &str)], body: &str) -> Fault {
    let response = Response { status: code, headers: Vec::new(), body: body.into() };
    Fault::Respond(headers.iter().fold(response, |response, (name, value)| response.header(name, *value)))
}

fn json(code: u16, body: &str) -> Fault {
    reply(code, &[("Content-Type", "application/json")], body)
}

/// Exactly these bytes on the wire, then the connection closes.
fn raw(text: &str) -> Fault {
    Fault::Raw(text.as_bytes().to_vec())
}

/// A fake whose user has our token, answering each request with the next of `answers`.
fn scripted(answers: Vec<Fault>) -> FakeMattermost {
    let fake = FakeMattermost::start();
    fake.set_token(TOKEN);
    for answer in answers {
        fake.respond_with(answer);
    }
    fake
}

/// The requests `fake` received, once every scripted answer was used.
fn requests(fake: &FakeMattermost) -> Vec<RecordedCall> {
    assert_eq!(fake.pending_faults(), 0, "answers were scripted for requests that never came");
    fake.calls()
}

fn quick() -> Timeouts {
    Timeouts { connect: Duration::from_secs(2), read: Duration::from_secs(5), total: Duration::from_secs(10) }
}

fn client(base_url: &str) -> Client {
    Client::new(base_url, Secret::new(TOKEN), None, quick()).unwrap()
}

/// An address where nothing listens.
fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Runs `call` against the fake answering `answer`; checks that exactly one request was made and that the error does
/// not show the token.
fn fail_with<T: std::fmt::Debug>(answer: Fault, call: impl FnOnce(&Client) -> Result<T, ApiError>) -> ApiError {
    let fake = scripted(vec![answer]);
    let error = call(&client(&fake.url())).unwrap_err();
    assert_eq!(requests(&fake).len(), 1);
    assert_no_token(&error);
    error
}

fn assert_no_token(error: &ApiError) {
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(TOKEN), "token leaked: {shown}");
    }
}

fn user_body(custom_status: &str) -> String {
    format!(
        r#"{{"id":"{ME}","create_at":1,"update_at":2,"delete_at":0,"username":"alice","auth_data":"","auth_service":"",
        "email":"alice@example.com","nickname":"","first_name":"","last_name":"","position":"","roles":"system_user",
        "props":{{"customStatus":{custom_status}}},"notify_props":{{"push":"mention"}},"locale":"en",
        "timezone":{{"automaticTimezone":"","manualTimezone":"","useAutomaticTimezone":"true"}},"disable_welcome_email":false}}"#
    )
}

const STATUS_DND: &str = r#"{"user_id":"u1xq5rj8bbyzmg3ifsr3j4c6ya","status":"dnd","manual":true,"last_activity_at":1700000000000,"dnd_end_time":1700003580}
"#;

// ---------------------------------------------------------------------------------------------------------------
// What goes on the wire

#[test]
fn get_me_sends_bearer_token_and_reads_the_user() {
    let custom = r#""{\"emoji\":\"calendar\",\"text\":\"In a meeting\",\"duration\":\"one_hour\",\"expires_at\":\"2030-01-01T10:00:00Z\"}""#;
    let fake = scripted(vec![json(200, &user_body(custom))]);
    let host = fake.url().trim_start_matches("http://").to_owned();
    let user = client(&fake.url()).get_me().unwrap();
    assert_eq!(user.id, ME);
    assert_eq!(user.username, "alice");
    assert_eq!(
        user.custom_status,
        Some(CustomStatus {
            emoji: "calendar".into(),
            text: "In a meeting".into(),
            duration: "one_hour".into(),
            expires_at: "2030-01-01T10:00:00Z".into()
        })
    );
    let requests = requests(&fake);
    let request = &requests[0];
    assert_eq!(request.request_line(), "GET /api/v4/users/me HTTP/1.1");
    assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(request.header("user-agent"), Some(USER_AGENT));
    assert_eq!(request.header("host"), Some(host.as_str()));
    for absent in ["accept-encoding", "cookie", "content-type", "x-requested-with"] {
        assert_eq!(request.header(absent), None, "{absent}");
    }
    assert_eq!(request.body, "");
}

#[test]
fn subpath_and_user_ids_end_up_in_the_request_path() {
    let fake = scripted(vec![json(200, STATUS_DND), json(200, &user_body(r#""""#))]);
    let client = client(&format!("{}/chat/", fake.url()));
    assert_eq!(
        client.get_status(ME).unwrap(),
        UserStatus { status: "dnd".into(), manual: true, dnd_end_time: 1_700_003_580 }
    );
    let user = client.get_user(ME).unwrap();
    assert_eq!(user.custom_status, None);
    let lines: Vec<_> = requests(&fake).iter().map(|r| r.request_line().to_owned()).collect();
    assert_eq!(
        lines,
        [format!("GET /chat/api/v4/users/{ME}/status HTTP/1.1"), format!("GET /chat/api/v4/users/{ME} HTTP/1.1")]
    );
}

#[test]
fn put_status_sends_the_user_id_and_dnd_end_time_only_when_given() {
    let online = r#"{"user_id":"u1xq5rj8bbyzmg3ifsr3j4c6ya","status":"online","manual":false,"last_activity_at":1700000000000,"dnd_end_time":0}"#;
    let fake = scripted(vec![json(200, STATUS_DND), json(200, online)]);
    let client = client(&fake.url());
    assert_eq!(
        client.put_status(ME, "dnd", Some(1_700_003_600)).unwrap(),
        UserStatus { status: "dnd".into(), manual: true, dnd_end_time: 1_700_003_580 }
    );
    assert_eq!(
        client.put_status(ME, "online", None).unwrap(),
        UserStatus { status: "online".into(), manual: false, dnd_end_time: 0 }
    );
    let requests = requests(&fake);
    for request in &requests {
        assert_eq!(request.request_line(), format!("PUT /api/v4/users/{ME}/status HTTP/1.1"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    }
    assert_eq!(requests[0].body, format!(r#"{{"user_id":"{ME}","status":"dnd","dnd_end_time":1700003600}}"#));
    assert_eq!(requests[1].body, format!(r#"{{"user_id":"{ME}","status":"online"}}"#));
}

#[test]
fn custom_status_is_put_with_all_four_fields_and_deleted_without_a_body() {
    let ok = r#"{"status":"OK"}"#;
    let fake = scripted(vec![json(200, ok), json(200, ok)]);
    let client = client(&fake.url());
    let status = CustomStatus {
        emoji: "calendar".into(),
        text: "In a meeting".into(),
        duration: String::new(),
        expires_at: ZERO_TIME.into(),
    };
    client.put_custom_status(ME, &status).unwrap();
    client.delete_custom_status(ME).unwrap();
    let requests = requests(&fake);
    assert_eq!(requests[0].request_line(), format!("PUT /api/v4/users/{ME}/status/custom HTTP/1.1"));
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    assert_eq!(
        requests[0].body,
        r#"{"emoji":"calendar","text":"In a meeting","duration":"","expires_at":"0001-01-01T00:00:00Z"}"#
    );
    assert_eq!(requests[1].request_line(), format!("DELETE /api/v4/users/{ME}/status/custom HTTP/1.1"));
    assert_eq!(requests[1].body, "");
    assert_eq!(requests[1].header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
}

fn pref(name: &str, value: &str) -> Preference {
    Preference { category: "mm_status_sync".into(), name: name.into(), value: value.into() }
}

#[test]
fn preferences_are_read_put_and_deleted_with_the_real_user_id_in_each_entry() {
    let listed = format!(
        r#"[{{"user_id":"{ME}","category":"mm_status_sync","name":"a","value":"1"}},{{"user_id":"{ME}","category":"mm_status_sync","name":"b","value":""}}]
"#
    );
    let empty = r#"{"id":"api.preference.preferences_category.get.app_error","message":"Unable to find preferences for the given category.","detailed_error":"","request_id":"8j5mxkq1ztdd3c5kgw9z1ymcqe","status_code":404}"#;
    let ok = r#"{"status":"OK"}"#;
    let fake = scripted(vec![json(200, &listed), json(404, empty), json(200, ok), json(200, ok)]);
    let client = client(&fake.url());
    assert_eq!(client.get_preferences(ME, "mm_status_sync").unwrap(), [pref("a", "1"), pref("b", "")]);
    // The server's 404 for a category without entries is an empty list.
    assert_eq!(client.get_preferences(ME, "mm_status_sync").unwrap(), []);
    client.put_preferences(ME, &[pref("a", "{\"until\":5}"), pref("original", "x")]).unwrap();
    client.delete_preferences(ME, &[pref("a", "")]).unwrap();
    let requests = requests(&fake);
    let lines: Vec<String> = requests.iter().map(RecordedCall::request_line).collect();
    assert_eq!(
        lines,
        [
            format!("GET /api/v4/users/{ME}/preferences/mm_status_sync HTTP/1.1"),
            format!("GET /api/v4/users/{ME}/preferences/mm_status_sync HTTP/1.1"),
            format!("PUT /api/v4/users/{ME}/preferences HTTP/1.1"),
            format!("POST /api/v4/users/{ME}/preferences/delete HTTP/1.1"),
        ]
    );
    assert_eq!(
        requests[2].body,
        format!(
            r#"[{{"user_id":"{ME}","category":"mm_status_sync","name":"a","value":"{{\"until\":5}}"}},{{"user_id":"{ME}","category":"mm_status_sync","name":"original","value":"x"}}]"#
        )
    );
    assert_eq!(
        requests[3].body,
        format!(r#"[{{"user_id":"{ME}","category":"mm_status_sync","name":"a","value":""}}]"#)
    );
    for request in &requests[2..] {
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
}

#[test]
fn other_404s_on_preferences_stay_errors() {
    let error = fail_with(
        json(404, r#"{"id":"api.context.404.app_error","message":"Sorry, we could not find the page."}"#),
        |c| c.get_preferences(ME, "mm_status_sync"),
    );
    assert_eq!(error.status(), Some(404));
    let error = fail_with(reply(404, &[("Content-Type", "text/html")], "<html>nginx</html>"), |c| {
        c.get_preferences(ME, "mm_status_sync")
    });
    assert_eq!(error.status(), Some(404));
}

#[test]
fn preference_calls_the_server_would_refuse_are_not_sent() {
    let client = client(&dead_address());
    let many: Vec<Preference> = (0..101).map(|i| pref(&format!("n{i}"), "")).collect();
    let refused = [
        client.put_preferences("me", &[pref("a", "")]).unwrap_err(),
        client.delete_preferences("me", &[pref("a", "")]).unwrap_err(),
        client.put_preferences(ME, &[]).unwrap_err(),
        client.put_preferences(ME, &many).unwrap_err(),
        client.delete_preferences(ME, &many).unwrap_err(),
        client.put_preferences(ME, &[pref(&"n".repeat(33), "")]).unwrap_err(),
        client.put_preferences(ME, &[pref("a", &"v".repeat(2001))]).unwrap_err(),
        client.get_preferences(ME, "mm-status-sync").unwrap_err(),
        client.get_preferences(ME, "Upper").unwrap_err(),
    ];
    for error in refused {
        assert!(matches!(error.kind(), ApiErrorKind::Invalid(_)), "{error}");
        assert!(!error.is_retryable(), "{error}");
    }
    assert!(client.put_preferences(ME, &many[..100]).unwrap_err().is_retryable(), "100 entries are sent");
}

#[test]
fn cookies_set_by_the_server_are_never_sent_back() {
    let set_cookie =
        [("Set-Cookie", "MMAUTHTOKEN=cookie-session; Path=/; HttpOnly"), ("Content-Type", "application/json")];
    let fake = scripted(vec![reply(200, &set_cookie, &user_body(r#""""#)), json(200, STATUS_DND)]);
    let client = client(&fake.url());
    client.get_me().unwrap();
    client.get_status(ME).unwrap();
    let requests = requests(&fake);
    assert_eq!(requests[1].header("cookie"), None);
}

#[test]
fn invalid_arguments_are_refused_before_sending() {
    let client = client(&dead_address());
    for id in ["", "../../system/ping", "u1 x", "u1%2F", "ü"] {
        let error = client.get_status(id).unwrap_err();
        assert!(matches!(error.kind(), ApiErrorKind::Invalid(_)), "{id:?}: {error}");
        assert!(!error.is_retryable());
    }
    let error = client.put_status("me", "online", None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "API ERROR: PUT /api/v4/users/me/status: the user id in the status body must be the real id, not me"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP errors

#[test]
fn unauthorized_app_error_is_an_auth_error() {
    let body = r#"{"id":"api.context.session_expired.app_error","message":"Invalid or expired session, please login again.","detailed_error":"","request_id":"8j5mxkq1ztdd3c5kgw9z1ymcqe","status_code":401}"#;
    let error = fail_with(json(401, body), Client::get_me);
    assert_eq!(
        error.to_string(),
        "API ERROR: GET /api/v4/users/me: 401 api.context.session_expired.app_error: Invalid or expired session, please login again."
    );
    assert!(error.is_auth() && !error.is_retryable() && !error.is_not_implemented());
    assert_eq!((error.method(), error.path(), error.status()), (Some("GET"), "/api/v4/users/me", Some(401)));
}

#[test]
fn forbidden_is_an_auth_error() {
    let body = r#"{"id":"api.context.permissions.app_error","message":"You do not have the appropriate permissions.","detailed_error":"","status_code":403}"#;
    let error = fail_with(json(403, body), |c| c.put_status(ME, "dnd", None));
    assert!(error.is_auth() && !error.is_retryable());
}

#[test]
fn bad_custom_status_reads_as_the_server_said_it() {
    let body = r#"{"id":"api.context.invalid_body_param.app_error","message":"Invalid or missing custom_status in request body.","detailed_error":"","request_id":"x","status_code":400}"#;
    let status = CustomStatus { emoji: "".into(), text: "".into(), duration: "".into(), expires_at: ZERO_TIME.into() };
    let error = fail_with(json(400, body), |c| c.put_custom_status("me", &status));
    assert_eq!(
        error.to_string(),
        "API ERROR: PUT /api/v4/users/me/status/custom: 400 api.context.invalid_body_param.app_error: Invalid or missing custom_status in request body."
    );
    assert!(!error.is_retryable() && !error.is_auth());
}

#[test]
fn rate_limit_is_plain_text_with_retry_after() {
    let headers = [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "3"), ("X-Ratelimit-Limit", "101")];
    let error = fail_with(reply(429, &headers, "limit exceeded\n"), |c| c.put_status(ME, "dnd", None));
    assert_eq!(
        error.kind(),
        &ApiErrorKind::Http { status: 429, id: None, message: Some("limit exceeded".into()), retry_after: Some(3) }
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    assert!(error.is_retryable());
    assert_eq!(
        error.to_string(),
        format!("API ERROR: PUT /api/v4/users/{ME}/status: 429 too many requests: limit exceeded (retry after 3 s)")
    );
}

#[test]
fn server_error_with_an_html_body_is_retryable() {
    let html = "<html><head><title>500 Internal Server Error</title></head><body><h1>oops</h1></body></html>";
    let error = fail_with(reply(500, &[("Content-Type", "text/html")], html), Client::get_me);
    assert_eq!(error.kind(), &ApiErrorKind::Http { status: 500, id: None, message: None, retry_after: None });
    assert_eq!(error.to_string(), "API ERROR: GET /api/v4/users/me: 500 internal server error");
    assert!(error.is_retryable() && error.retry_after().is_none());
    let error = fail_with(reply(502, &[], ""), Client::get_me);
    assert!(error.is_retryable());
}

#[test]
fn custom_statuses_disabled_is_not_implemented() {
    let body = r#"{"id":"api.custom_status.disabled","message":"Custom status feature has been disabled. Please contact your system administrator for details.","detailed_error":"","status_code":501}"#;
    let error = fail_with(json(501, body), |c| c.delete_custom_status(ME));
    assert!(error.is_not_implemented() && !error.is_retryable() && !error.is_auth());
    assert!(error.to_string().starts_with(&format!(
        "API ERROR: DELETE /api/v4/users/{ME}/status/custom: 501 api.custom_status.disabled: Custom status feature"
    )));
}

#[test]
fn app_error_texts_are_one_line_of_bounded_length() {
    // JSON escapes put a line break and a terminal control sequence into the message, and it goes on for 200 KB.
    let long = "x".repeat(200_000);
    let body = format!(r#"{{"id":"api.bad\nid","message":"first\r\nsecond \u001b[31mred {long}","status_code":500}}"#);
    let error = fail_with(json(500, &body), Client::get_me);
    let shown = error.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.len() < 1000, "{} bytes", shown.len());
    assert!(
        shown.starts_with("API ERROR: GET /api/v4/users/me: 500 api.bad id: first  second  [31mred xxx"),
        "{shown}"
    );
    assert!(shown.ends_with("..."), "{shown}");
    assert!(error.is_retryable());
}

/// The input with which the `server_response` fuzz target found that AppError messages could hold a line break.
#[test]
fn fuzz_regression_app_error_message_with_a_carriage_return() {
    let body = include_bytes!("../../fuzz/regressions/server_response/app_error_message_with_carriage_return.json");
    let (id, message) = client::error_text(body);
    assert_eq!(id, None);
    let message = message.expect("the message is kept");
    assert!(message.starts_with("Ivalid oren\": es_at") && !message.chars().any(char::is_control), "{message:?}");
}

#[test]
fn an_error_status_stays_the_error_even_with_an_unreadable_body() {
    let error = fail_with(raw("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 50\r\n\r\nshort"), Client::get_me);
    assert_eq!(error.status(), Some(503));
    assert!(error.is_retryable());
}

// ---------------------------------------------------------------------------------------------------------------
// Bodies that are not what they should be

#[test]
fn malformed_json_is_a_decode_error() {
    let error = fail_with(json(200, r#"{"id":"u1","username":"#), Client::get_me);
    assert!(matches!(error.kind(), ApiErrorKind::Decode { truncated: false, .. }), "{error:?}");
    assert_eq!(error.to_string(), "API ERROR: GET /api/v4/users/me: unexpected response: the body is not valid json");
    assert!(!error.is_retryable());
}

#[test]
fn wrong_types_are_a_decode_error() {
    let error = fail_with(json(200, r#"{"status":"dnd","manual":"yes"}"#), |c| c.get_status(ME));
    assert!(error.to_string().contains("the json is not a status"), "{error}");
    assert!(!error.is_retryable());
}

/// Bodies of the right size but the wrong shape: each is a clear decode error, never a panic, and not retried.
#[test]
fn wrong_types_and_missing_fields_are_clear_decode_errors() {
    let statuses = [
        (r#"{"status":["dnd"]}"#, "the json is not a status"),
        (r#"{"status":{"dnd":true}}"#, "the json is not a status"),
        (r#"{"status":"dnd","manual":"true"}"#, "the json is not a status"),
        (r#"{"status":"dnd","dnd_end_time":"1700000000"}"#, "the json is not a status"),
        (r#"{"status":"dnd","dnd_end_time":18446744073709551615}"#, "the json is not a status"),
        (r#"{"status":null}"#, "the status object has no status"),
        (r#"{"user_id":"u1"}"#, "the status object has no status"),
        ("[]", "the json is not a status"),
        (r#""dnd""#, "the json is not a status"),
        ("null", "the json is not a status"),
        ("42", "the json is not a status"),
        ("", "the body is not valid json"),
        ("\u{feff}{\"status\":\"dnd\"}", "the body is not valid json"),
    ];
    for (body, reason) in statuses {
        let error = fail_with(json(200, body), |c| c.get_status(ME));
        let prefix = format!("API ERROR: GET /api/v4/users/{ME}/status: unexpected response: {reason}");
        assert!(error.to_string().starts_with(&prefix), "{body}: {error}");
        assert!(!error.is_retryable(), "{body}");
    }
    let users = [
        (r#"{"id":null,"username":"alice"}"#, "the user has no id"),
        (r#"{"id":["u1"]}"#, "the json is not a user"),
        (r#"{"id":"u1","username":7}"#, "the json is not a user"),
        (r#"[{"id":"u1"}]"#, "the json is not a user"),
        (r#"{"id":"u1","props":{"customStatus":"x"}"#, "the body is not valid json"),
    ];
    for (body, reason) in users {
        let error = fail_with(json(200, body), Client::get_me);
        assert!(error.to_string().contains(reason), "{body}: {error}");
    }
}

/// 100,000 nested arrays, as a whole body, as an unknown field, inside `props` and inside the custom status
/// string: miniserde parses without recursion, so none of them may overflow a test thread's 2 MiB stack.
#[test]
fn deep_nesting_neither_overflows_the_stack_nor_hides_the_user() {
    const DEPTH: usize = 100_000;
    let nested = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let unclosed = "[".repeat(DEPTH);
    for body in [&nested, &unclosed, &format!(r#"{{"a":{nested}"#)] {
        let error = fail_with(json(200, body), Client::get_me);
        assert!(matches!(error.kind(), ApiErrorKind::Decode { truncated: false, .. }), "{error:?}");
    }
    let objects = format!("{}1{}", r#"{"a":"#.repeat(DEPTH), "}".repeat(DEPTH));
    let in_unknown_field = format!(r#"{{"id":"{ME}","future":{nested},"more":{objects},"username":"alice"}}"#);
    let in_props = format!(r#"{{"id":"{ME}","props":{{"deep":{nested},"customStatus":"{{\"text\":\"x\"}}"}}}}"#);
    let in_custom_status = user_body(&format!(r#""{{\"text\":{nested}}}""#));
    let expected = [("alice", None), ("", Some("x")), ("alice", None)];
    for (body, (username, text)) in [in_unknown_field, in_props, in_custom_status].iter().zip(expected) {
        let fake = scripted(vec![json(200, body)]);
        let user = client(&fake.url()).get_me().unwrap_or_else(|e| panic!("{e}"));
        requests(&fake);
        assert_eq!((user.id.as_str(), user.username.as_str()), (ME, username));
        assert_eq!(user.custom_status.map(|cs| cs.text).as_deref(), text);
    }
}

/// A string as large as a body may be is read whole; a 5 MB one is refused by size before any parsing.
#[test]
fn huge_strings_up_to_the_body_cap_are_read_and_beyond_it_refused() {
    let text = "t".repeat(1_000_000);
    let big = user_body(&format!(r#""{{\"emoji\":\"calendar\",\"text\":\"{text}\"}}""#));
    assert!(big.len() as u64 <= MAX_BODY_BYTES);
    let fake = scripted(vec![json(200, &big)]);
    let user = client(&fake.url()).get_me().unwrap();
    requests(&fake);
    assert_eq!(user.custom_status.unwrap().text.len(), 1_000_000);

    let five_mb = format!(r#"{{"id":"{ME}","username":"{}"}}"#, "u".repeat(5_000_000));
    let error = fail_with(json(200, &five_mb), Client::get_me);
    assert_eq!(error.kind(), &ApiErrorKind::TooLarge { limit: MAX_BODY_BYTES });
    // An error status with a 5 MB AppError message is still that status, with no message quoted.
    let app_error = format!(r#"{{"id":"api.x","message":"{}"}}"#, "m".repeat(5_000_000));
    let error = fail_with(json(503, &app_error), Client::get_me);
    assert_eq!(error.status(), Some(503));
    assert!(error.to_string().len() < 200, "{}", error.to_string().len());
}

#[test]
fn an_html_page_with_status_200_names_its_content_type() {
    let login_page = "<!doctype html><html><body>Please sign in</body></html>";
    let error = fail_with(reply(200, &[("Content-Type", "text/html; charset=utf-8")], login_page), Client::get_me);
    assert!(
        error.to_string().ends_with("the body is not valid json (content-type text/html; charset=utf-8)"),
        "{error}"
    );
}

#[test]
fn truncated_bodies_are_retryable_decode_errors() {
    let cut_length =
        raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":\"u1\"");
    let error = fail_with(cut_length, Client::get_me);
    assert_eq!(
        error.kind(),
        &ApiErrorKind::Decode { reason: "the connection closed after 10 of 100 bytes".into(), truncated: true }
    );
    assert!(error.is_retryable());

    let cut_chunk = raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{\"id\":\"u1\"");
    let error = fail_with(cut_chunk, Client::get_me);
    assert!(matches!(error.kind(), ApiErrorKind::Decode { truncated: true, .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[test]
fn chunked_bodies_are_read() {
    let body = user_body(r#""""#);
    let chunked =
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let fake = scripted(vec![raw(&chunked)]);
    assert_eq!(client(&fake.url()).get_me().unwrap().id, ME);
    requests(&fake);
}

#[test]
fn bodies_over_one_mebibyte_are_refused() {
    // Announced too large: refused without reading.
    let announced = raw("HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\n\r\n{");
    let error = fail_with(announced, Client::get_me);
    assert_eq!(error.kind(), &ApiErrorKind::TooLarge { limit: MAX_BODY_BYTES });
    assert_eq!(error.to_string(), "API ERROR: GET /api/v4/users/me: response body larger than 1048576 bytes");
    assert!(!error.is_retryable());

    // Not announced (ends at close): cut off at the limit.
    let mut endless = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n".to_vec();
    endless.resize(endless.len() + MAX_BODY_BYTES as usize + 1, b' ');
    let error = fail_with(Fault::Raw(endless), Client::get_me);
    assert_eq!(error.kind(), &ApiErrorKind::TooLarge { limit: MAX_BODY_BYTES });
}

#[test]
fn a_body_of_exactly_one_mebibyte_is_accepted() {
    let mut body = format!(r#"{{"id":"{ME}","username":"alice","padding":""#);
    body.push_str(&"x".repeat(MAX_BODY_BYTES as usize - body.len() - 2));
    body.push_str("\"}");
    assert_eq!(body.len() as u64, MAX_BODY_BYTES);
    let fake = scripted(vec![json(200, &body)]);
    assert_eq!(client(&fake.url()).get_me().unwrap().username, "alice");
    requests(&fake);
}

// ---------------------------------------------------------------------------------------------------------------
// Transport

#[test]
fn a_server_that_never_answers_times_out_at_the_read_timeout() {
    let fake = scripted(vec![Fault::NeverAnswer]);
    let timeouts =
        Timeouts { connect: Duration::from_secs(1), read: Duration::from_millis(300), total: Duration::from_secs(5) };
    let client = Client::new(&fake.url(), Secret::new(TOKEN), None, timeouts).unwrap();
    let started = Instant::now();
    let error = client.get_me().unwrap_err();
    let elapsed = started.elapsed();
    // The read timeout (0.3 s), not the total deadline (5 s), ended it: the error names the one that fired.
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(matches!(error.kind(), ApiErrorKind::Transport(_)), "{error:?}");
    assert!(error.to_string().contains("timed out after 0."), "{error}");
    assert!(error.is_retryable());
    assert_no_token(&error);
    requests(&fake);
}

#[test]
fn a_server_that_trickles_is_cut_off_at_the_total_deadline() {
    // The fake's own answer to get_me, one byte every 20 ms; a custom status of 4000 characters makes it more
    // than 4000 bytes long.
    let fake = scripted(vec![Fault::Trickle { interval: Duration::from_millis(20) }]);
    fake.set_custom_status_raw(&"a".repeat(4000));
    let timeouts =
        Timeouts { connect: Duration::from_secs(1), read: Duration::from_secs(2), total: Duration::from_millis(700) };
    let client = Client::new(&fake.url(), Secret::new(TOKEN), None, timeouts).unwrap();
    let started = Instant::now();
    let error = client.get_me().unwrap_err();
    let elapsed = started.elapsed();
    // Without the total deadline the trickle (20 ms a byte, every read in time) would go on for more than 80 s: ending far
    // sooner is the deadline's doing, however slow the machine.
    assert!(elapsed >= Duration::from_millis(650) && elapsed < Duration::from_secs(40), "{elapsed:?}");
    assert!(error.to_string().contains("timed out after"), "{error}");
    assert!(error.is_retryable());
    requests(&fake);
}

#[test]
fn connection_refused_is_a_retryable_transport_error() {
    let error = client(&dead_address()).get_me().unwrap_err();
    assert!(matches!(error.kind(), ApiErrorKind::Transport(_)), "{error:?}");
    assert!(error.to_string().to_lowercase().contains("refused"), "{error}");
    assert!(error.is_retryable());
}

/// Found by the fault table (tests/faults.rs): the resolver's own text named neither the host nor the step.
#[test]
fn a_host_that_does_not_resolve_is_named_in_a_retryable_error() {
    if ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"].iter().any(|v| std::env::var_os(v).is_some()) {
        eprintln!("skipped: a proxy from the environment would resolve the host, not this machine");
        return;
    }
    // RFC 6761: `.invalid` never resolves.
    let error = client("https://nonexistent.invalid:8065/mm").get_me().unwrap_err();
    assert!(matches!(error.kind(), ApiErrorKind::Transport(_)), "{error:?}");
    assert!(error.to_string().contains(": cannot resolve nonexistent.invalid: "), "{error}");
    assert!(error.is_retryable());
    assert_eq!(super::client::host_of("https://[::1]:8065"), "[::1]");
    assert_eq!(super::client::host_of("https://mm.example.com/sub"), "mm.example.com");
}

#[test]
fn redirects_are_not_followed_and_name_only_the_target_host() {
    let target = "https://sso.example.com:8443/login?next=/api/v4&session=s3cr3t-value";
    let error = fail_with(reply(302, &[("Location", target)], ""), Client::get_me);
    assert_eq!(
        error.kind(),
        &ApiErrorKind::Redirect { status: 302, location: Some("https://sso.example.com:8443".into()) }
    );
    assert_eq!(
        error.to_string(),
        "API ERROR: GET /api/v4/users/me: 302 redirect to https://sso.example.com:8443 not followed: set url to the server's final address"
    );
    assert!(!error.is_retryable() && !error.is_auth());

    // A relative redirect (e.g. to add a trailing slash) is not followed either.
    let error = fail_with(reply(301, &[("Location", "/login")], ""), Client::get_me);
    assert_eq!(error.kind(), &ApiErrorKind::Redirect { status: 301, location: None });
}

// ---------------------------------------------------------------------------------------------------------------
// The token stays secret

#[test]
fn the_token_never_appears_in_errors_or_debug_output() {
    // A server in developer mode echoes the token into detailed_error; a buggy proxy might echo it anywhere.
    let body = format!(
        r#"{{"id":"api.context.session_expired.app_error","message":"Invalid or expired session: token={TOKEN}","detailed_error":"token={TOKEN}","status_code":401}}"#
    );
    let error = fail_with(json(401, &body), Client::get_me);
    assert!(error.to_string().ends_with("Invalid or expired session: token=<redacted>"), "{error}");

    let error = fail_with(reply(400, &[], &format!("bad token {TOKEN}")), Client::get_me);
    assert!(error.to_string().ends_with("bad token <redacted>"), "{error}");

    // The token given as a user id by a swapped configuration.
    let error = fail_with(json(404, "{}"), |c| c.get_status(TOKEN));
    assert_eq!(error.path(), "/api/v4/users/<redacted>/status");

    let location = format!("https://{TOKEN}.example.com/");
    let error = fail_with(reply(302, &[("Location", &location)], ""), Client::get_me);
    assert!(error.to_string().contains("https://<redacted>.example.com"), "{error}");

    let client = client(&dead_address());
    assert!(!format!("{client:?}").contains(TOKEN));
    assert_no_token(&client.get_me().unwrap_err());
    assert_no_token(&client.get_status("../x").unwrap_err());
    let secret = Secret::new(TOKEN);
    assert_eq!((format!("{secret}"), format!("{secret:?}")), ("<redacted>".into(), "<redacted>".into()));
    assert_eq!(secret.expose(), TOKEN);
}

// ---------------------------------------------------------------------------------------------------------------
// Construction

#[test]
fn construction_checks_url_and_token() {
    let new = |url: &str, token: &str| Client::new(url, Secret::new(token), None, Timeouts::default());
    let error = new("http://mm.example.com", TOKEN).unwrap_err();
    assert!(error.to_string().starts_with("API ERROR: url must use https://"), "{error}");
    assert_eq!((error.method(), error.path()), (None, ""));
    assert_eq!(new("", TOKEN).unwrap_err().to_string(), "API ERROR: url is empty");
    assert_eq!(new("https://mm.example.com", "").unwrap_err().to_string(), "API ERROR: token is empty");
    for bad in [format!("{TOKEN}\n"), format!("Bearer {TOKEN}"), format!("{TOKEN}é")] {
        let error = new("https://mm.example.com", &bad).unwrap_err();
        assert_eq!(error.to_string(), "API ERROR: token contains spaces, control or non-ASCII characters");
    }
    let client = new("https://MM.example.com:8443/chat/", TOKEN).unwrap();
    assert_eq!(client.base_url(), "https://mm.example.com:8443/chat");
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &[u8]) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name =
            format!("mm-status-sync-client-{}-{}.pem", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn ca_file_problems_are_clear_errors() {
    let new = |path: &std::path::Path| {
        Client::new("https://mm.example.com", Secret::new(TOKEN), Some(path), Timeouts::default()).unwrap_err()
    };
    let missing = std::env::temp_dir().join("mm-status-sync-no-such-ca.pem");
    let error = new(&missing);
    assert!(matches!(error.kind(), ApiErrorKind::Invalid(_)));
    assert_eq!(
        error.to_string(),
        format!("API ERROR: ca-file {}: No such file or directory (os error 2)", missing.display())
    );

    let empty = TempFile::new(b"");
    assert!(new(&empty.0).to_string().ends_with("no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)"));

    let key_only = TempFile::new(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n");
    assert!(new(&key_only.0).to_string().contains("no certificate found"));

    let unterminated = TempFile::new(b"-----BEGIN CERTIFICATE-----\nMIIB\n");
    assert!(new(&unterminated.0).to_string().contains("not a valid PEM file"), "{}", new(&unterminated.0));

    let junk_certificate = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let not_a_certificate = TempFile::new(junk_certificate.as_bytes());
    let error = new(&not_a_certificate.0);
    assert!(error.to_string().contains("certificate 1 cannot be used as a root"), "{error}");

    let tls = TestTls::new();
    let good_then_bad = TempFile::new(format!("{}{junk_certificate}", tls.ca_pem()).as_bytes());
    assert!(new(&good_then_bad.0).to_string().contains("certificate 2 cannot be used as a root"));
}

// ---------------------------------------------------------------------------------------------------------------
// TLS

#[test]
fn https_with_a_private_ca_works_with_ca_file_and_fails_clearly_without() {
    let tls = TestTls::new();
    let fake = FakeMattermost::start_tls(&tls);
    fake.set_token(TOKEN);
    fake.respond_with(json(200, &user_body(r#""""#)));
    let client = Client::new(&fake.url(), Secret::new(TOKEN), Some(tls.ca_file()), quick()).unwrap();
    assert_eq!(client.get_me().unwrap().id, ME);
    let requests = requests(&fake);
    let request = requests.first().expect("request over tls");
    assert_eq!(request.request_line(), "GET /api/v4/users/me HTTP/1.1");
    assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));

    let error = Client::new(&fake.url(), Secret::new(TOKEN), None, quick()).unwrap().get_me().unwrap_err();
    assert_eq!(
        error.to_string(),
        "API ERROR: GET /api/v4/users/me: tls: certificate not trusted (UnknownIssuer); for a private CA set ca-file"
    );
    assert!(error.is_retryable());
    assert_eq!(fake.connections_accepted(), 2);
    assert_eq!(fake.calls().len(), 1, "no request may be sent over an untrusted connection");
}

#[test]
fn https_certificate_for_another_name_is_refused() {
    let tls = TestTls::for_names(&["mm.example.com"]);
    let fake = FakeMattermost::start_tls(&tls);
    let client = Client::new(&fake.url(), Secret::new(TOKEN), Some(tls.ca_file()), quick()).unwrap();
    let error = client.get_me().unwrap_err();
    assert!(error.to_string().contains("tls: certificate not valid for this host name"), "{error}");
    assert_eq!(fake.connections_accepted(), 1);
    assert!(fake.calls().is_empty());
}

#[test]
fn a_tls_server_that_never_handshakes_is_cut_off_at_the_deadline() {
    // The connection is made (the kernel's backlog takes it), and nobody ever answers the ClientHello.
    let tls = TestTls::new();
    let fake = FakeMattermost::start_tls(&tls);
    fake.set_fault(Fault::StopAccepting, FaultScope::all());
    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_millis(200),
        total: Duration::from_millis(800),
    };
    let client = Client::new(&fake.url(), Secret::new(TOKEN), None, timeouts).unwrap();
    let started = Instant::now();
    let error = client.get_me().unwrap_err();
    let elapsed = started.elapsed();
    // Nothing on the server side ends the wait: ending at all, and that soon, is the client's deadline.
    assert!(elapsed >= Duration::from_millis(750) && elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(error.to_string().contains("timed out after"), "{error}");
    assert!(error.is_retryable());
    assert_eq!(fake.connections_accepted(), 0);
}
