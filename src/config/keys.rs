//! The one table of configuration keys. Each entry says what the key is (its kind, with ranges and choices), its
//! default, help and what is allowed; from it come the flags, the environment variables and file lines, the
//! validation, `--help`, `config` and `config --keys`, and the generated documentation (the README key table,
//! `dist/config.env`, the man page). Adding a key is adding an entry here, and reading its typed value in
//! `Inputs::validate`.

/// What a key's value is. The validator, the allowed-values text and the docs all read it from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Whole seconds from `min` to `max`; with `zero_disables`, also 0.
    Seconds { min: u64, max: u64, zero_disables: bool },
    /// `true/false/yes/no/1/0`, exactly (lowercase, like the snap hook): one accepted set, documented here.
    Bool,
    /// One of these words, exactly.
    Choice(&'static [&'static str]),
    /// Text kept as given (leading blanks matter), at most this many characters (not bytes).
    Text { max_chars: usize },
    /// An emoji name: not empty, no blanks, at most 64 bytes.
    Emoji,
    /// Comma-separated absolute path patterns where `*` matches any run of characters except `/`; `example` is
    /// shown as the typical value; with `at_least_one`, an empty list is refused.
    Patterns { at_least_one: bool, example: &'static str },
    /// Comma-separated process names (as `/proc/PID/comm` shows them); with `star`, `*` means every process.
    ProcessNames { star: bool },
    /// An absolute directory path.
    Directory,
    /// A file path; the words describe the file.
    File(&'static str),
    /// The Mattermost server's base URL.
    Url,
    /// The token: never a flag, never shown.
    Secret,
    /// A 26-character Mattermost user id.
    UserId,
    /// A shell command.
    Command,
}

/// One configuration key: its name is the contract (`--name`, `MM_STATUS_SYNC_NAME`, `MM_STATUS_SYNC_NAME=` lines).
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// The default as it would be written in a config file; `None` when it is computed at load time (state-dir).
    pub(crate) default: Option<&'static str>,
    /// What an empty value (or the computed default) means, for the docs: "off", "the token's own user", ...
    pub(crate) empty_means: &'static str,
    pub(crate) help: &'static str,
    /// Accepted on the command line. The token is not: argv is readable by every user on the machine.
    pub(crate) flag: bool,
    /// A second flag that may be repeated and adds one item to the list (`--device PATTERN`).
    pub(crate) repeatable: Option<&'static str>,
}

const fn key(name: &'static str, kind: Kind, default: &'static str, help: &'static str) -> Spec {
    Spec { name, kind, default: Some(default), empty_means: "", help, flag: true, repeatable: None }
}

impl Spec {
    const fn empty_means(self, empty_means: &'static str) -> Spec {
        Spec { empty_means, ..self }
    }

    const fn repeatable(self, flag: &'static str) -> Spec {
        Spec { repeatable: Some(flag), ..self }
    }
}

const SECONDS_0_3600: Kind = Kind::Seconds { min: 0, max: 3600, zero_disables: false };
const SECONDS_0_86400: Kind = Kind::Seconds { min: 0, max: 86_400, zero_disables: false };

/// Every key, in the order `config` prints them.
pub(crate) const KEYS: &[Spec] = &[
    key(
        "devices",
        Kind::Patterns { at_least_one: true, example: "/dev/video*" },
        "/dev/video*",
        "camera device path patterns to watch",
    )
    .repeatable("device"),
    key(
        "microphones",
        Kind::Patterns { at_least_one: false, example: "/dev/snd/pcmC*D*c" },
        "",
        "microphone device path patterns to watch as well, such as /dev/snd/pcmC*D*c; only capture PCM nodes count",
    )
    .empty_means("off: microphones are not watched")
    .repeatable("microphone"),
    key(
        "ignore-processes",
        Kind::ProcessNames { star: false },
        "",
        "process names (comm) that never count as using a device",
    )
    .empty_means("none"),
    key(
        "require-streaming-for",
        Kind::ProcessNames { star: true },
        "pipewire,wireplumber",
        "process names that count only while they stream (the device is mapped in /proc/PID/maps)",
    )
    .empty_means("none"),
    key("start-delay", SECONDS_0_3600, "5", "seconds a device must stay in use before the meeting starts"),
    key("end-delay", SECONDS_0_86400, "30", "seconds all devices must stay free before the meeting ends"),
    key(
        "interval",
        Kind::Seconds { min: 10, max: 86_400, zero_disables: false },
        "300",
        "seconds between safety full scans; inotify does the real work (the original project's sleep-seconds)",
    ),
    Spec {
        name: "state-dir",
        kind: Kind::Directory,
        default: None,
        empty_means: "$STATE_DIRECTORY, else $SNAP_DATA, else /var/lib/mm-status-sync for root, else \
                      $XDG_STATE_HOME/mm-status-sync or ~/.local/state/mm-status-sync",
        help: "where the backup of your status is kept",
        flag: true,
        repeatable: None,
    },
    key(
        "log",
        Kind::Choice(&["auto", "syslog", "stderr"]),
        "auto",
        "where log lines go; auto: stderr when interactive or under journald, syslog when /dev/log exists, else \
         stderr",
    ),
    key("log-level", Kind::Choice(&["error", "warn", "info", "debug"]), "info", "how much to log"),
    key(
        "dry-run",
        Kind::Bool,
        "false",
        "watch and decide as usual but never call the server; log what would be sent (the flag takes no value)",
    ),
    key("url", Kind::Url, "", "Mattermost server base URL").empty_means("no server: required unless dry-run"),
    Spec {
        name: "token",
        kind: Kind::Secret,
        default: Some(""),
        empty_means: "",
        help: "personal access token; in the environment or the config file only (the command line is visible to \
               every user)",
        flag: false,
        repeatable: None,
    },
    key(
        "token-file",
        Kind::File("a file path"),
        "",
        "file holding the token (trimmed); re-read on SIGHUP; a warning when others can read it (or the config \
         file, when the token is written there)",
    ),
    key("user-id", Kind::UserId, "", "whose status to manage").empty_means("the token's own user"),
    key(
        "meeting-message",
        Kind::Text { max_chars: crate::model::CUSTOM_STATUS_TEXT_MAX },
        " [In a meeting]",
        "appended to your current custom status text during a meeting (the whole is cut to 100 characters, the \
         message kept whole)",
    ),
    key("meeting-emoji", Kind::Emoji, "calendar", "custom status emoji during a meeting"),
    key(
        "meeting-status",
        Kind::Choice(&["dnd", "away", "online", "offline", "keep"]),
        "dnd",
        "availability during a meeting (keep: leave it alone)",
    ),
    key(
        "ignore-if-offline",
        Kind::Bool,
        "true",
        "do nothing while you are offline (looked at again while the device stays in use)",
    ),
    key(
        "ca-file",
        Kind::File("a PEM file path"),
        "",
        "PEM file with extra trusted CA certificates, for a server with a private CA",
    ),
    key(
        "lease",
        Kind::Seconds { min: 300, max: 604_800, zero_disables: true },
        "14400",
        "seconds: the meeting custom status expires and DND ends this far ahead, renewed while the meeting lasts, \
         so a laptop that dies mid-meeting leaves nothing stale; 0 disables",
    ),
    key(
        "on-meeting-start",
        Kind::Command,
        "",
        "shell command run when a meeting starts (its environment says which apps and which event); killed after \
         60 s; never sees the token",
    ),
    key("on-meeting-end", Kind::Command, "", "shell command run when a meeting ends"),
];

/// The table entry for `name`.
///
/// # Panics
/// When `name` is not in the table: a typo in the code, caught by every test that loads a configuration.
pub(crate) fn spec(name: &str) -> &'static Spec {
    KEYS.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no configuration key named {name}"))
}

/// The key a `MM_STATUS_SYNC_*` variable name stands for.
pub(crate) fn by_env_var(var: &str) -> Option<&'static Spec> {
    KEYS.iter().find(|s| s.env_var() == var)
}

/// The accepted boolean words, true ones first.
pub(crate) const TRUE_WORDS: [&str; 3] = ["true", "yes", "1"];
pub(crate) const FALSE_WORDS: [&str; 3] = ["false", "no", "0"];

impl Spec {
    /// `MM_STATUS_SYNC_` and the name in upper snake case.
    pub(crate) fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}", self.name.replace('-', "_").to_ascii_uppercase())
    }

    /// Never printed, logged or put in an error message.
    pub(crate) fn is_secret(&self) -> bool {
        self.kind == Kind::Secret
    }

    /// A boolean that is off by default is a switch: `--dry-run` turns it on and takes no value.
    pub(crate) fn is_switch(&self) -> bool {
        self.flag && self.kind == Kind::Bool && self.default == Some("false")
    }

    /// The flag's value placeholder in `--help` and the man page.
    pub(crate) fn metavar(&self) -> &'static str {
        match self.kind {
            Kind::Seconds { .. } => "SECONDS",
            Kind::Bool => "BOOL",
            Kind::Choice(_) => "WORD",
            Kind::Text { .. } => "TEXT",
            Kind::Emoji => "EMOJI",
            Kind::Patterns { .. } => "PATTERNS",
            Kind::ProcessNames { .. } => "NAMES",
            Kind::Directory => "DIR",
            Kind::File(_) => "FILE",
            Kind::Url => "URL",
            Kind::Secret => "TOKEN",
            Kind::UserId => "ID",
            Kind::Command => "COMMAND",
        }
    }

    /// What is allowed, as said in error messages, `--help` and the docs.
    pub(crate) fn allowed(&self) -> String {
        match self.kind {
            Kind::Seconds { min, max, zero_disables: false } => format!("whole seconds from {min} to {max}"),
            Kind::Seconds { min, max, zero_disables: true } => format!("0, or whole seconds from {min} to {max}"),
            Kind::Bool => {
                TRUE_WORDS.iter().zip(FALSE_WORDS).map(|(t, f)| format!("{t}/{f}")).collect::<Vec<_>>().join("/")
            }
            Kind::Choice(words) => match words.split_last() {
                Some((last, [])) => (*last).to_owned(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            },
            Kind::Text { max_chars } => format!("text of at most {max_chars} characters"),
            Kind::Emoji => {
                "an emoji name such as calendar (letters, digits, _ + -; not :calendar: or the glyph)".to_owned()
            }
            Kind::Patterns { at_least_one, example } => format!(
                "comma-separated absolute path patterns such as {example}; `*` matches any run of characters \
                 except `/`{}",
                if at_least_one { "; at least one" } else { "" }
            ),
            Kind::ProcessNames { star: false } => "comma-separated process names".to_owned(),
            Kind::ProcessNames { star: true } => "comma-separated process names, or `*` for every process".to_owned(),
            Kind::Directory => "an absolute directory path".to_owned(),
            Kind::File(what) => what.to_owned(),
            Kind::Url => {
                "https://host[:port][/path] (http:// only for a loopback address such as 127.0.0.1 or [::1])".to_owned()
            }
            Kind::Secret => "a personal access token, in the environment or the config file only".to_owned(),
            Kind::UserId => "a 26-character Mattermost user id".to_owned(),
            Kind::Command => "a shell command".to_owned(),
        }
    }
}

pub(crate) const ENV_PREFIX: &str = "MM_STATUS_SYNC_";
/// Names the config file; not a key itself.
pub(crate) const CONFIG_ENV: &str = "MM_STATUS_SYNC_CONFIG";
