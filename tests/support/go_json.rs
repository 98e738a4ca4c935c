//! Just enough of Go's `encoding/json` for the fake server to accept and reject request bodies exactly where
//! Mattermost does (first value only like `json.Decoder.Decode`, case-insensitive field names, `null` leaves a field
//! alone, an integer field refuses `1.0`) and to write strings the way `json.Marshal` does (`<`, `>`, `&` escaped).
//!
//! Hand-written rather than miniserde so the fake does not inherit the client's JSON library and its quirks.

/// A parsed JSON value. Numbers keep their literal text so integer fields can refuse fractions like Go does, and
/// objects keep their key order and duplicates.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Why a body is not the JSON a field wanted; the fake only needs to know that it failed.
#[derive(Debug, PartialEq, Eq)]
pub struct JsonError(pub String);

/// `json.NewDecoder(body).Decode(&v)`: the first JSON value of `input`; whatever follows it is never looked at.
/// Empty or blank input is an error (`io.EOF`).
pub fn decode_first(input: &str) -> Result<Json, JsonError> {
    let mut parser = Parser { b: input.as_bytes(), pos: 0, depth: 0 };
    parser.skip_ws();
    if parser.pos == parser.b.len() {
        return Err(JsonError("EOF".into()));
    }
    parser.value()
}

/// `json.Unmarshal`: exactly one JSON value, optionally surrounded by whitespace.
pub fn parse_complete(input: &str) -> Result<Json, JsonError> {
    let mut parser = Parser { b: input.as_bytes(), pos: 0, depth: 0 };
    parser.skip_ws();
    let value = parser.value()?;
    parser.skip_ws();
    if parser.pos != parser.b.len() {
        return Err(JsonError(format!("invalid character after top-level value at byte {}", parser.pos)));
    }
    Ok(value)
}

impl Json {
    /// The value Go's decoder would put into the struct field tagged `name`: the last key matching it, exactly or
    /// ignoring case. `None` when the field is absent (or `self` is not an object).
    pub fn field(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => {
                entries.iter().rev().find(|(k, _)| k == name || k.to_lowercase() == name.to_lowercase()).map(|e| &e.1)
            }
            _ => None,
        }
    }

    /// Go's check that a value can be decoded into a struct: an object, or `null` (which leaves it untouched).
    pub fn check_struct(&self) -> Result<(), JsonError> {
        match self {
            Json::Object(_) | Json::Null => Ok(()),
            other => Err(JsonError(format!("cannot unmarshal {} into a struct", other.kind()))),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "bool",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
}

/// A Go `string` field: absent or `null` keep `default`; anything but a string is an error.
pub fn string_field(obj: &Json, name: &str, default: &str) -> Result<String, JsonError> {
    match obj.field(name) {
        None | Some(Json::Null) => Ok(default.to_string()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(other) => Err(JsonError(format!("cannot unmarshal {} into string field {name}", other.kind()))),
    }
}

/// A Go `int64` field: the number literal must be an integer that fits (`1.0`, `1e3` and strings are errors).
pub fn i64_field(obj: &Json, name: &str, default: i64) -> Result<i64, JsonError> {
    match obj.field(name) {
        None | Some(Json::Null) => Ok(default),
        Some(Json::Number(n)) => {
            n.parse::<i64>().map_err(|_| JsonError(format!("cannot unmarshal number {n} into int64")))
        }
        Some(other) => Err(JsonError(format!("cannot unmarshal {} into int64 field {name}", other.kind()))),
    }
}

/// A Go `bool` field.
pub fn bool_field(obj: &Json, name: &str, default: bool) -> Result<bool, JsonError> {
    match obj.field(name) {
        None | Some(Json::Null) => Ok(default),
        Some(Json::Bool(b)) => Ok(*b),
        Some(other) => Err(JsonError(format!("cannot unmarshal {} into bool field {name}", other.kind()))),
    }
}

/// `s` as `json.Marshal` writes a Go string, quotes included (HTML-safe escaping, U+2028/U+2029 escaped).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, JsonError> {
        Err(JsonError(format!("{what} at byte {}", self.pos)))
    }

    fn skip_ws(&mut self) {
        while self.pos < self.b.len() && matches!(self.b[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn value(&mut self) -> Result<Json, JsonError> {
        self.skip_ws();
        match self.peek() {
            None => self.err("unexpected end of JSON input"),
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.err("invalid character looking for beginning of value"),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Json, JsonError>) -> Result<Json, JsonError> {
        // Go refuses nesting deeper than 10000; the limit also keeps this recursion off the stack's edge.
        self.depth += 1;
        if self.depth > 10_000 {
            return self.err("exceeded max depth");
        }
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, JsonError> {
        if self.b[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            self.err("invalid literal")
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.eat_digits(),
            _ => return self.err("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return self.err("invalid number fraction");
            }
            self.eat_digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return self.err("invalid number exponent");
            }
            self.eat_digits();
        }
        Ok(Json::Number(String::from_utf8_lossy(&self.b[start..self.pos]).into_owned()))
    }

    fn eat_digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(hex) = self.b.get(self.pos..self.pos + 4) else {
            return self.err("short unicode escape");
        };
        let Some(v) = std::str::from_utf8(hex).ok().and_then(|h| u32::from_str_radix(h, 16).ok()) else {
            return self.err("invalid unicode escape");
        };
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else { return self.err("unterminated string") };
            self.pos += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let Some(e) = self.peek() else { return self.err("unterminated escape") };
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let first = self.hex4()?;
                            let low = if (0xD800..0xDC00).contains(&first) { self.peek_low_surrogate() } else { None };
                            let code = match low {
                                Some(second) => {
                                    self.pos += 6;
                                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                                }
                                None => first,
                            };
                            // Go turns lone surrogates into U+FFFD instead of failing.
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return self.err("invalid escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return self.err("invalid control character in string"),
                c => out.push(c),
            }
        }
    }

    fn peek_low_surrogate(&self) -> Option<u32> {
        if !self.b[self.pos..].starts_with(b"\\u") {
            return None;
        }
        let hex = self.b.get(self.pos + 2..self.pos + 6)?;
        let v = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        (0xDC00..0xE000).contains(&v).then_some(v)
    }

    fn array(&mut self) -> Result<Json, JsonError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return self.err("expected , or ]"),
            }
        }
    }

    fn object(&mut self) -> Result<Json, JsonError> {
        self.pos += 1;
        let mut entries = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(entries));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return self.err("expected object key");
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return self.err("expected :");
            }
            self.pos += 1;
            let value = self.value()?;
            entries.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(entries));
                }
                _ => return self.err("expected , or }"),
            }
        }
    }
}
