//! Bad input through every source: each configuration key the binary lists, given as a flag, an environment
//! variable or a config file line, with an empty, huge, negative, non-UTF-8 or wrong-type value, is either
//! accepted by a documented rule (and then shown by `config` with its source) or refused by `config` and by `run`
//! with exit code 2 and one short line on stderr naming the key; never a panic, never the token's value.

mod support;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{BIN, TempDir};

/// Huge values on the command line and in the environment: the kernel refuses any single argv or environment
/// string over MAX_ARG_STRLEN (128 KiB) before the binary runs, so 100 KiB is as huge as they get.
const HUGE_ARG: usize = 100 * 1024;
/// Huge values in the config file: 1 MB, just under the file's own 1 MiB cap.
const HUGE_FILE: usize = 1_000_000;
/// An error line longer than this is a value copied whole into it.
const MAX_ERROR_LINE: usize = 600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Flag,
    Environment,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Refused,
}
use Verdict::{Accepted, Refused};

/// What each key makes of each kind of bad value, as README's table and `config --keys`' allowed texts say.
struct Rule {
    key: &'static str,
    /// A huge value is this prefix followed by this byte repeated, so that it is huge but otherwise plausible.
    huge: (&'static str, u8),
    wrong_type: &'static str,
    /// For the empty, huge, negative (`-1`) and wrong-type values. A non-UTF-8 value is refused by every key.
    verdicts: [Verdict; 4],
    /// Other keys set in the environment so that the key under test is actually used.
    with: &'static [(&'static str, &'static str)],
}

const SERVER: &[(&str, &str)] = &[("MM_STATUS_SYNC_URL", "http://127.0.0.1:9")];
const SERVER_AND_TOKEN: &[(&str, &str)] =
    &[("MM_STATUS_SYNC_URL", "http://127.0.0.1:9"), ("MM_STATUS_SYNC_TOKEN", "k9w3pz7tokensecretq4d8f1xa")];

const fn rule(key: &'static str, huge: (&'static str, u8), wrong_type: &'static str, verdicts: [Verdict; 4]) -> Rule {
    Rule { key, huge, wrong_type, verdicts, with: &[] }
}

const RULES: &[Rule] = &[
    // Absolute path patterns; at least one.
    rule("devices", ("/dev/", b'v'), "5", [Refused, Accepted, Refused, Refused]),
    // Absolute path patterns; empty means microphones are not watched.
    rule("microphones", ("/dev/snd/", b'p'), "5", [Accepted, Accepted, Refused, Refused]),
    // Process names: any text.
    rule("ignore-processes", ("", b'p'), "5", [Accepted; 4]),
    rule("require-streaming-for", ("", b'p'), "5", [Accepted; 4]),
    // Whole seconds in a range.
    rule("start-delay", ("", b'9'), "abc", [Refused; 4]),
    rule("end-delay", ("", b'9'), "1.5", [Refused; 4]),
    rule("interval", ("", b'9'), "5m", [Refused; 4]),
    // An absolute directory path; empty means the default.
    rule("state-dir", ("/", b's'), "5", [Accepted, Accepted, Refused, Refused]),
    rule("log", ("", b's'), "5", [Refused; 4]),
    rule("log-level", ("", b'd'), "5", [Refused; 4]),
    rule("dry-run", ("", b'y'), "maybe", [Refused; 4]),
    // Empty means no server; a host longer than DNS allows is refused.
    rule("url", ("https://", b'h'), "5", [Accepted, Refused, Refused, Refused]),
    // Any text without spaces or control characters; never shown.
    rule("token", ("", b't'), "5", [Accepted; 4]),
    // Read when a url is set: a file that is not there is refused; empty is "no token yet", a warning for config.
    Rule {
        key: "token-file",
        huge: ("/", b't'),
        wrong_type: "5",
        verdicts: [Accepted, Refused, Refused, Refused],
        with: SERVER,
    },
    // Exactly 26 lowercase letters and digits; empty means the token's own user.
    rule("user-id", ("", b'u'), "5", [Accepted, Refused, Refused, Refused]),
    // At most 100 characters, any text.
    rule("meeting-message", ("", b'm'), "5", [Accepted, Refused, Accepted, Accepted]),
    // An emoji name: `-1` and `100` are real ones; not empty, at most 64 bytes.
    rule("meeting-emoji", ("", b'e'), "100", [Refused, Refused, Accepted, Accepted]),
    rule("meeting-status", ("", b'd'), "busy", [Refused; 4]),
    rule("ignore-if-offline", ("", b'y'), "maybe", [Refused; 4]),
    // Opened at validation when a server is set.
    Rule {
        key: "ca-file",
        huge: ("/", b'c'),
        wrong_type: "5",
        verdicts: [Accepted, Refused, Refused, Refused],
        with: SERVER_AND_TOKEN,
    },
    // 0, or 300 to 604800 seconds.
    rule("lease", ("", b'9'), "4h", [Refused; 4]),
    // Shell commands: any text.
    rule("on-meeting-start", ("", b'x'), "5", [Accepted; 4]),
    rule("on-meeting-end", ("", b'x'), "5", [Accepted; 4]),
];

fn binary_keys() -> Vec<String> {
    let out = Command::new(BIN).args(["config", "--keys"]).env_clear().output().unwrap();
    assert!(out.status.success(), "config --keys: {out:?}");
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

fn spec_takes_flag(key: &str) -> bool {
    key != "token"
}

fn env_var(key: &str) -> String {
    format!("MM_STATUS_SYNC_{}", key.replace('-', "_").to_ascii_uppercase())
}

/// The bad values for `rule`, sized for `source`: (label, bytes, expected verdict).
fn values(rule: &Rule, source: Source) -> Vec<(&'static str, Vec<u8>, Verdict)> {
    let size = if source == Source::File { HUGE_FILE } else { HUGE_ARG };
    let (prefix, filler) = rule.huge;
    let mut huge = prefix.as_bytes().to_vec();
    huge.resize(size, filler);
    let [empty, big, negative, wrong] = rule.verdicts;
    vec![
        ("empty", Vec::new(), empty),
        ("huge", huge, big),
        ("negative", b"-1".to_vec(), negative),
        ("not UTF-8", b"caf\xe9".to_vec(), Refused),
        ("wrong type", rule.wrong_type.as_bytes().to_vec(), wrong),
    ]
}

/// The binary with `command`, a clean environment, and `key` set to `value` through `source`.
fn command(scratch: &Path, command: &str, key: &str, value: &[u8], source: Source, with: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("HOME", scratch).env("PATH", "/usr/bin:/bin").stdin(Stdio::null()).arg(command);
    for (k, v) in with {
        cmd.env(k, v);
    }
    match source {
        Source::Flag => {
            cmd.arg(format!("--{key}")).arg(OsString::from_vec(value.to_vec()));
        }
        Source::Environment => {
            cmd.env(env_var(key), OsString::from_vec(value.to_vec()));
        }
        Source::File => {
            let path = scratch.join("config.env");
            let mut text = format!("# written by tests/bad_input.rs\n{}=", env_var(key)).into_bytes();
            text.extend_from_slice(value);
            text.push(b'\n');
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(&path);
        }
    }
    cmd
}

/// Runs `cmd` to its end, reading its output as it comes (a huge value echoed by `config` fills a pipe); a process
/// still running after a minute is killed and reported: a `run` that started instead of refusing.
fn finish(mut cmd: Command, what: &str) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output().unwrap()));
    match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out,
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            let out = receiver.recv().unwrap();
            panic!("{what}: still running after 60 s (it started instead of refusing): {}", brief(&out.stderr));
        }
    }
}

/// The start of `bytes` for a failure message: the values under test are up to a megabyte.
fn brief(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() { format!("{cut:?}...") } else { format!("{cut:?}") }
}

/// Whether `text` names `key` as a word: `token` is not named by `token-file`.
fn names_key(text: &str, key: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_lowercase() || c == '-';
    text.match_indices(key).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + key.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

fn assert_refused(out: &Output, key: &str, value: &[u8], what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: expected exit 2, stderr {}", brief(&out.stderr));
    assert!(!stderr.contains("panicked"), "{what}: {}", brief(&out.stderr));
    let line = stderr.strip_suffix('\n').unwrap_or_else(|| panic!("{what}: stderr is not one line: {stderr:?}"));
    let one_line = !line.contains('\n') && !line.is_empty();
    assert!(one_line, "{what}: stderr is not exactly one line: {}", brief(&out.stderr));
    assert!(line.len() <= MAX_ERROR_LINE, "{what}: a {} byte error line", line.len());
    assert!(names_key(line, key), "{what}: the line does not name {key}: {line}");
    if key == "token" && value.len() > 2 {
        assert!(!out.stderr.windows(value.len().min(64)).any(|w| w == &value[..value.len().min(64)]), "{what}: {line}");
    }
}

fn assert_accepted(out: &Output, key: &str, value: &[u8], source: Source, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: expected the value to be accepted, stderr {}", brief(&out.stderr));
    assert!(!stderr.contains("panicked"), "{what}: {}", brief(&out.stderr));
    let var = env_var(key);
    let from = match source {
        Source::Flag => "flag".to_owned(),
        Source::Environment => "environment".to_owned(),
        Source::File => "file ".to_owned(),
    };
    if key == "token" {
        let state = if value.is_empty() { "not set".to_owned() } else { format!("set (from {from}") };
        assert!(stdout.contains(&format!("# {var}: {state}")), "{what}: {}", brief(&out.stdout));
        if value.len() > 2 {
            assert!(!stdout.contains(std::str::from_utf8(value).unwrap()), "{what}: the token is shown");
        }
        return;
    }
    // `config` prints the effective value, with where it came from on the line before.
    let shown = format!("{var}=\"{}\"", std::str::from_utf8(value).unwrap());
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines.iter().position(|l| *l == shown).unwrap_or_else(|| panic!("{what}: {var} not shown as given"));
    assert!(lines[at - 1].starts_with(&format!("# from: {from}")), "{what}: {} is not from {from}", lines[at - 1]);
}

/// Every bad value of every key through `source`, with `config`, and with `run` for the refused ones.
fn every_key_through(source: Source) {
    let scratch = TempDir::new(&format!("bad-input-{source:?}"));
    let keys = binary_keys();
    let ruled: Vec<&str> = RULES.iter().map(|r| r.key).collect();
    assert_eq!(ruled, keys, "tests/bad_input.rs needs a rule for every key the binary lists, in its order");
    let mut checked = 0;
    for rule in RULES {
        if source == Source::Flag && (!spec_takes_flag(rule.key) || rule.key == "dry-run") {
            continue; // the token has no flag (tested below); --dry-run is a switch without a value
        }
        for (label, value, verdict) in values(rule, source) {
            let what = format!("{} {label} from {source:?}", rule.key);
            let out = finish(command(&scratch, "config", rule.key, &value, source, rule.with), &what);
            match verdict {
                Accepted => assert_accepted(&out, rule.key, &value, source, &format!("config: {what}")),
                Refused => {
                    assert_refused(&out, rule.key, &value, &format!("config: {what}"));
                    let mut run = command(&scratch, "run", rule.key, &value, source, rule.with);
                    if rule.key != "dry-run" {
                        // Should validation let it through, a dry run starts (and is caught by the time limit)
                        // rather than stopping at the missing url, which would pass for a refusal.
                        run.arg("--dry-run");
                    }
                    assert_refused(&finish(run, &what), rule.key, &value, &format!("run: {what}"));
                }
            }
            checked += 1;
        }
    }
    let expected = RULES.len() * 5 - if source == Source::Flag { 10 } else { 0 };
    assert_eq!(checked, expected);
}

#[test]
fn every_key_given_as_a_flag() {
    every_key_through(Source::Flag);
}

#[test]
fn every_key_given_in_the_environment() {
    every_key_through(Source::Environment);
}

#[test]
fn every_key_given_in_the_config_file() {
    every_key_through(Source::File);
}

#[test]
fn the_message_limit_is_100_characters_not_bytes() {
    let scratch = TempDir::new("bad-input-message-limit");
    for source in [Source::Flag, Source::Environment, Source::File] {
        for (message, verdict) in
            [("é".repeat(100), Accepted), ("🎥".repeat(101), Refused), ("[".repeat(100), Accepted)]
        {
            let what = format!("meeting-message of {} characters from {source:?}", message.chars().count());
            let out = finish(command(&scratch, "config", "meeting-message", message.as_bytes(), source, &[]), &what);
            match verdict {
                Accepted => assert_accepted(&out, "meeting-message", message.as_bytes(), source, &what),
                Refused => {
                    assert_refused(&out, "meeting-message", message.as_bytes(), &what);
                    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 100 characters"), "{what}");
                }
            }
        }
    }
}

#[test]
fn the_token_is_never_a_flag_and_never_echoed() {
    let scratch = TempDir::new("bad-input-token-flag");
    let secret = "k9w3pz7tokensecretq4d8f1xa";
    for command_name in ["config", "run"] {
        let out = finish(command(&scratch, command_name, "token", secret.as_bytes(), Source::Flag, &[]), "--token");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret), "{stderr}");
    }
    // A token with a space is refused once a server makes it used; the line says so without the value.
    let out = finish(command(&scratch, "run", "token", b"two words secret", Source::Environment, SERVER), "token");
    assert_refused(&out, "token", b"two words secret", "token with a space");
    assert!(String::from_utf8_lossy(&out.stderr).contains("(value not shown)"));
}

#[test]
fn a_config_file_or_token_file_that_never_ends_is_refused() {
    // procfs says 0 bytes for /proc/self/pagemap, then reads on for gigabytes: the reads must stop at the limit.
    let scratch = TempDir::new("bad-input-endless");
    for command_name in ["config", "run"] {
        let mut cmd = command(&scratch, command_name, "log", b"stderr", Source::Environment, &[]);
        cmd.args(["--config", "/proc/self/pagemap"]);
        let out = finish(cmd, "--config /proc/self/pagemap");
        assert_eq!(out.status.code(), Some(2), "{}", brief(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("mm-status-sync: config file /proc/self/pagemap: "), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let with = [("MM_STATUS_SYNC_URL", "http://127.0.0.1:9")];
    let out = finish(
        command(&scratch, "config", "token-file", b"/proc/self/pagemap", Source::Flag, &with),
        "--token-file /proc/self/pagemap",
    );
    assert_refused(&out, "token-file", b"/proc/self/pagemap", "token-file /proc/self/pagemap");
}
