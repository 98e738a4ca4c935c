//! Runs the snap's configure hook (`snap/hooks/configure`) the way snapd would, with a fake `snapctl`, and asks
//! the real binary what it makes of the file the hook wrote: `snap set` keys must reach the daemon unchanged,
//! the token must stay out of `config.env`, and a refused value must leave the running configuration alone.

mod support;

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{BIN, TempDir};

const SERVICE: &str = "mm-status-sync.daemon";

/// Stands in for snapd's `snapctl`: `get` serves one file per key (so any byte can be a value), `services`
/// reports the state kept in a file, and start/stop/restart are logged and change that state.
const FAKE_SNAPCTL: &str = r#"#!/bin/sh
set -eu
case $1 in
    get)
        [ $# -eq 2 ] || { echo "fake snapctl: get takes one key here" >&2; exit 2; }
        if [ -f "$FAKE_SNAPCTL_DIR/values/$2" ]; then cat "$FAKE_SNAPCTL_DIR/values/$2"; fi
        ;;
    services)
        state=$(cat "$FAKE_SNAPCTL_DIR/state" 2>/dev/null || echo inactive)
        echo "Service  Startup  Current  Notes"
        echo "$2  enabled  $state  -"
        ;;
    start | stop | restart)
        echo "$*" >>"$FAKE_SNAPCTL_DIR/calls"
        case $1 in start | restart) echo active >"$FAKE_SNAPCTL_DIR/state" ;; stop) echo inactive >"$FAKE_SNAPCTL_DIR/state" ;; esac
        ;;
    *)
        echo "fake snapctl: unexpected call: $*" >&2
        exit 2
        ;;
esac
"#;

/// A snap installation in a temporary directory: `$SNAP/bin/mm-status-sync` is the binary under test.
struct FakeSnap {
    root: TempDir,
}

impl FakeSnap {
    fn new(test_name: &str) -> FakeSnap {
        let root = TempDir::new(&format!("snap-hook-{test_name}"));
        for dir in ["snap/bin", "data", "snapctl/values", "path"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        symlink(BIN, root.join("snap/bin/mm-status-sync")).unwrap();
        let snapctl = root.join("path/snapctl");
        fs::write(&snapctl, FAKE_SNAPCTL).unwrap();
        fs::set_permissions(&snapctl, fs::Permissions::from_mode(0o755)).unwrap();
        FakeSnap { root }
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn config_path(&self) -> PathBuf {
        self.data().join("config.env")
    }

    fn token_path(&self) -> PathBuf {
        self.data().join("token")
    }

    /// `snap set mm-status-sync key=value ...`
    fn set(&self, pairs: &[(&str, &str)]) {
        for (key, value) in pairs {
            fs::write(self.root.join("snapctl/values").join(key), value).unwrap();
        }
    }

    /// `snap unset mm-status-sync key`
    fn unset(&self, key: &str) {
        fs::remove_file(self.root.join("snapctl/values").join(key)).unwrap();
    }

    fn mark_service_running(&self) {
        fs::write(self.root.join("snapctl/state"), "active\n").unwrap();
    }

    fn run_hook(&self) -> Output {
        let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("snap/hooks/configure");
        Command::new(hook)
            .env_clear()
            // The caller's PATH, not /usr/bin:/bin: Nix build sandboxes have neither.
            .env("PATH", format!("{}:{}", self.root.join("path").display(), env::var("PATH").unwrap_or_default()))
            .env("SNAP", self.root.join("snap"))
            .env("SNAP_DATA", self.data())
            .env("SNAP_NAME", "mm-status-sync")
            .env("SNAP_INSTANCE_NAME", "mm-status-sync")
            .env("FAKE_SNAPCTL_DIR", self.root.join("snapctl"))
            .output()
            .unwrap()
    }

    fn run_hook_ok(&self) {
        let output = self.run_hook();
        assert!(output.status.success(), "configure hook failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Service control calls the hook made, in order.
    fn snapctl_calls(&self) -> Vec<String> {
        fs::read_to_string(self.root.join("snapctl/calls")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// What the binary reads from the hook's file: key -> (value, where it came from).
    fn effective_config(&self) -> BTreeMap<String, (String, String)> {
        let output = Command::new(BIN)
            .arg("config")
            .arg("--config")
            .arg(self.config_path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success(),
            "mm-status-sync config refused the hook's file: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            fs::read_to_string(self.config_path()).unwrap_or_default()
        );
        parse_config_output(&stdout)
    }
}

/// Reads `mm-status-sync config` output: `# from: SOURCE` comments, each followed by `MM_STATUS_SYNC_KEY=value`.
fn parse_config_output(text: &str) -> BTreeMap<String, (String, String)> {
    let mut settings = BTreeMap::new();
    let mut source = String::new();
    for line in text.lines() {
        if let Some(from) = line.strip_prefix("# from:") {
            source = from.trim().to_owned();
        } else if let Some((key, value)) =
            line.split_once('=').and_then(|(name, value)| Some((key_of_variable(name)?, value)))
        {
            settings.insert(key, (unquote(value), source.clone()));
        }
    }
    settings
}

/// `MM_STATUS_SYNC_USER_ID` -> `user-id`
fn key_of_variable(name: &str) -> Option<String> {
    let rest = name.strip_prefix("MM_STATUS_SYNC_")?;
    Some(rest.to_ascii_lowercase().replace('_', "-"))
}

/// The config file format: one pair of matching single or double quotes around a value is not part of it.
/// A value as the binary's own config file parser reads it (quotes, and escapes inside double quotes).
fn unquote(value: &str) -> String {
    let line = format!("MM_STATUS_SYNC_X={value}");
    let parsed = mm_status_sync::config::file::parse(line.as_bytes()).expect("a config line");
    parsed.into_iter().next().and_then(|a| a.value.ok()).unwrap_or_default()
}

fn binary_keys() -> Vec<String> {
    let output = Command::new(BIN).args(["config", "--keys"]).env_clear().output().unwrap();
    assert!(
        output.status.success(),
        "mm-status-sync config --keys failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn assert_from_file(config: &BTreeMap<String, (String, String)>, key: &str, expected: &str) {
    let Some((value, source)) = config.get(key) else {
        panic!("mm-status-sync config does not show {key}: {config:?}");
    };
    assert_eq!(value, expected, "value of {key}");
    assert!(source.starts_with("file"), "{key} should come from the hook's file, came from {source:?}");
}

/// A custom status text that breaks naive quoting: both quote kinds, `$`, `#`, a backslash, spaces at both ends.
const TRICKY_MESSAGE: &str = r#"  He said "it's $HOME #1 \n" ok  "#;

#[test]
fn original_snap_keys_reach_the_daemon_unchanged() {
    let snap = FakeSnap::new("original_snap_keys_reach_the_daemon_unchanged");
    snap.set(&[
        ("url", "https://mattermost.example.com"),
        ("token", "original-token-4f9d2"),
        ("user-id", "abcdefghijklmnopqrstuvwxyz"),
        ("sleep-seconds", "60"),
        ("meeting-message", TRICKY_MESSAGE),
        ("meeting-status", "away"),
        ("ignore-if-offline", "false"),
    ]);
    snap.run_hook_ok();

    let config = snap.effective_config();
    assert_from_file(&config, "url", "https://mattermost.example.com");
    assert_from_file(&config, "user-id", "abcdefghijklmnopqrstuvwxyz");
    assert_from_file(&config, "interval", "60");
    assert_from_file(&config, "meeting-message", TRICKY_MESSAGE);
    assert_from_file(&config, "meeting-status", "away");
    assert_from_file(&config, "ignore-if-offline", "false");
    assert_from_file(&config, "token-file", snap.token_path().to_str().unwrap());

    let written = fs::read_to_string(snap.config_path()).unwrap();
    assert!(!written.contains("original-token-4f9d2"), "the token leaked into config.env:\n{written}");
    assert_eq!(fs::read_to_string(snap.token_path()).unwrap().trim_end(), "original-token-4f9d2");
    let mode = fs::metadata(snap.token_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file mode is {mode:o}");
    assert_eq!(snap.snapctl_calls(), [format!("start --enable {SERVICE}")]);
}

/// A sample value for every key the binary knows, each different from its default; a new key without a sample
/// here fails the test, so the hook's mapping cannot silently miss it.
fn sample_value(key: &str, snap: &FakeSnap) -> Option<String> {
    let value = match key {
        "devices" => "/dev/video*,/dev/v4l/by-id/*".to_owned(),
        "microphones" => "/dev/snd/pcmC*D*c".to_owned(),
        "ignore-processes" => "obs,v4l2-ctl".to_owned(),
        "require-streaming-for" => "*".to_owned(),
        "start-delay" => "0".to_owned(),
        "end-delay" => "120".to_owned(),
        "interval" => "600".to_owned(),
        "state-dir" => snap.data().join("state").display().to_string(),
        "log" => "stderr".to_owned(),
        "log-level" => "debug".to_owned(),
        "dry-run" => "false".to_owned(),
        "url" => "https://mattermost.example.com:8443".to_owned(),
        "token-file" => snap.root.join("own-token").display().to_string(),
        "user-id" => "zyxwvutsrqponmlkjihgfedcba".to_owned(),
        "meeting-message" => TRICKY_MESSAGE.to_owned(),
        "meeting-emoji" => "movie_camera".to_owned(),
        "meeting-status" => "keep".to_owned(),
        "ignore-if-offline" => "false".to_owned(),
        "ca-file" => snap.root.join("ca.pem").display().to_string(),
        "lease" => "0".to_owned(),
        "on-meeting-start" => "notify-send 'Meeting' \"started\"".to_owned(),
        "on-meeting-end" => "logger -t meeting ended # done".to_owned(),
        _ => return None,
    };
    Some(value)
}

#[test]
fn every_key_is_accepted_by_its_own_name() {
    let snap = FakeSnap::new("every_key_is_accepted_by_its_own_name");
    let certificate = rcgen::generate_simple_self_signed(vec!["mattermost.example.com".to_owned()]).unwrap();
    fs::write(snap.root.join("ca.pem"), certificate.cert.pem()).unwrap();
    fs::write(snap.root.join("own-token"), "token-from-own-file").unwrap();
    fs::set_permissions(snap.root.join("own-token"), fs::Permissions::from_mode(0o600)).unwrap();

    // token goes through the token file, tested above; it cannot be set together with token-file.
    let keys: Vec<String> = binary_keys().into_iter().filter(|key| key != "token").collect();
    let missing: Vec<&String> = keys.iter().filter(|key| sample_value(key, &snap).is_none()).collect();
    assert!(missing.is_empty(), "new keys without a sample value in tests/snap_hook.rs: {missing:?}");
    let samples: Vec<(String, String)> =
        keys.iter().map(|key| (key.clone(), sample_value(key, &snap).unwrap())).collect();
    let pairs: Vec<(&str, &str)> = samples.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    snap.set(&pairs);
    snap.run_hook_ok();

    let config = snap.effective_config();
    for (key, value) in &samples {
        assert_from_file(&config, key, value);
    }
    assert!(!snap.token_path().exists(), "no token was set, yet the hook wrote a token file");
    assert_eq!(snap.snapctl_calls(), [format!("start --enable {SERVICE}")]);
}

#[test]
fn refused_values_leave_the_previous_config_untouched() {
    let snap = FakeSnap::new("refused_values_leave_the_previous_config_untouched");
    snap.set(&[("url", "https://mattermost.example.com"), ("token", "first-token"), ("meeting-status", "dnd")]);
    snap.run_hook_ok();
    snap.mark_service_running();
    let config_before = fs::read(snap.config_path()).unwrap();
    let token_before = fs::read(snap.token_path()).unwrap();
    let calls_before = snap.snapctl_calls();

    // Each refused change comes with a new token, which must not survive the refusal either.
    let refused: [(&str, &str, &[&str]); 2] = [
        ("meeting-status", "busy", &["meeting-status", "busy"]),
        // The original key is checked under its new name.
        ("sleep-seconds", "5", &["interval", "5"]),
    ];
    for (key, value, words_in_message) in refused {
        snap.set(&[(key, value), ("token", "second-token")]);
        let output = snap.run_hook();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "the hook accepted {key}={value}");
        for word in words_in_message {
            assert!(stderr.contains(word), "the hook's message for {key}={value} does not name {word:?}: {stderr}");
        }
        assert_eq!(fs::read(snap.config_path()).unwrap(), config_before, "config.env changed after {key}={value}");
        assert_eq!(fs::read(snap.token_path()).unwrap(), token_before, "token changed after {key}={value}");
        assert_eq!(snap.snapctl_calls(), calls_before, "service touched after {key}={value}");
        let leftovers: Vec<_> = fs::read_dir(snap.data()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "temporary files left in $SNAP_DATA: {leftovers:?}");
        snap.unset(key);
        snap.set(&[("token", "first-token")]);
    }
}

#[test]
fn a_running_service_is_reloaded_and_stopped_once_unconfigured() {
    let snap = FakeSnap::new("a_running_service_is_reloaded_and_stopped_once_unconfigured");
    // Freshly installed: nothing set yet. The file is written, the service stays off.
    snap.run_hook_ok();
    assert!(snap.config_path().exists());
    assert_eq!(snap.snapctl_calls(), Vec::<String>::new());

    // Values are checked even before the service can start.
    snap.set(&[("meeting-status", "busy")]);
    assert!(!snap.run_hook().status.success(), "meeting-status=busy accepted before url and token were set");
    snap.unset("meeting-status");

    snap.set(&[("url", "https://mattermost.example.com"), ("token", "a-token")]);
    snap.run_hook_ok();
    snap.set(&[("meeting-emoji", "phone")]);
    snap.run_hook_ok();
    assert_from_file(&snap.effective_config(), "meeting-emoji", "phone");

    snap.unset("token");
    snap.run_hook_ok();
    assert!(!snap.token_path().exists(), "the token file outlived `snap unset mm-status-sync token`");
    assert_eq!(
        snap.snapctl_calls(),
        [
            format!("start --enable {SERVICE}"),
            format!("restart --reload {SERVICE}"),
            format!("stop --disable {SERVICE}")
        ]
    );
}
