//! Checks the server address before the token is ever sent to it: HTTPS, except plain HTTP to this machine, and
//! nothing (credentials, query, fragment) that would end up somewhere it should not.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A checked base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BaseUrl {
    /// `scheme://host[:port][/subpath]`, scheme and host lowercased, no trailing slash.
    pub url: String,
    /// The host is this machine (127.0.0.0/8, ::1, localhost): no proxy is used.
    pub loopback: bool,
}

/// Checks a Mattermost base URL (`https://host[:port][/subpath]`) and returns it normalised: scheme and host
/// lowercased, trailing slashes removed. `http://` is accepted only for loopback addresses (127.0.0.0/8, `::1`),
/// where the token cannot be sniffed. Not for the name `localhost`: without a `localhost` line in /etc/hosts (some
/// containers) the resolver asks DNS, search domains first, and the token would go in clear text to whatever
/// `localhost.<search domain>` names. The error says what is wrong without repeating the input.
pub fn validate_base_url(s: &str) -> Result<String, String> {
    parse_base_url(s).map(|base| base.url)
}

pub(super) fn parse_base_url(s: &str) -> Result<BaseUrl, String> {
    if s.is_empty() {
        return Err("url is empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("url contains whitespace or control characters".into());
    }
    let (scheme, rest) = s.split_once("://").ok_or("url must start with https://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!("url scheme {scheme}:// is not supported, use https://"));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err("url must not have a query (?) or fragment (#)".into());
    }
    if rest.contains('\\') {
        return Err("url must not contain a backslash".into());
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if authority.contains('@') {
        return Err("url must not contain a user name or password (@); the token authenticates".into());
    }
    let (host, port) = split_host_port(authority)?;
    if scheme == "http" && host == "localhost" {
        return Err("url must use https:// or a loopback address: write http://127.0.0.1 instead of http://localhost \
                    (localhost may resolve elsewhere)"
            .into());
    }
    let loopback = host == "localhost" || is_loopback_address(&host);
    if scheme == "http" && !loopback {
        return Err("url must use https:// (http:// is allowed only for 127.0.0.1 and [::1])".into());
    }
    let path = path.trim_end_matches('/');
    if path.to_ascii_lowercase().ends_with("/api/v4") {
        return Err("url must be the server's address without /api/v4".into());
    }
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Ok(BaseUrl { url: format!("{scheme}://{host}{port}{path}"), loopback })
}

/// Splits `host[:port]` or `[v6]:port`; returns the host lowercased (IPv6 kept in brackets).
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (v6, after) = bracketed.split_once(']').ok_or("url has an unclosed [ in its host")?;
        v6.parse::<Ipv6Addr>().map_err(|_| "url host is not a valid IPv6 address")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("url has garbage after its IPv6 host")?),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("url has no host".into());
        }
        if host.len() > 253 || host.split('.').any(|label| label.len() > 63) {
            return Err("url host is too long for a DNS name (253 characters, 63 between dots)".into());
        }
        if !host.split('.').all(|label| {
            !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) {
            return Err(
                "url host must be a DNS name (ASCII; xn-- form for international names) or an IP address".into()
            );
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err("url port must be a number from 1 to 65535".into()),
        },
    };
    Ok((host, port))
}

/// Whether `host` (lowercased, IPv6 in brackets) is a loopback address.
fn is_loopback_address(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
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
            ("https://10.0.0.5:443", "https://10.0.0.5:443", false),
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
            assert_eq!(parse_base_url(input), Ok(BaseUrl { url: url.into(), loopback }), "{input}");
            assert_eq!(validate_base_url(input).as_deref(), Ok(url), "{input}");
        }
        let longest_label = format!("https://{}.example.com", "a".repeat(63));
        assert_eq!(validate_base_url(&longest_label), Ok(longest_label.clone()));
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
            let err = validate_base_url(input).expect_err(input);
            assert!(err.contains(expected), "{input:?}: {err:?} should mention {expected:?}");
            assert!(!err.contains("secret"), "{err}");
            assert!(err.starts_with(char::is_lowercase) && !err.ends_with('.'), "style: {err}");
        }
    }
}
