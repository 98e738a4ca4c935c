//! Configuration in two stages: raw strings with where each came from (flag > environment > file > default), then a
//! validated [`Config`]. An invalid value is one line naming the key, the value, its source and what is allowed.

#[doc(hidden)]
pub mod docs;
pub mod file;
pub(crate) mod keys;

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base_url::BaseUrl;
pub(crate) use crate::detect::pattern::Pattern;
pub(crate) use crate::logger::LogTarget;
use crate::meeting::{MeetingSettings, MeetingStatus};
use crate::secret::Secret;
pub(crate) use keys::{CONFIG_ENV, KEYS, Kind, Spec};

/// Where a raw value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Default,
    File { path: PathBuf, line: usize },
    Environment,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Source::Environment => f.write_str("environment"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// A value as given, before validation. `Err(NotUtf8)` keeps a non-UTF-8 value as a reportable error.
#[derive(Clone, Debug)]
pub(crate) struct RawValue {
    pub(crate) value: Result<String, file::NotUtf8>,
    pub(crate) source: Source,
}

/// Why a configuration cannot be used. Displayed as one line; never contains a secret's value.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    Invalid { key: &'static str, value: String, source: String, allowed: String },
    File { path: PathBuf, reason: String },
    Missing { key: &'static str, why: &'static str },
    Conflict { a: &'static str, b: &'static str },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid { key, value, source, allowed } => {
                write!(f, "invalid {key} {value} (from {source}): expected {allowed}")
            }
            ConfigError::File { path, reason } => write!(f, "config file {}: {reason}", path.display()),
            ConfigError::Missing { key, why } if keys::spec(key).flag => {
                write!(f, "missing {key}: {why} (set --{key} or {})", keys::spec(key).env_var())
            }
            ConfigError::Missing { key, why } => write!(f, "missing {key}: {why} (set {})", keys::spec(key).env_var()),
            ConfigError::Conflict { a, b } => write!(f, "both {a} and {b} are set: keep only one"),
        }
    }
}

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub url: BaseUrl,
    pub token: Secret,
    pub user_id: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Where the token was read from, when from a file: read again after the server refuses the token.
    pub(crate) token_file: Option<PathBuf>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Camera device patterns: at least one.
    pub devices: Vec<Pattern>,
    /// Microphone device patterns; empty means microphones are not watched.
    pub(crate) microphones: Vec<Pattern>,
    pub ignore_processes: Vec<String>,
    pub require_streaming_for: Vec<String>,
    pub start_delay: Duration,
    pub end_delay: Duration,
    pub interval: Duration,
    pub state_dir: PathBuf,
    pub log: LogTarget,
    pub log_level: log::LevelFilter,
    pub dry_run: bool,
    pub meeting: MeetingSettings,
    /// `None` when no url is set (allowed for `scan`, `config` and dry runs).
    pub server: Option<ServerSettings>,
    pub on_meeting_start: Option<String>,
    pub on_meeting_end: Option<String>,
    /// Things worth a warning that do not stop the daemon (a token file others can read).
    pub(crate) warnings: Vec<String>,
}

/// Every key's raw value and source, after precedence was applied.
#[derive(Clone)]
pub struct Raw {
    values: Vec<RawValue>,
}

/// Shows every key but not a secret's value: a panic or a debug line must not print the token.
impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (spec, rv) in self.iter() {
            if spec.is_secret() {
                map.entry(&spec.name, &format_args!("<redacted> (from {})", rv.source));
            } else {
                map.entry(&spec.name, rv);
            }
        }
        map.finish()
    }
}

impl Raw {
    pub(crate) fn get(&self, name: &str) -> &RawValue {
        let i = KEYS.iter().position(|s| s.name == name).unwrap_or_else(|| panic!("no configuration key named {name}"));
        &self.values[i]
    }

    /// Keys in table order with their values.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static Spec, &RawValue)> {
        KEYS.iter().zip(&self.values)
    }
}

/// The inputs a configuration is made from: kept so that SIGHUP can load again from the same flags and
/// environment with a fresh read of the file.
#[derive(Clone, Default)]
pub struct Inputs {
    /// `(key name, value)` from the command line.
    pub flags: Vec<(&'static str, String)>,
    /// `MM_STATUS_SYNC_*` variables (and `MM_STATUS_SYNC_CONFIG`), captured at start.
    pub env: Vec<(String, OsString)>,
    /// `--config`, which wins over `MM_STATUS_SYNC_CONFIG`.
    pub config_flag: Option<PathBuf>,
    /// Other variables the defaults depend on (STATE_DIRECTORY, SNAP_DATA, XDG_STATE_HOME, HOME).
    pub context: Vec<(String, OsString)>,
    pub is_root: bool,
    /// Accept a url without a token (with a warning): `config` checks a configuration that is still being set
    /// up, one `snap set` at a time.
    pub allow_incomplete: bool,
}

/// Like a derived `Debug`, except that the values of secret variables (`MM_STATUS_SYNC_TOKEN`) are not shown.
impl fmt::Debug for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<(&str, &dyn fmt::Debug)> = self
            .env
            .iter()
            .map(|(k, v)| {
                let shown: &dyn fmt::Debug =
                    if keys::by_env_var(k).is_some_and(|s| s.is_secret()) { &"<redacted>" } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("Inputs")
            .field("flags", &self.flags)
            .field("env", &env)
            .field("config_flag", &self.config_flag)
            .field("context", &self.context)
            .field("is_root", &self.is_root)
            .field("allow_incomplete", &self.allow_incomplete)
            .finish()
    }
}

impl Inputs {
    /// Captures the process environment; `flags` come from the command line.
    pub(crate) fn from_process(flags: Vec<(&'static str, String)>, config_flag: Option<PathBuf>) -> Inputs {
        let mut env = Vec::new();
        let mut context = Vec::new();
        for (k, v) in std::env::vars_os() {
            let Some(k) = k.to_str() else { continue };
            if k.starts_with(keys::ENV_PREFIX) {
                env.push((k.to_owned(), v));
            } else if matches!(k, "STATE_DIRECTORY" | "SNAP_DATA" | "XDG_STATE_HOME" | "HOME") {
                context.push((k.to_owned(), v));
            }
        }
        // /proc/self belongs to the effective uid; std offers no geteuid and this keeps unsafe out of here.
        let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
        Inputs { flags, env, config_flag, context, is_root, allow_incomplete: false }
    }

    fn context_var(&self, name: &str) -> Option<&OsString> {
        self.context.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v)
    }

    /// The config file to read, if any.
    pub(crate) fn config_path(&self) -> Option<PathBuf> {
        self.config_flag
            .clone()
            .or_else(|| self.env.iter().find(|(k, v)| k == CONFIG_ENV && !v.is_empty()).map(|(_, v)| PathBuf::from(v)))
    }

    /// Applies precedence. Unknown `MM_STATUS_SYNC_*` names in the file are errors (a typo must not silently
    /// fall back to a default); unknown ones in the environment are ignored, since other tools may share the prefix.
    pub(crate) fn raw(&self) -> Result<Raw, ConfigError> {
        let config_file = match self.config_path() {
            Some(path) => Some((read_config_file(&path)?, path)),
            None => None,
        };
        self.raw_with_file(config_file.as_ref().map(|(bytes, path)| (path.as_path(), bytes.as_slice())))
    }

    /// [`Inputs::raw`] over a config file's bytes already read (`path` only names it in messages). Public for the
    /// `config_file` fuzz target, which must not go through the file system on every input.
    #[doc(hidden)]
    pub fn raw_with_file(&self, config_file: Option<(&Path, &[u8])>) -> Result<Raw, ConfigError> {
        let mut values: Vec<RawValue> = KEYS
            .iter()
            .map(|s| RawValue { value: Ok(s.default.unwrap_or("").to_owned()), source: Source::Default })
            .collect();
        let index = |name: &str| KEYS.iter().position(|s| s.name == name);
        if let Some((path, bytes)) = config_file {
            let path = path.to_owned();
            let assignments =
                file::parse(bytes).map_err(|e| ConfigError::File { path: path.clone(), reason: e.to_string() })?;
            for a in assignments {
                let Some(spec) = keys::by_env_var(&a.name) else {
                    return Err(ConfigError::File {
                        path: path.clone(),
                        reason: format!("line {}: unknown key {}", a.line, a.name),
                    });
                };
                let i = index(spec.name).expect("key from the table");
                values[i] = RawValue { value: a.value, source: Source::File { path: path.clone(), line: a.line } };
            }
        }
        for (var, v) in &self.env {
            if let Some(spec) = keys::by_env_var(var) {
                let i = index(spec.name).expect("key from the table");
                let value = v.to_str().map(str::to_owned).ok_or(file::NotUtf8);
                values[i] = RawValue { value, source: Source::Environment };
            }
        }
        for (name, v) in &self.flags {
            let i = index(name).unwrap_or_else(|| panic!("flag for unknown key {name}"));
            values[i] = RawValue { value: Ok(v.clone()), source: Source::Flag };
        }
        Ok(Raw { values })
    }

    /// Reads and validates everything, including the token file.
    pub(crate) fn load(&self) -> Result<Config, ConfigError> {
        self.validate(&self.raw()?)
    }

    /// The default state directory, from the environment the daemon was started in.
    pub(crate) fn default_state_dir(&self) -> PathBuf {
        if let Some(d) = self.context_var("STATE_DIRECTORY") {
            // systemd passes a colon-separated list when several directories are configured.
            let first = d.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
            return PathBuf::from(first);
        }
        if let Some(d) = self.context_var("SNAP_DATA") {
            return PathBuf::from(d);
        }
        if self.is_root {
            return PathBuf::from("/var/lib/mm-status-sync");
        }
        // Relative values are ignored, as the XDG spec asks: the backup must not depend on the working directory.
        let absolute = |name: &str| self.context_var(name).filter(|d| Path::new(d).is_absolute());
        if let Some(d) = absolute("XDG_STATE_HOME") {
            return Path::new(d).join("mm-status-sync");
        }
        match absolute("HOME") {
            Some(home) => Path::new(home).join(".local/state/mm-status-sync"),
            None => PathBuf::from("/var/lib/mm-status-sync"),
        }
    }

    /// Every key is first checked by its kind in the table (so a key nobody reads yet is still validated), in
    /// table order; then the typed values are read out.
    pub fn validate(&self, raw: &Raw) -> Result<Config, ConfigError> {
        let v = Validator { raw };
        for spec in KEYS {
            v.parse(spec.name)?;
        }
        let state_dir = match v.path("state-dir")? {
            Some(d) => d,
            None => self.default_state_dir(),
        };
        let meeting = MeetingSettings {
            message: v.text("meeting-message")?,
            emoji: v.text("meeting-emoji")?,
            status: v.choice("meeting-status", |word| match word {
                "dnd" => Some(MeetingStatus::Dnd),
                "away" => Some(MeetingStatus::Away),
                "online" => Some(MeetingStatus::Online),
                "offline" => Some(MeetingStatus::Offline),
                "keep" => Some(MeetingStatus::Keep),
                _ => None,
            })?,
            ignore_if_offline: v.boolean("ignore-if-offline")?,
            lease: v.seconds("lease")?,
        };
        let dry_run = v.boolean("dry-run")?;
        let mut warnings = Vec::new();
        let server = self.server(&v, &mut warnings)?;
        Ok(Config {
            devices: v.patterns("devices")?,
            microphones: v.patterns("microphones")?,
            ignore_processes: v.names("ignore-processes")?,
            require_streaming_for: v.names("require-streaming-for")?,
            start_delay: Duration::from_secs(v.seconds("start-delay")?),
            end_delay: Duration::from_secs(v.seconds("end-delay")?),
            interval: Duration::from_secs(v.seconds("interval")?),
            state_dir,
            log: v.choice("log", |word| match word {
                "auto" => Some(LogTarget::Auto),
                "syslog" => Some(LogTarget::Syslog),
                "stderr" => Some(LogTarget::Stderr),
                _ => None,
            })?,
            log_level: v.choice("log-level", |word| match word {
                "error" => Some(log::LevelFilter::Error),
                "warn" => Some(log::LevelFilter::Warn),
                "info" => Some(log::LevelFilter::Info),
                "debug" => Some(log::LevelFilter::Debug),
                _ => None,
            })?,
            dry_run,
            meeting,
            server,
            on_meeting_start: v.optional("on-meeting-start")?,
            on_meeting_end: v.optional("on-meeting-end")?,
            warnings,
        })
    }

    fn server(&self, v: &Validator, warnings: &mut Vec<String>) -> Result<Option<ServerSettings>, ConfigError> {
        let token_inline = v.optional("token")?;
        let token_file = v.path("token-file")?;
        let user_id = v.optional("user-id")?;
        let ca_file = v.path("ca-file")?;
        let Some(url) = v.url("url")? else { return Ok(None) };
        if let Some(path) = &ca_file {
            // Read in full (and its certificates checked) when the client is built; a path that cannot be
            // opened at all is a mistake in the input, reported here like every other one.
            // stat first: opening a FIFO for reading would wait for a writer.
            let opened = std::fs::metadata(path)
                .and_then(|m| if m.is_file() { std::fs::File::open(path).map(Some) } else { Ok(None) });
            match opened {
                Ok(Some(_)) => {}
                Ok(None) => return Err(v.invalid("ca-file", "a readable PEM file (it is not a regular file)")),
                Err(e) => return Err(v.invalid("ca-file", &format!("a readable PEM file ({e})"))),
            }
        }
        let (token, from_file) = match (token_inline, token_file) {
            (Some(_), Some(_)) => return Err(ConfigError::Conflict { a: "token", b: "token-file" }),
            (Some(t), None) => {
                // A token written into the config file is exactly as private as that file.
                if let Source::File { path, .. } = &v.raw.get("token").source {
                    if let Some(mode) = readable_by_others(path) {
                        warnings.push(format!(
                            "config file {} holds the token and can be read by other users (mode {mode:o}); chmod \
                             600 it, or move the token to a token-file",
                            path.display()
                        ));
                    }
                }
                // The client's own rule (a header value of printable ASCII): a token that loads is one that can be
                // sent. The error names where the token came from, never the token.
                if !t.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(v.invalid("token", "a token without spaces, control or non-ASCII characters"));
                }
                (Secret::new(t), None)
            }
            (None, Some(path)) => {
                let token = read_token_file(&path).map_err(|e| match e {
                    TokenFileError::Unreadable(_) => ConfigError::Invalid {
                        key: "token-file",
                        value: format!("{:?}", shorten(&path.display().to_string())),
                        source: v.raw.get("token-file").source.to_string(),
                        allowed: e.to_string(),
                    },
                    TokenFileError::NotOneToken => v.invalid("token-file", &e.to_string()),
                })?;
                if let Some(mode) = readable_by_others(&path) {
                    warnings.push(format!(
                        "token file {} can be read by other users (mode {mode:o}); chmod 600 it",
                        path.display()
                    ));
                }
                (token, Some(path))
            }
            (None, None) => {
                let missing = ConfigError::Missing { key: "token", why: "a url is set but no token or token-file" };
                if self.allow_incomplete {
                    warnings.push(missing.to_string());
                    return Ok(None);
                }
                return Err(missing);
            }
        };
        Ok(Some(ServerSettings { url, token, user_id, ca_file, token_file: from_file }))
    }
}

fn read_config_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    const MAX: u64 = 1 << 20;
    let err = |reason: String| ConfigError::File { path: path.to_owned(), reason };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() > MAX {
        return Err(err(format!("larger than {MAX} bytes")));
    }
    match read_at_most(path, MAX) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(err(format!("larger than {MAX} bytes"))),
        Err(e) => Err(err(e.to_string())),
    }
}

/// The file's bytes, or `None` when there are more than `max`. The size `stat` reports is not a bound: procfs
/// files report 0 (`/proc/self/pagemap` reads on for gigabytes) and a file may grow after it.
fn read_at_most(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// The permission bits of `path` when its group or others have any access to it.
fn readable_by_others(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Why a token file gives no token. Neither case holds anything read from the file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenFileError {
    /// Missing, not a regular file, more than `TOKEN_FILE_MAX` bytes, not UTF-8, or empty: why.
    Unreadable(String),
    /// Readable, but not one token of printable ASCII (the only header value the client can send).
    NotOneToken,
}

/// What a token file must be, and why this one is not: the words of `config`, `check`, the start and the daemon's
/// second reading after a refused token alike.
impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFileError::Unreadable(why) => write!(f, "a readable file holding the token ({why})"),
            TokenFileError::NotOneToken => {
                f.write_str("a file holding one token, without spaces, control or non-ASCII characters")
            }
        }
    }
}

/// The most a token file may hold.
const TOKEN_FILE_MAX: u64 = 4096;

/// The token in a token file: at most `TOKEN_FILE_MAX` bytes of UTF-8, trimmed, one token of printable ASCII. The
/// configuration reads it, and the daemon reads it again after the server refused the token, so a rotated token
/// is taken by the same rules.
pub(crate) fn read_token_file(path: &Path) -> Result<Secret, TokenFileError> {
    let unreadable = |why: String| TokenFileError::Unreadable(why);
    let too_large = || unreadable(format!("not a regular file of at most {TOKEN_FILE_MAX} bytes"));
    // stat first: opening a FIFO put where the file was would block (the daemon's one loop) until a writer came.
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() || meta.len() > TOKEN_FILE_MAX {
        return Err(too_large());
    }
    let bytes = read_at_most(path, TOKEN_FILE_MAX).map_err(|e| unreadable(e.to_string()))?.ok_or_else(too_large)?;
    let token = std::str::from_utf8(&bytes).map_err(|_| unreadable("not UTF-8".into()))?.trim();
    if token.is_empty() {
        return Err(unreadable("it is empty".into()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenFileError::NotOneToken);
    }
    Ok(Secret::new(token))
}

/// A value parsed by its kind in the table.
enum Parsed {
    Seconds(u64),
    Bool(bool),
    /// The word, one of the table's choices.
    Choice(String),
    /// Text as given (`Text`, `Emoji`), trimmed for an emoji name.
    Text(String),
    Patterns(Vec<Pattern>),
    Names(Vec<String>),
    /// `None` when empty.
    Path(Option<PathBuf>),
    Url(Option<BaseUrl>),
    /// Trimmed; `None` when empty (`Secret`, `UserId`, `Command`).
    Optional(Option<String>),
}

/// Turns raw strings into typed values by the table's kinds, with the error line every check shares.
struct Validator<'a> {
    raw: &'a Raw,
}

impl Validator<'_> {
    fn invalid(&self, key: &'static str, allowed: &str) -> ConfigError {
        let raw = self.raw.get(key);
        let spec = keys::spec(key);
        let value = match &raw.value {
            _ if spec.is_secret() => "(value not shown)".to_owned(),
            Ok(s) => format!("{:?}", shorten(s)),
            Err(_) => "(not valid UTF-8)".to_owned(),
        };
        ConfigError::Invalid { key: spec.name, value, source: raw.source.to_string(), allowed: allowed.to_owned() }
    }

    fn string(&self, key: &'static str) -> Result<&str, ConfigError> {
        match &self.raw.get(key).value {
            Ok(s) if s.chars().any(|c| c.is_control()) => Err(self.invalid(key, "text without control characters")),
            Ok(s) => Ok(s),
            Err(_) => Err(self.invalid(key, "valid UTF-8 text")),
        }
    }

    /// The value of `key` parsed by its kind.
    fn parse(&self, key: &'static str) -> Result<Parsed, ConfigError> {
        let spec = keys::spec(key);
        let s = self.string(key)?;
        let refused = || self.invalid(key, &spec.allowed());
        let trimmed = s.trim();
        let optional = || (!trimmed.is_empty()).then(|| trimmed.to_owned());
        let list = || trimmed.split(',').map(str::trim).filter(|s| !s.is_empty());
        Ok(match spec.kind {
            Kind::Seconds { min, max, zero_disables } => match trimmed.parse::<u64>() {
                Ok(n)
                    if trimmed.bytes().all(|b| b.is_ascii_digit())
                        && ((min..=max).contains(&n) || (zero_disables && n == 0)) =>
                {
                    Parsed::Seconds(n)
                }
                _ => return Err(refused()),
            },
            Kind::Bool if keys::TRUE_WORDS.contains(&trimmed) => Parsed::Bool(true),
            Kind::Bool if keys::FALSE_WORDS.contains(&trimmed) => Parsed::Bool(false),
            Kind::Bool => return Err(refused()),
            Kind::Choice(words) if words.contains(&trimmed) => Parsed::Choice(trimmed.to_owned()),
            Kind::Choice(_) => return Err(refused()),
            Kind::Text { max_chars } if s.chars().count() <= max_chars => Parsed::Text(s.to_owned()),
            Kind::Text { .. } => return Err(refused()),
            // A name, as the server takes it (docs/mattermost-semantics.md, section 6): the glyph or `:name:` is
            // refused at every meeting.
            Kind::Emoji
                if !trimmed.is_empty()
                    && trimmed.len() <= 64
                    && trimmed.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b)) =>
            {
                Parsed::Text(trimmed.to_owned())
            }
            Kind::Emoji => return Err(refused()),
            Kind::Patterns { at_least_one, example } => {
                let patterns: Result<Vec<Pattern>, _> = list().map(Pattern::new).collect();
                match patterns {
                    Ok(p) if p.is_empty() && at_least_one => {
                        return Err(self.invalid(key, &format!("at least one pattern, such as {example}")));
                    }
                    Ok(p) => Parsed::Patterns(p),
                    // The pattern error repeats the pattern, which may be huge: only the rule is said.
                    Err(_) => {
                        return Err(self.invalid(
                            key,
                            &format!(
                                "absolute paths such as {example}, comma-separated, without `.` or `..` \
                                 components, `//` or a trailing /"
                            ),
                        ));
                    }
                }
            }
            Kind::ProcessNames { .. } => Parsed::Names(list().map(str::to_owned).collect()),
            // Relative would depend on the working directory, and a restart from another one would not find the
            // backup of a meeting in progress.
            Kind::Directory if !trimmed.is_empty() && !trimmed.starts_with('/') => return Err(refused()),
            Kind::Directory | Kind::File(_) => Parsed::Path(optional().map(PathBuf::from)),
            Kind::Url => match optional() {
                None => Parsed::Url(None),
                Some(url) => Parsed::Url(Some(BaseUrl::parse(&url).map_err(|why| {
                    // A refused url may carry a password or a token (user:pass@, ?access_token=): not repeated then.
                    let mut error = self.invalid(key, &format!("{} ({why})", spec.allowed()));
                    if url.contains(['@', '?', '#']) {
                        if let ConfigError::Invalid { value, .. } = &mut error {
                            *value = "(value not shown: it may hold a password or token)".to_owned();
                        }
                    }
                    error
                })?)),
            },
            Kind::UserId
                if !trimmed.is_empty()
                    && (trimmed.len() != 26
                        || !trimmed.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())) =>
            {
                return Err(refused());
            }
            Kind::Secret | Kind::UserId | Kind::Command => Parsed::Optional(optional()),
        })
    }

    /// A reader of a kind other than the key's is a mistake in this file, caught by every test that loads a
    /// configuration.
    fn wrong_kind(key: &str) -> ! {
        panic!("configuration key {key} is read as a kind other than its table entry's")
    }

    fn seconds(&self, key: &'static str) -> Result<u64, ConfigError> {
        match self.parse(key)? {
            Parsed::Seconds(n) => Ok(n),
            _ => Self::wrong_kind(key),
        }
    }

    fn boolean(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.parse(key)? {
            Parsed::Bool(b) => Ok(b),
            _ => Self::wrong_kind(key),
        }
    }

    /// The table's word for `key` as a `T`; `to_value` must know every word the table lists (a test loads each).
    fn choice<T>(&self, key: &'static str, to_value: impl Fn(&str) -> Option<T>) -> Result<T, ConfigError> {
        match self.parse(key)? {
            Parsed::Choice(word) => Ok(to_value(&word).unwrap_or_else(|| Self::wrong_kind(key))),
            _ => Self::wrong_kind(key),
        }
    }

    fn text(&self, key: &'static str) -> Result<String, ConfigError> {
        match self.parse(key)? {
            Parsed::Text(t) => Ok(t),
            _ => Self::wrong_kind(key),
        }
    }

    fn patterns(&self, key: &'static str) -> Result<Vec<Pattern>, ConfigError> {
        match self.parse(key)? {
            Parsed::Patterns(p) => Ok(p),
            _ => Self::wrong_kind(key),
        }
    }

    fn names(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.parse(key)? {
            Parsed::Names(n) => Ok(n),
            _ => Self::wrong_kind(key),
        }
    }

    fn path(&self, key: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        match self.parse(key)? {
            Parsed::Path(p) => Ok(p),
            _ => Self::wrong_kind(key),
        }
    }

    fn url(&self, key: &'static str) -> Result<Option<BaseUrl>, ConfigError> {
        match self.parse(key)? {
            Parsed::Url(u) => Ok(u),
            _ => Self::wrong_kind(key),
        }
    }

    fn optional(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.parse(key)? {
            Parsed::Optional(o) => Ok(o),
            _ => Self::wrong_kind(key),
        }
    }
}

/// A value cut for an error line: a 10 MB value must not become a 10 MB log line.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX { s.to_owned() } else { format!("{}...", crate::model::truncate_runes(s, MAX)) }
}

/// The effective configuration as a config file that `--config` reads back, each value with its source; secrets
/// are never written.
pub fn render(raw: &Raw, config: &Config) -> String {
    let mut out = String::from("# mm-status-sync effective configuration\n");
    for (spec, rv) in raw.iter() {
        let var = spec.env_var();
        out.push('\n');
        out.push_str(&format!("# {}: {}\n", spec.name, spec.help));
        if spec.is_secret() {
            let set = matches!(&rv.value, Ok(s) if !s.trim().is_empty());
            let state = if set { format!("set (from {}), not shown", rv.source) } else { "not set".to_owned() };
            out.push_str(&format!("# {var}: {state}\n"));
            continue;
        }
        let (value, source) = match (&rv.value, spec.default) {
            (_, None) if rv.source == Source::Default => (config.state_dir.display().to_string(), "default".to_owned()),
            (Ok(v), _) => (v.clone(), rv.source.to_string()),
            (Err(_), _) => continue,
        };
        out.push_str(&format!("# from: {source}\n"));
        match file::quote(&value) {
            Some(q) => out.push_str(&format!("{var}={q}\n")),
            None => out.push_str(&format!("# {var} cannot be written in this format\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests;
