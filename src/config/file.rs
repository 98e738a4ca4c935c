//! The `KEY=VALUE` config file: the format systemd's `EnvironmentFile=`, the snap hook and the NixOS module all
//! write, so one file can serve as environment and as `--config`.

use std::fmt;

/// One `MM_STATUS_SYNC_KEY=value` assignment, with its line number for error messages.
#[derive(Debug, PartialEq, Eq)]
pub struct Assignment {
    pub line: usize,
    pub name: String,
    pub value: Result<String, NotUtf8>,
}

/// A value whose bytes are not UTF-8; the error names the key, so the bytes themselves are not kept.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct NotUtf8;

#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub(crate) reason: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Parses the file's bytes. `#` starts a comment only at the beginning of a line (after blanks), so a value may
/// contain `#`; an optional `export ` prefix is allowed; a value wrapped in matching single or double quotes loses
/// them; inside double quotes `\\"` and `\\\\` stand for `"` and `\\` (as systemd's `EnvironmentFile=` reads them).
pub fn parse(bytes: &[u8]) -> Result<Vec<Assignment>, SyntaxError> {
    let mut out = Vec::new();
    for (i, raw_line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = trim_bytes(raw_line.strip_suffix(b"\r").unwrap_or(raw_line));
        if text.is_empty() || text[0] == b'#' {
            continue;
        }
        let text = text.strip_prefix(b"export ").map(trim_bytes).unwrap_or(text);
        let Some(eq) = text.iter().position(|&b| b == b'=') else {
            return Err(SyntaxError { line, reason: "expected KEY=VALUE" });
        };
        let name = trim_bytes(&text[..eq]);
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            return Err(SyntaxError { line, reason: "a key name may only hold letters, digits and _" });
        }
        let value = unquote(trim_bytes(&text[eq + 1..]));
        out.push(Assignment {
            line,
            name: String::from_utf8_lossy(name).into_owned(),
            value: String::from_utf8(value).map_err(|_| NotUtf8),
        });
    }
    Ok(out)
}

fn unquote(v: &[u8]) -> Vec<u8> {
    match v {
        [b'\'', inner @ .., b'\''] => inner.to_vec(),
        [b'"', inner @ .., b'"'] if !ends_in_escape(inner) => {
            let mut out = Vec::with_capacity(inner.len());
            let mut bytes = inner.iter();
            while let Some(&b) = bytes.next() {
                match (b, bytes.as_slice().first()) {
                    (b'\\', Some(&next @ (b'"' | b'\\'))) => {
                        out.push(next);
                        bytes.next();
                    }
                    _ => out.push(b),
                }
            }
            out
        }
        _ => v.to_vec(),
    }
}

/// Whether the closing quote of `"...\"` is escaped (an odd run of backslashes before it).
fn ends_in_escape(inner: &[u8]) -> bool {
    inner.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

/// `value` in double quotes, escaped so that [`parse`] reads it back unchanged, or `None` for a line break, which
/// the format cannot hold.
pub(crate) fn quote(value: &str) -> Option<String> {
    if value.contains(['\n', '\r']) {
        return None;
    }
    Some(format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &str) -> Result<(String, String), SyntaxError> {
        let mut all = parse(input.as_bytes())?;
        assert_eq!(all.len(), 1, "{input:?}");
        let a = all.remove(0);
        Ok((a.name, a.value.expect("utf-8")))
    }

    #[test]
    fn reads_the_forms_users_write() {
        let cases: &[(&str, (&str, &str))] = &[
            ("MM_STATUS_SYNC_URL=https://x", ("MM_STATUS_SYNC_URL", "https://x")),
            ("  MM_STATUS_SYNC_URL = https://x  ", ("MM_STATUS_SYNC_URL", "https://x")),
            (
                "MM_STATUS_SYNC_MEETING_MESSAGE=\" [In a meeting]\"",
                ("MM_STATUS_SYNC_MEETING_MESSAGE", " [In a meeting]"),
            ),
            ("MM_STATUS_SYNC_MEETING_MESSAGE=' said \"hi\" '", ("MM_STATUS_SYNC_MEETING_MESSAGE", " said \"hi\" ")),
            ("MM_STATUS_SYNC_MEETING_MESSAGE=#1 on call", ("MM_STATUS_SYNC_MEETING_MESSAGE", "#1 on call")),
            ("export MM_STATUS_SYNC_LOG=stderr", ("MM_STATUS_SYNC_LOG", "stderr")),
            ("MM_STATUS_SYNC_URL=", ("MM_STATUS_SYNC_URL", "")),
            ("MM_STATUS_SYNC_URL=\"\"", ("MM_STATUS_SYNC_URL", "")),
            ("MM_STATUS_SYNC_URL=\"", ("MM_STATUS_SYNC_URL", "\"")),
            ("K=\"a \\\"b\\\" c:\\\\ \\n\"", ("K", "a \"b\" c:\\ \\n")),
            ("K='a \\\" b'", ("K", "a \\\" b")),
            ("MM_STATUS_SYNC_URL=a=b\r", ("MM_STATUS_SYNC_URL", "a=b")),
        ];
        for (input, (name, value)) in cases {
            assert_eq!(one(input), Ok((name.to_string(), value.to_string())), "{input:?}");
        }
    }

    #[test]
    fn skips_comments_and_blank_lines_and_counts_lines() {
        let all = parse(b"# header\n\n   # indented\nMM_STATUS_SYNC_LOG=stderr\n").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].line, 4);
    }

    #[test]
    fn rejects_lines_that_are_not_assignments() {
        assert_eq!(parse(b"\nhello\n"), Err(SyntaxError { line: 2, reason: "expected KEY=VALUE" }));
        assert!(parse(b"MM STATUS=1").is_err());
        assert!(parse(b"=1").is_err());
    }

    #[test]
    fn keeps_non_utf8_values_as_errors_not_panics() {
        let all = parse(b"MM_STATUS_SYNC_URL=\xff\xfe\n").unwrap();
        assert_eq!(all[0].value, Err(NotUtf8));
    }

    #[test]
    fn quote_round_trips_through_parse() {
        let tricky =
            ["", " [In a meeting]", "it's", "say \"hi\"", " both ' and \" ", "#hash", "$HOME `x`", "ünïcødé 🎥"];
        for v in tricky.into_iter().chain(["back\\slash", "ends\\", "\\\"", "\""]) {
            let line = format!("K={}", quote(v).expect(v));
            assert_eq!(one(&line).unwrap().1, v, "{line}");
        }
        assert_eq!(quote("a\nb"), None);
    }
}
