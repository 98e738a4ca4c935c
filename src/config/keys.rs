//! The one table of configuration keys. Flags, environment variables, the config file, `config --keys`, the README
//! table, the NixOS module, the snap hook and the example config are all checked against this list.

/// One configuration key: its name is the contract (`--name`, `MM_STATUS_SYNC_NAME`, `MM_STATUS_SYNC_NAME=` lines).
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    /// The default as it would be written in a config file; `None` when it is computed at load time (state-dir).
    pub default: Option<&'static str>,
    /// What is allowed, as said in error messages and `config` output.
    pub allowed: &'static str,
    pub help: &'static str,
    /// Accepted on the command line. The token is not: argv is readable by every user on the machine.
    pub flag: bool,
    /// Never printed, logged or put in an error message.
    pub secret: bool,
}

const fn key(name: &'static str, default: &'static str, allowed: &'static str, help: &'static str) -> Spec {
    Spec { name, default: Some(default), allowed, help, flag: true, secret: false }
}

/// Every key, in the order `config` prints them.
pub const KEYS: &[Spec] = &[
    key(
        "devices",
        "/dev/video*",
        "comma-separated absolute path patterns; `*` matches any run of characters except `/`",
        "device path patterns to watch (the flag `--device` may also be repeated)",
    ),
    key(
        "microphones",
        "",
        "comma-separated absolute path patterns such as /dev/snd/pcmC*D*c, or empty for none",
        "microphone device path patterns (capture PCM nodes such as /dev/snd/pcmC*D*c); empty: microphones are not \
         watched",
    ),
    key(
        "ignore-processes",
        "",
        "comma-separated process names",
        "process names (comm) that never count as using a device",
    ),
    key(
        "require-streaming-for",
        "pipewire,wireplumber",
        "comma-separated process names, or `*` for every process",
        "process names that count only while they stream (the device is mapped in /proc/PID/maps)",
    ),
    key(
        "start-delay",
        "5",
        "whole seconds from 0 to 3600",
        "seconds a device must stay in use before the meeting starts",
    ),
    key(
        "end-delay",
        "30",
        "whole seconds from 0 to 86400",
        "seconds all devices must stay free before the meeting ends",
    ),
    key(
        "interval",
        "300",
        "whole seconds from 10 to 86400",
        "seconds between safety full scans; inotify does the real work (the original project's sleep-seconds)",
    ),
    Spec {
        name: "state-dir",
        default: None,
        allowed: "an absolute directory path",
        help: "where the backup of your status is kept (default: $STATE_DIRECTORY, $SNAP_DATA, \
               /var/lib/mm-status-sync for root, else $XDG_STATE_HOME/mm-status-sync or ~/.local/state/mm-status-sync)",
        flag: true,
        secret: false,
    },
    key(
        "log",
        "auto",
        "auto, syslog or stderr",
        "where log lines go; auto: stderr when interactive or under journald, else syslog",
    ),
    key("log-level", "info", "error, warn, info or debug", "how much to log"),
    key(
        "dry-run",
        "false",
        "true/false/yes/no/1/0",
        "watch and decide as usual but never call the server; log what would be sent",
    ),
    key(
        "url",
        "",
        "https://host[:port][/path] (http:// only for a loopback address such as 127.0.0.1 or [::1])",
        "Mattermost server base URL; required unless dry-run",
    ),
    Spec {
        name: "token",
        default: Some(""),
        allowed: "a personal access token, in the environment or the config file only",
        help: "personal access token (never a flag: the command line is visible to every user)",
        flag: false,
        secret: true,
    },
    key("token-file", "", "a file path", "file holding the token (trimmed); re-read on SIGHUP"),
    key("user-id", "", "a 26-character Mattermost user id", "whose status to manage (default: the token's own user)"),
    key(
        "meeting-message",
        " [In a meeting]",
        "text of at most 100 characters",
        "appended to your current custom status text during a meeting",
    ),
    key("meeting-emoji", "calendar", "an emoji name such as calendar", "custom status emoji during a meeting"),
    key(
        "meeting-status",
        "dnd",
        "dnd, away, online, offline or keep",
        "availability during a meeting (keep: leave it alone)",
    ),
    key("ignore-if-offline", "true", "true/false/yes/no/1/0", "do nothing while you are offline"),
    key("ca-file", "", "a PEM file path", "extra trusted CA certificates, for servers with a private CA"),
    key(
        "lease",
        "14400",
        "0, or whole seconds from 300 to 604800",
        "the meeting status expires and DND ends this far ahead, renewed while the meeting lasts, so a laptop that \
         dies mid-meeting leaves nothing stale; 0 disables",
    ),
    key("on-meeting-start", "", "a shell command", "command run when a meeting starts (apps in $MM_STATUS_SYNC_APPS)"),
    key("on-meeting-end", "", "a shell command", "command run when a meeting ends"),
];

/// The table entry for `name`.
///
/// # Panics
/// When `name` is not in the table: a typo in the code, caught by every test that loads a configuration.
pub fn spec(name: &str) -> &'static Spec {
    KEYS.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no configuration key named {name}"))
}

/// The key a `MM_STATUS_SYNC_*` variable name stands for.
pub fn by_env_var(var: &str) -> Option<&'static Spec> {
    KEYS.iter().find(|s| s.env_var() == var)
}

impl Spec {
    /// `MM_STATUS_SYNC_` and the name in upper snake case.
    pub fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}", self.name.replace('-', "_").to_ascii_uppercase())
    }
}

pub const ENV_PREFIX: &str = "MM_STATUS_SYNC_";
/// Names the config file; not a key itself.
pub const CONFIG_ENV: &str = "MM_STATUS_SYNC_CONFIG";
