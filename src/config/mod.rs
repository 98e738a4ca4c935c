//! Configuration in two stages: raw strings with where each came from (flag > environment > file > default), then a
//! validated [`Config`]. An invalid value is one line naming the key, the value, its source and what is allowed.

pub mod file;
pub mod keys;

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::mattermost::Secret;
use crate::meeting::{MeetingSettings, MeetingStatus};
use crate::model::CUSTOM_STATUS_TEXT_MAX;
pub use keys::{CONFIG_ENV, KEYS, Spec};

/// Where a raw value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
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
pub struct RawValue {
    pub value: Result<String, file::NotUtf8>,
    pub source: Source,
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

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Auto,
    Syslog,
    Stderr,
}

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub url: String,
    pub token: Secret,
    pub user_id: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Where the token was read from, when from a file: read again after the server refuses the token.
    pub token_file: Option<PathBuf>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub devices: Vec<String>,
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
    pub warnings: Vec<String>,
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
            if spec.secret {
                map.entry(&spec.name, &format_args!("<redacted> (from {})", rv.source));
            } else {
                map.entry(&spec.name, rv);
            }
        }
        map.finish()
    }
}

impl Raw {
    pub fn get(&self, name: &str) -> &RawValue {
        let i = KEYS.iter().position(|s| s.name == name).unwrap_or_else(|| panic!("no configuration key named {name}"));
        &self.values[i]
    }

    /// Keys in table order with their values.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Spec, &RawValue)> {
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
                    if keys::by_env_var(k).is_some_and(|s| s.secret) { &"<redacted>" } else { v };
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
    pub fn from_process(flags: Vec<(&'static str, String)>, config_flag: Option<PathBuf>) -> Inputs {
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
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config_flag
            .clone()
            .or_else(|| self.env.iter().find(|(k, v)| k == CONFIG_ENV && !v.is_empty()).map(|(_, v)| PathBuf::from(v)))
    }

    /// Applies precedence. Unknown `MM_STATUS_SYNC_*` names in the file are errors (a typo must not silently
    /// fall back to a default); unknown ones in the environment are ignored, since other tools may share the prefix.
    pub fn raw(&self) -> Result<Raw, ConfigError> {
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
    pub fn load(&self) -> Result<Config, ConfigError> {
        self.validate(&self.raw()?)
    }

    /// The default state directory, from the environment the daemon was started in.
    pub fn default_state_dir(&self) -> PathBuf {
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

    pub fn validate(&self, raw: &Raw) -> Result<Config, ConfigError> {
        let v = Validator { raw };
        let devices = v.list("devices")?;
        if devices.is_empty() {
            return Err(v.invalid("devices", "at least one pattern"));
        }
        for d in &devices {
            if !d.starts_with('/') || d.contains('\0') || d.ends_with('/') {
                return Err(v.invalid("devices", "absolute paths such as /dev/video*"));
            }
        }
        let state_dir = match v.optional("state-dir")? {
            // Relative would depend on the working directory, and a restart from another one would not find
            // the backup of a meeting in progress.
            Some(d) if !d.starts_with('/') => return Err(v.invalid("state-dir", keys::spec("state-dir").allowed)),
            Some(d) => PathBuf::from(d),
            None => self.default_state_dir(),
        };
        let meeting = MeetingSettings {
            message: v.text("meeting-message", CUSTOM_STATUS_TEXT_MAX, true)?,
            emoji: v.emoji("meeting-emoji")?,
            status: v.choice(
                "meeting-status",
                &[
                    ("dnd", MeetingStatus::Dnd),
                    ("away", MeetingStatus::Away),
                    ("online", MeetingStatus::Online),
                    ("offline", MeetingStatus::Offline),
                    ("keep", MeetingStatus::Keep),
                ],
            )?,
            ignore_if_offline: v.boolean("ignore-if-offline")?,
            lease: {
                let lease = v.seconds("lease", 0, 604_800)?;
                if lease != 0 && lease < 300 {
                    return Err(v.invalid("lease", keys::spec("lease").allowed));
                }
                lease
            },
        };
        let dry_run = v.boolean("dry-run")?;
        let mut warnings = Vec::new();
        let server = self.server(&v, &mut warnings)?;
        Ok(Config {
            devices,
            ignore_processes: v.list("ignore-processes")?,
            require_streaming_for: v.list("require-streaming-for")?,
            start_delay: Duration::from_secs(v.seconds("start-delay", 0, 3600)?),
            end_delay: Duration::from_secs(v.seconds("end-delay", 0, 86_400)?),
            interval: Duration::from_secs(v.seconds("interval", 10, 86_400)?),
            state_dir,
            log: v.choice(
                "log",
                &[("auto", LogTarget::Auto), ("syslog", LogTarget::Syslog), ("stderr", LogTarget::Stderr)],
            )?,
            log_level: v.choice(
                "log-level",
                &[
                    ("error", log::LevelFilter::Error),
                    ("warn", log::LevelFilter::Warn),
                    ("info", log::LevelFilter::Info),
                    ("debug", log::LevelFilter::Debug),
                ],
            )?,
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
        let token_file = v.optional("token-file")?;
        let user_id = v.optional("user-id")?;
        if let Some(id) = &user_id {
            if id.len() != 26 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                return Err(v.invalid("user-id", keys::spec("user-id").allowed));
            }
        }
        let ca_file = v.optional("ca-file")?.map(PathBuf::from);
        let Some(url) = v.optional("url")? else { return Ok(None) };
        let url = crate::mattermost::validate_base_url(&url).map_err(|why| {
            // A refused url may carry a password or a token (user:pass@, ?access_token=): not repeated then.
            let mut error = v.invalid("url", &why);
            if url.contains(['@', '?', '#']) {
                if let ConfigError::Invalid { value, .. } = &mut error {
                    *value = "(value not shown: it may hold a password or token)".to_owned();
                }
            }
            error
        })?;
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
        // The key to blame for a malformed token: the file's path is worth naming, the token never is.
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
                (t, None)
            }
            (None, Some(path)) => (read_token_file(Path::new(&path), v, warnings)?, Some(PathBuf::from(path))),
            (None, None) => {
                let missing = ConfigError::Missing { key: "token", why: "a url is set but no token or token-file" };
                if self.allow_incomplete {
                    warnings.push(missing.to_string());
                    return Ok(None);
                }
                return Err(missing);
            }
        };
        if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(match from_file {
                Some(_) => v.invalid("token-file", "a file holding one token, without spaces or control characters"),
                None => v.invalid("token", "a token without spaces or control characters"),
            });
        }
        Ok(Some(ServerSettings { url, token: Secret::new(token), user_id, ca_file, token_file: from_file }))
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

fn read_token_file(path: &Path, v: &Validator, warnings: &mut Vec<String>) -> Result<String, ConfigError> {
    let unreadable = |why: String| ConfigError::Invalid {
        key: "token-file",
        value: format!("{:?}", shorten(&path.display().to_string())),
        source: v.raw.get("token-file").source.to_string(),
        allowed: format!("a readable file holding the token ({why})"),
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() || meta.len() > 4096 {
        return Err(unreadable("not a regular file of at most 4096 bytes".into()));
    }
    if let Some(mode) = readable_by_others(path) {
        warnings
            .push(format!("token file {} can be read by other users (mode {mode:o}); chmod 600 it", path.display()));
    }
    let bytes = read_at_most(path, 4096)
        .map_err(|e| unreadable(e.to_string()))?
        .ok_or_else(|| unreadable("not a regular file of at most 4096 bytes".into()))?;
    let token = std::str::from_utf8(&bytes).map_err(|_| unreadable("not UTF-8".into()))?.trim();
    if token.is_empty() {
        return Err(unreadable("it is empty".into()));
    }
    Ok(token.to_owned())
}

/// Turns raw strings into typed values, with the error line every check shares.
struct Validator<'a> {
    raw: &'a Raw,
}

impl Validator<'_> {
    fn invalid(&self, key: &'static str, allowed: &str) -> ConfigError {
        let raw = self.raw.get(key);
        let spec = keys::spec(key);
        let value = match &raw.value {
            _ if spec.secret => "(value not shown)".to_owned(),
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

    fn optional(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let s = self.string(key)?.trim();
        Ok((!s.is_empty()).then(|| s.to_owned()))
    }

    fn list(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        Ok(self.string(key)?.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
    }

    fn seconds(&self, key: &'static str, min: u64, max: u64) -> Result<u64, ConfigError> {
        let allowed = keys::spec(key).allowed;
        let s = self.string(key)?.trim();
        match s.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) && s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(self.invalid(key, allowed)),
        }
    }

    fn boolean(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.string(key)?.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            _ => Err(self.invalid(key, keys::spec(key).allowed)),
        }
    }

    fn choice<T: Copy>(&self, key: &'static str, options: &[(&str, T)]) -> Result<T, ConfigError> {
        let s = self.string(key)?.trim();
        options
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| self.invalid(key, keys::spec(key).allowed))
    }

    /// Text kept as given (leading blanks matter: the message is appended), at most `max` characters.
    fn text(&self, key: &'static str, max: usize, allow_empty: bool) -> Result<String, ConfigError> {
        let s = self.string(key)?;
        if s.chars().count() > max || (!allow_empty && s.trim().is_empty()) {
            return Err(self.invalid(key, keys::spec(key).allowed));
        }
        Ok(s.to_owned())
    }

    fn emoji(&self, key: &'static str) -> Result<String, ConfigError> {
        let s = self.string(key)?.trim();
        let ok = !s.is_empty() && s.len() <= 64 && !s.contains(char::is_whitespace);
        if ok { Ok(s.to_owned()) } else { Err(self.invalid(key, keys::spec(key).allowed)) }
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
        if spec.secret {
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
