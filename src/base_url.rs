//! The server address, checked before the token is ever sent to it: HTTPS, except plain HTTP to this machine, and
//! nothing (credentials, query, fragment) that would end up somewhere it should not. A leaf: the configuration
//! parses it, the client uses it, and both read it through the same parser (the `url` crate, which the HTTP client
//! uses too), so what was checked is what is used.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// A checked Mattermost base URL (`https://host[:port][/subpath]`).
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// The parsed form; the client joins API paths to [`BaseUrl::as_str`].
    url: Url,
    /// `scheme://host[:port][/subpath]`: scheme and host lowercased, a default port and trailing slashes dropped.
    text: String,
    /// The host is this machine (127.0.0.0/8, ::1, localhost): no proxy is used.
    loopback: bool,
}

impl BaseUrl {
    /// Checks a base URL and normalises it. `http://` is accepted only for loopback addresses (127.0.0.0/8, `::1`),
    /// where the token cannot be sniffed. Not for the name `localhost`: without a `localhost` line in /etc/hosts
    /// (some containers) the resolver asks DNS, search domains first, and the token would go in clear text to
    /// whatever `localhost.<search domain>` names. The error says what is wrong without repeating the input.
    pub(crate) fn parse(s: &str) -> Result<BaseUrl, String> {
        check_as_written(s)?;
        let url = Url::parse(s).map_err(|e| match e {
            url::ParseError::EmptyHost => "url has no host".to_owned(),
            url::ParseError::InvalidPort => "url port must be a number from 1 to 65535".to_owned(),
            url::ParseError::InvalidIpv6Address => {
                "url host is not a valid IPv6 address (or has an unclosed [ or garbage after the ])".to_owned()
            }
            url::ParseError::RelativeUrlWithoutBase => "url must start with https://".to_owned(),
            _ => "url host must be a DNS name (ASCII; xn-- form for international names) or an IP address".to_owned(),
        })?;
        let scheme = url.scheme();
        if scheme != "https" && scheme != "http" {
            return Err(format!("url scheme {scheme}:// is not supported, use https://"));
        }
        if url.port() == Some(0) {
            return Err("url port must be a number from 1 to 65535".into());
        }
        let loopback = match url.host() {
            None => return Err("url has no host".into()),
            Some(Host::Domain(name)) => {
                check_dns_name(name)?;
                name == "localhost"
            }
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        };
        if scheme == "http" && url.host_str() == Some("localhost") {
            return Err("url must use https:// or a loopback address: write http://127.0.0.1 instead of \
                        http://localhost (localhost may resolve elsewhere)"
                .into());
        }
        if scheme == "http" && !loopback {
            return Err("url must use https:// (http:// is allowed only for 127.0.0.1 and [::1])".into());
        }
        let path = url.path().trim_end_matches('/');
        if path.to_ascii_lowercase().ends_with("/api/v4") {
            return Err("url must be the server's address without /api/v4".into());
        }
        let host = url.host_str().unwrap_or_default();
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let text = format!("{scheme}://{host}{port}{path}");
        Ok(BaseUrl { url, text, loopback })
    }

    /// `scheme://host[:port][/subpath]`, without a trailing slash: API paths are appended to it.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the host is this machine, so that no proxy must be used.
    pub(crate) fn is_loopback(&self) -> bool {
        self.loopback
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// What the URL parser would quietly repair or drop, refused as written: the user must see the address that is used.
fn check_as_written(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("url is empty".into());
    }
    // The parser strips leading and trailing blanks and removes tabs and newlines anywhere.
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("url contains whitespace or control characters".into());
    }
    // `https:host` and `https:/host` parse as `https://host`.
    let Some((_, rest)) = s.split_once("://") else { return Err("url must start with https://".into()) };
    if rest.contains('?') || rest.contains('#') {
        return Err("url must not have a query (?) or fragment (#)".into());
    }
    // The parser reads a backslash as `/`: `https://host\evil` would not be the address the user meant.
    if rest.contains('\\') {
        return Err("url must not contain a backslash".into());
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    // `user:pass@` is dropped or sent as basic auth; the token authenticates.
    if authority.contains('@') {
        return Err("url must not contain a user name or password (@); the token authenticates".into());
    }
    // An international name would be turned into its xn-- form behind the user's back.
    if !authority.is_ascii() {
        return Err("url host must be a DNS name (ASCII; xn-- form for international names) or an IP address".into());
    }
    // `host:` parses as `host` on the default port.
    if authority.ends_with(':') {
        return Err("url port must be a number from 1 to 65535".into());
    }
    Ok(())
}

/// A name DNS can resolve: labels of letters, digits, `-` and `_`, none empty (so no trailing dot), at most 63
/// characters each and 253 in all.
fn check_dns_name(name: &str) -> Result<(), String> {
    if name.len() > 253 || name.split('.').any(|label| label.len() > 63) {
        return Err("url host is too long for a DNS name (253 characters, 63 between dots)".into());
    }
    let label_ok =
        |label: &str| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name.split('.').all(label_ok) {
        return Err("url host must be a DNS name (ASCII; xn-- form for international names) or an IP address".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_urls_are_normalised() {
        let cases = [
            ("https://mm.example.com", "https://mm.example.com", false),
            ("https://mm.example.com/", "https://mm.example.com", false),
            ("https://mm.example.com:8065/team-chat//", "https://mm.example.com:8065/team-chat", false),
            ("HTTPS://MM.Example.COM/Sub", "https://mm.example.com/Sub", false),
            // The default port is dropped: the address is the same.
            ("https://10.0.0.5:443", "https://10.0.0.5", false),
            ("https://10.0.0.5:8443", "https://10.0.0.5:8443", false),
            ("https://[2001:DB8::1]:8443/", "https://[2001:db8::1]:8443", false),
            ("https://my_host.internal", "https://my_host.internal", false),
            (
                &format!("https://{}.example.com", "a".repeat(63)),
                &format!("https://{}.example.com", "a".repeat(63)),
                false,
            ),
            ("http://127.0.0.1:8065", "http://127.0.0.1:8065", true),
            ("http://127.4.5.6/", "http://127.4.5.6", true),
            ("http://[::1]:8065", "http://[::1]:8065", true),
            ("https://localhost", "https://localhost", true),
            ("https://LocalHost:8443/mm", "https://localhost:8443/mm", true),
        ];
        for (input, url, loopback) in cases {
            let base = BaseUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((base.as_str(), base.is_loopback()), (url, loopback), "{input}");
        }
        let longest_label = format!("https://{}.example.com", "a".repeat(63));
        assert_eq!(BaseUrl::parse(&longest_label).unwrap().as_str(), longest_label);
    }

    #[test]
    fn rejected_urls_say_why() {
        let cases = [
            ("", "empty"),
            ("mm.example.com", "must start with https://"),
            ("ftp://mm.example.com", "not supported"),
            ("http://mm.example.com", "must use https://"),
            ("http://localhost.example.com", "must use https://"),
            ("http://localhost:8065/mm/", "write http://127.0.0.1 instead of http://localhost"),
            ("http://LOCALHOST", "write http://127.0.0.1 instead of http://localhost"),
            ("http://128.0.0.1", "must use https://"),
            ("http://[::2]", "must use https://"),
            ("https://", "no host"),
            ("https://:8065", "no host"),
            ("https://user:secret@mm.example.com", "user name or password"),
            ("https://@mm.example.com", "user name or password"),
            ("https:mm.example.com", "must start with https://"),
            ("https:/mm.example.com", "must start with https://"),
            ("https://mm.example.com/?access_token=x", "query"),
            ("https://mm.example.com/#x", "fragment"),
            ("https://mm.example.com:0", "port"),
            ("https://mm.example.com:65536", "port"),
            ("https://mm.example.com:+80", "port"),
            ("https://mm.example.com:", "port"),
            ("https://mm example.com", "whitespace"),
            ("https://mm.example.com\n", "whitespace"),
            ("https://mm..example.com", "DNS name"),
            ("https://mm.example.com.", "DNS name"),
            ("https://mätt.example.com", "DNS name"),
            ("https://[::1", "unclosed"),
            ("https://[nope]:1", "IPv6"),
            ("https://[::1]x", "garbage"),
            ("https://mm.example.com\\x", "backslash"),
            ("https://mm.example.com/api/v4/", "without /api/v4"),
            (&format!("https://{}.example.com", "a".repeat(64)), "too long"),
            (&format!("https://{}", "a.".repeat(126) + "com"), "too long"),
            (&format!("https://{}", "h".repeat(100_000)), "too long"),
        ];
        for (input, expected) in cases {
            let err = BaseUrl::parse(input).expect_err(input);
            assert!(err.contains(expected), "{input:?}: {err:?} should mention {expected:?}");
            assert!(!err.contains("secret"), "{err}");
            assert!(err.starts_with(char::is_lowercase) && !err.ends_with('.'), "style: {err}");
        }
    }
}
