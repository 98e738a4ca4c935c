//! The JSON the server sends and expects, kept apart from the shared model so that leniency (optional fields,
//! unknown fields, values of a surprising type) is decided here, field by field, and nowhere else.
//!
//! miniserde ignores unknown keys (and whatever nested objects or arrays they hold) but fails a whole struct on a
//! known key of the wrong type; [`Tolerant`] marks the fields where a wrong type must not cost the whole response.

use miniserde::de::{Map, Seq, Visitor};
use miniserde::{Deserialize, Serialize, json};

use super::error::{ApiError, ApiErrorKind};
use crate::model::{Availability, CustomStatus, Preference, User, UserStatus, ZERO_TIME};

/// A value kept when it has the expected JSON type and dropped (as if absent) when it does not.
///
/// Only the top-level type is forgiven: a map accepted by `T` whose insides then fail still fails.
struct Tolerant<T>(Option<T>);

impl<T: Deserialize> Deserialize for Tolerant<T> {
    fn begin(out: &mut Option<Self>) -> &mut dyn Visitor {
        out.insert(Tolerant(None))
    }
}

impl<T: Deserialize> Visitor for Tolerant<T> {
    fn null(&mut self) -> miniserde::Result<()> {
        let _ = T::begin(&mut self.0).null();
        Ok(())
    }

    fn boolean(&mut self, b: bool) -> miniserde::Result<()> {
        let _ = T::begin(&mut self.0).boolean(b);
        Ok(())
    }

    fn string(&mut self, s: &str) -> miniserde::Result<()> {
        let _ = T::begin(&mut self.0).string(s);
        Ok(())
    }

    fn negative(&mut self, n: i64) -> miniserde::Result<()> {
        let _ = T::begin(&mut self.0).negative(n);
        Ok(())
    }

    fn nonnegative(&mut self, n: u64) -> miniserde::Result<()> {
        let _ = T::begin(&mut self.0).nonnegative(n);
        Ok(())
    }

    fn float(&mut self, n: f64) -> miniserde::Result<()> {
        let _ = T::begin(&mut self.0).float(n);
        Ok(())
    }

    fn seq(&mut self) -> miniserde::Result<Box<dyn Seq + '_>> {
        match T::begin(&mut self.0).seq() {
            Ok(seq) => Ok(seq),
            Err(_) => <dyn Visitor>::ignore().seq(),
        }
    }

    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        match T::begin(&mut self.0).map() {
            Ok(map) => Ok(map),
            Err(_) => <dyn Visitor>::ignore().map(),
        }
    }
}

/// `model.User`, the few fields the daemon needs. `props` is a Go `map[string]string`, so only strings are
/// expected in it, but a non-string anywhere in it is dropped rather than fatal.
#[derive(Deserialize)]
struct WireUser {
    id: Option<String>,
    username: Option<String>,
    props: Option<Tolerant<WireProps>>,
}

#[derive(Deserialize)]
struct WireProps {
    #[serde(rename = "customStatus")]
    custom_status: Option<Tolerant<String>>,
}

/// `model.CustomStatus` as stored in `props.customStatus`. Go's `json.Marshal` always writes all four keys; a
/// missing or null `expires_at` is Go's zero time, as the server would read it.
#[derive(Deserialize)]
struct WireCustomStatus {
    emoji: Option<String>,
    text: Option<String>,
    duration: Option<String>,
    expires_at: Option<String>,
}

/// `model.Status`. `status` is required; `manual` and `dnd_end_time` are always written by the server but default
/// to "automatic" and "no expiry" should a proxy or an old server leave them out.
#[derive(Deserialize)]
struct WireStatus {
    status: Option<String>,
    manual: Option<bool>,
    dnd_end_time: Option<i64>,
}

/// `model.AppError`, the body of most error responses.
#[derive(Deserialize)]
struct WireAppError {
    id: Option<Tolerant<String>>,
    message: Option<Tolerant<String>>,
}

/// `model.Preference`. Every field is always written by the server; an entry missing one is dropped, not fatal.
#[derive(Deserialize)]
struct WirePreference {
    category: Option<Tolerant<String>>,
    name: Option<Tolerant<String>>,
    value: Option<Tolerant<String>>,
}

/// One entry of a preferences PUT or delete body.
#[derive(Serialize)]
struct PreferenceBody<'a> {
    user_id: &'a str,
    category: &'a str,
    name: &'a str,
    value: &'a str,
}

/// Most entries the server takes in one preferences PUT or delete (`maxUpdatePreferences`).
pub(super) const MAX_PREFERENCES_PER_REQUEST: usize = 100;
/// Longest category and name the server stores (`Preference.IsValid`), in bytes.
const MAX_PREFERENCE_KEY_BYTES: usize = 32;
/// Longest value, in runes: 20000 on current servers, 2000 on older ones; the smaller one holds everywhere.
const MAX_PREFERENCE_VALUE_RUNES: usize = 2000;

/// Why the server would refuse this entry (`Preference.IsValid`), if it would.
pub(super) fn preference_problem(p: &Preference) -> Option<String> {
    if p.category.is_empty() || p.category.len() > MAX_PREFERENCE_KEY_BYTES {
        return Some(format!("preference category {:?} is not 1 to 32 bytes", p.category));
    }
    if p.name.len() > MAX_PREFERENCE_KEY_BYTES {
        return Some(format!("preference name {:?} is longer than 32 bytes", p.name));
    }
    if p.value.chars().count() > MAX_PREFERENCE_VALUE_RUNES {
        return Some(format!("preference value of {} is longer than 2000 characters", p.name));
    }
    None
}

/// Whether `GET .../preferences/{category}` can read this category back: the router takes `[A-Za-z0-9_]+` and
/// `RequireCategory` then wants `^[a-z0-9]+([a-z\-\_0-9]+|(__)?)[a-z0-9]+$`.
pub(super) fn is_readable_category(category: &str) -> bool {
    let b = category.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (2..=MAX_PREFERENCE_KEY_BYTES).contains(&b.len())
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter().all(|&c| edge(c) || c == b'_')
}

/// The server's answer for a category without entries: 404 with its own id. Any other 404 (a proxy, a path that
/// is no route) stays an error.
pub(super) fn is_empty_category(e: &ApiError) -> bool {
    matches!(e.kind(), ApiErrorKind::Http { status: 404, id: Some(id), .. }
        if id == "api.preference.preferences_category.get.app_error")
}

/// The body of a preferences PUT or delete: a JSON array of `{user_id, category, name, value}`.
pub(super) fn preferences_body(user_id: &str, entries: &[Preference]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|p| json::to_string(&PreferenceBody { user_id, category: &p.category, name: &p.name, value: &p.value }))
        .collect();
    format!("[{}]", items.join(","))
}

/// Parses `GET .../preferences/{category}`: entries with a field missing or of the wrong type are left out.
pub(super) fn decode_preferences(body: &str) -> Result<Vec<Preference>, String> {
    let wire: Vec<Tolerant<WirePreference>> =
        json::from_str(body).map_err(|_| shape_error(body, "a list of preferences"))?;
    Ok(wire
        .into_iter()
        .filter_map(|t| t.0)
        .filter_map(|p| {
            let text = |f: Option<Tolerant<String>>| f.and_then(|t| t.0);
            Some(Preference { category: text(p.category)?, name: text(p.name)?, value: text(p.value)? })
        })
        .collect())
}

/// Body of `PUT /users/{id}/status` without an expiry.
#[derive(Serialize)]
struct StatusBody<'a> {
    user_id: &'a str,
    status: &'a str,
}

/// Body of `PUT /users/{id}/status` for a timed DND; `dnd_end_time` in seconds since the epoch.
#[derive(Serialize)]
struct TimedStatusBody<'a> {
    user_id: &'a str,
    status: &'a str,
    dnd_end_time: i64,
}

/// The body of `PUT /users/{id}/status`; `dnd_end_time` is sent only when given.
pub(super) fn status_body(user_id: &str, status: &str, dnd_end_time: Option<i64>) -> String {
    match dnd_end_time {
        None => json::to_string(&StatusBody { user_id, status }),
        Some(dnd_end_time) => json::to_string(&TimedStatusBody { user_id, status, dnd_end_time }),
    }
}

/// The body of `PUT /users/{id}/status/custom`: all four fields, exactly as given.
pub(super) fn custom_status_body(status: &CustomStatus) -> String {
    json::to_string(status)
}

/// Parses `GET /users/{id}` and `/users/me`.
pub(super) fn decode_user(body: &str) -> Result<User, String> {
    let wire: WireUser = json::from_str(body).map_err(|_| shape_error(body, "a user"))?;
    let id = wire.id.filter(|id| !id.is_empty()).ok_or("the user has no id")?;
    let raw_custom_status = wire.props.and_then(|p| p.0).and_then(|p| p.custom_status);
    let custom_status = match raw_custom_status {
        None => None,
        Some(Tolerant(Some(raw))) => parse_custom_status(&raw),
        Some(Tolerant(None)) => {
            log::warn!("ignoring props.customStatus of user {id}: not a JSON string");
            None
        }
    };
    Ok(User { id, username: wire.username.unwrap_or_default(), custom_status })
}

/// Parses the JSON-encoded string in `props.customStatus`. Empty or unparsable means no custom status, as for the
/// server; so does one with neither emoji nor text, which clients show as nothing and the server refuses to store.
pub(super) fn parse_custom_status(raw: &str) -> Option<CustomStatus> {
    if raw.trim().is_empty() {
        return None;
    }
    let wire: WireCustomStatus = json::from_str(raw).ok()?;
    let status = CustomStatus {
        emoji: wire.emoji.unwrap_or_default(),
        text: wire.text.unwrap_or_default(),
        duration: wire.duration.unwrap_or_default(),
        expires_at: wire.expires_at.unwrap_or_else(|| ZERO_TIME.to_owned()),
    };
    (!status.emoji.is_empty() || !status.text.is_empty()).then_some(status)
}

/// Parses `GET`/`PUT /users/{id}/status`.
pub(super) fn decode_status(body: &str) -> Result<UserStatus, String> {
    let wire: WireStatus = json::from_str(body).map_err(|_| shape_error(body, "a status"))?;
    let status = wire.status.filter(|s| !s.is_empty()).ok_or("the status object has no status")?;
    Ok(UserStatus {
        status: Availability::parse(&status),
        manual: wire.manual.unwrap_or(false),
        dnd_end_time: wire.dnd_end_time.unwrap_or(0),
    })
}

/// The id and message of an AppError body; both `None` when the body is something else.
pub(super) fn decode_app_error(body: &str) -> (Option<String>, Option<String>) {
    match json::from_str::<WireAppError>(body) {
        Ok(e) => {
            let text = |f: Option<Tolerant<String>>| f.and_then(|t| t.0).filter(|s| !s.trim().is_empty());
            (text(e.id), text(e.message))
        }
        Err(_) => (None, None),
    }
}

/// Says whether `body` is not JSON at all or JSON of the wrong shape; miniserde's error carries no detail.
fn shape_error(body: &str, expected: &str) -> String {
    match json::from_str::<json::Value>(body) {
        Ok(_) => format!("the json is not {expected} (a field is missing or has the wrong type)"),
        Err(_) => "the body is not valid json".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(emoji: &str, text: &str, duration: &str, expires_at: &str) -> CustomStatus {
        CustomStatus {
            emoji: emoji.into(),
            text: text.into(),
            duration: duration.into(),
            expires_at: expires_at.into(),
        }
    }

    /// A `GET /users/me` body with `props` as given; the rest is what a 9.x server sends, unknown fields included.
    fn user_json(props: &str) -> String {
        format!(
            r#"{{"id":"u1xq5rj8bbyzmg3ifsr3j4c6ya","create_at":1700000000000,"update_at":1700000000001,"delete_at":0,
            "username":"alice","auth_data":"","auth_service":"","email":"alice@example.com","nickname":"",
            "first_name":"Alice","last_name":"","position":"","roles":"system_user","locale":"en",
            "notify_props":{{"channel":"true","desktop":"mention","push":"mention"}},
            "timezone":{{"automaticTimezone":"Europe/Paris","manualTimezone":"","useAutomaticTimezone":"true"}},
            "disable_welcome_email":false,"last_password_update":1700000000000,"mfa_active":false,
            "future_field":[{{"nested":[1,2,{{"deep":null}}]}},"x",3.5,true]{props}}}"#
        )
    }

    fn custom_status_of(props: &str) -> Option<CustomStatus> {
        let user = decode_user(&user_json(props)).unwrap();
        assert_eq!((user.id.as_str(), user.username.as_str()), ("u1xq5rj8bbyzmg3ifsr3j4c6ya", "alice"));
        user.custom_status
    }

    #[test]
    fn user_custom_status_is_parsed_from_the_json_string_in_props() {
        let props = r#","props":{"customStatus":"{\"emoji\":\"calendar\",\"text\":\"In a meeting\",\"duration\":\"one_hour\",\"expires_at\":\"2025-01-01T10:00:00Z\"}","last_search_pointer":"3"}"#;
        assert_eq!(custom_status_of(props), Some(cs("calendar", "In a meeting", "one_hour", "2025-01-01T10:00:00Z")));
    }

    #[test]
    fn user_without_usable_custom_status_has_none() {
        let cases = [
            "",                                                   // props absent (omitempty)
            r#","props":null"#,                                   // null props
            r#","props":{}"#,                                     // no customStatus key
            r#","props":{"customStatus":""}"#,                    // cleared by DELETE
            r#","props":{"customStatus":"   "}"#,                 // blank
            r#","props":{"customStatus":"{not json"}"#,           // unparsable
            r#","props":{"customStatus":"null"}"#,                // JSON but not an object
            r#","props":{"customStatus":"{\"emoji\":5}"}"#,       // wrong type inside
            r#","props":{"customStatus":"{\"duration\":\"\"}"}"#, // neither emoji nor text
            r#","props":{"customStatus":{"emoji":"x"}}"#,         // not a string: dropped, user kept
            r#","props":{"customStatus":42}"#,
            r#","props":{"customStatus":["x"]}"#,
            r#","props":"not a map""#, // props of the wrong type: dropped, user kept
            r#","props":[1,2]"#,
        ];
        for props in cases {
            assert_eq!(custom_status_of(props), None, "{props}");
        }
    }

    #[test]
    fn non_string_props_do_not_hide_the_custom_status() {
        let props = r#","props":{"a":1,"b":{"c":[true,null]},"customStatus":"{\"emoji\":\"x\",\"text\":\"\",\"duration\":\"\",\"expires_at\":\"0001-01-01T00:00:00Z\"}","d":[{}]}"#;
        assert_eq!(custom_status_of(props), Some(cs("x", "", "", ZERO_TIME)));
    }

    #[test]
    fn custom_status_missing_fields_read_as_the_server_reads_them() {
        assert_eq!(parse_custom_status(r#"{"text":"busy"}"#), Some(cs("", "busy", "", ZERO_TIME)));
        assert_eq!(
            parse_custom_status(r#"{"emoji":"e","text":"t","duration":"today","expires_at":null,"extra":{"x":[]}}"#),
            Some(cs("e", "t", "today", ZERO_TIME))
        );
        // Kept verbatim, offset and fraction included, so that putting it back sends what was read.
        assert_eq!(
            parse_custom_status(
                r#"{"emoji":"e","text":"t","duration":"date_and_time","expires_at":"2030-05-01T10:00:00.5+02:00"}"#
            ),
            Some(cs("e", "t", "date_and_time", "2030-05-01T10:00:00.5+02:00"))
        );
    }

    #[test]
    fn user_shape_errors() {
        assert_eq!(decode_user(r#"{"username":"alice"}"#), Err("the user has no id".into()));
        assert_eq!(decode_user(r#"{"id":"","username":"alice"}"#), Err("the user has no id".into()));
        assert!(decode_user(r#"{"id":7}"#).unwrap_err().contains("wrong type"));
        assert!(decode_user(r#"{"id":"x""#).unwrap_err().contains("not valid json"));
        assert!(decode_user("<html>").unwrap_err().contains("not valid json"));
        assert_eq!(
            decode_user(r#"{"id":"x"}"#).unwrap(),
            User { id: "x".into(), username: "".into(), custom_status: None }
        );
    }

    #[test]
    fn status_parsing() {
        let get = "{\"user_id\":\"u1\",\"status\":\"dnd\",\"manual\":true,\"last_activity_at\":1700000000000,\"dnd_end_time\":1700003600,\"active_channel\":\"c\"}\n";
        assert_eq!(
            decode_status(get),
            Ok(UserStatus { status: Availability::Dnd, manual: true, dnd_end_time: 1700003600 })
        );
        assert_eq!(
            decode_status(r#"{"status":"away"}"#),
            Ok(UserStatus { status: Availability::Away, manual: false, dnd_end_time: 0 })
        );
        assert_eq!(
            decode_status(r#"{"status":"online","dnd_end_time":-60,"manual":null}"#),
            Ok(UserStatus { status: Availability::Online, manual: false, dnd_end_time: -60 })
        );
        assert!(decode_status(r#"{"manual":true}"#).unwrap_err().contains("no status"));
        assert!(decode_status(r#"{"status":5}"#).unwrap_err().contains("wrong type"));
        assert!(decode_status(r#"{"status":"dnd","dnd_end_time":1.5}"#).unwrap_err().contains("wrong type"));
        assert!(decode_status("").unwrap_err().contains("not valid json"));
    }

    #[test]
    fn app_error_parsing() {
        let body = r#"{"id":"api.context.session_expired.app_error","message":"Invalid or expired session, please login again.","detailed_error":"token=abc","request_id":"r","status_code":401,"is_oauth":false}"#;
        assert_eq!(
            decode_app_error(body),
            (
                Some("api.context.session_expired.app_error".into()),
                Some("Invalid or expired session, please login again.".into())
            )
        );
        assert_eq!(decode_app_error("limit exceeded\n"), (None, None));
        assert_eq!(decode_app_error(r#"{"id":3,"message":"m"}"#), (None, Some("m".into())));
        assert_eq!(decode_app_error(r#"{"message":""}"#), (None, None));
    }

    #[test]
    fn preferences_parsing_is_lenient_per_entry() {
        let body = r#"[{"user_id":"u1","category":"mm_status_sync","name":"a","value":"{\"x\":1}"},
            {"user_id":"u1","category":"mm_status_sync","name":5,"value":"dropped"},
            {"category":"mm_status_sync","name":"b"},
            "not an object",
            {"user_id":"u1","category":"mm_status_sync","name":"","value":"","extra":[1,{}]}]"#;
        let p = |n: &str, v: &str| Preference { category: "mm_status_sync".into(), name: n.into(), value: v.into() };
        assert_eq!(decode_preferences(body), Ok(vec![p("a", "{\"x\":1}"), p("", "")]));
        assert_eq!(decode_preferences("[]"), Ok(vec![]));
        assert!(decode_preferences(r#"{"status":"OK"}"#).unwrap_err().contains("wrong type"));
        assert!(decode_preferences("nope").unwrap_err().contains("not valid json"));
    }

    #[test]
    fn preference_limits_and_readable_categories() {
        let p = |c: &str, n: &str, v: &str| Preference { category: c.into(), name: n.into(), value: v.into() };
        assert_eq!(preference_problem(&p("mm_status_sync", &"n".repeat(32), &"é".repeat(2000))), None);
        assert_eq!(preference_problem(&p("mm_status_sync", "", "")), None);
        for bad in
            [p("", "a", ""), p(&"c".repeat(33), "a", ""), p("c", &"n".repeat(33), ""), p("c", "n", &"é".repeat(2001))]
        {
            assert!(preference_problem(&bad).is_some(), "{bad:?}");
        }
        for ok in ["mm_status_sync", "ab", "a__b", "custom_status"] {
            assert!(is_readable_category(ok), "{ok}");
        }
        for bad in ["", "a", "mm-status-sync", "Upper", "_ab", "ab_", "a/b", &"c".repeat(33)] {
            assert!(!is_readable_category(bad), "{bad}");
        }
    }

    #[test]
    fn request_bodies() {
        assert_eq!(status_body("u1", "online", None), r#"{"user_id":"u1","status":"online"}"#);
        assert_eq!(
            status_body("u1", "dnd", Some(1_700_003_600)),
            r#"{"user_id":"u1","status":"dnd","dnd_end_time":1700003600}"#
        );
        let entry = Preference { category: "c".into(), name: "n".into(), value: "{\"a\":\"é\"}".into() };
        assert_eq!(
            preferences_body("u1", &[entry.clone(), entry]),
            r#"[{"user_id":"u1","category":"c","name":"n","value":"{\"a\":\"é\"}"},{"user_id":"u1","category":"c","name":"n","value":"{\"a\":\"é\"}"}]"#
        );
        assert_eq!(
            custom_status_body(&cs("calendar", "In a \"meeting\"", "", ZERO_TIME)),
            r#"{"emoji":"calendar","text":"In a \"meeting\"","duration":"","expires_at":"0001-01-01T00:00:00Z"}"#
        );
    }
}
