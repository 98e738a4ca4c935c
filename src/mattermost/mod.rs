//! placeholder until the client branch lands
use std::fmt;
#[derive(Clone)]
pub struct Secret(String);
impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
pub fn validate_base_url(s: &str) -> Result<String, String> {
    if s.starts_with("https://") || s.starts_with("http://127.0.0.1") {
        Ok(s.trim_end_matches('/').to_owned())
    } else {
        Err("https://".into())
    }
}
#[derive(Debug)]
pub struct ApiError;
impl ApiError {
    pub fn is_retryable(&self) -> bool {
        true
    }
    pub fn is_auth(&self) -> bool {
        false
    }
    pub fn is_not_implemented(&self) -> bool {
        false
    }
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}
impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("API ERROR")
    }
}
