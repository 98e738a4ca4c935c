//! The command line: flags for every configuration key (argh), the commands, and the mapping of outcomes to exit
//! codes (0 fine, 1 a negative answer or a runtime failure, 2 bad input).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argh::FromArgs;

use crate::config::{self, Config, Inputs, KEYS};
use crate::detect::pattern::Pattern;
use crate::detect::scan::Scanner;
use crate::detect::{DeviceSet, Filter};

/// Marks you "in a meeting" on Mattermost while your webcam is in use, and puts back exactly what was there before.
///
/// Commands: run (the default: the daemon), scan (who holds a camera now; exit 0 if someone counts, 1 if not),
/// config (the effective configuration; --keys lists the keys), check (reach the server and show the user),
/// restore (put the saved status back now). Every key is also MM_STATUS_SYNC_<KEY> in the environment or the
/// --config file; the token only there, never as a flag.
#[derive(FromArgs, Debug, Default)]
pub struct Args {
    /// run, scan, config, check or restore
    #[argh(positional)]
    pub command: Option<String>,
    /// config file of MM_STATUS_SYNC_KEY=value lines (also MM_STATUS_SYNC_CONFIG)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// with `config`: list every key name, one per line
    #[argh(switch)]
    pub keys: bool,
    /// print the version
    #[argh(switch)]
    pub version: bool,
    /// a device path pattern; repeatable (adds to --devices)
    #[argh(option)]
    pub device: Vec<String>,
    /// device path patterns, comma-separated (default /dev/video*)
    #[argh(option)]
    pub devices: Option<String>,
    /// process names that never count
    #[argh(option)]
    pub ignore_processes: Option<String>,
    /// process names that count only while streaming (default pipewire,wireplumber)
    #[argh(option)]
    pub require_streaming_for: Option<String>,
    /// seconds in use before the meeting starts (default 5)
    #[argh(option)]
    pub start_delay: Option<String>,
    /// seconds free before the meeting ends (default 30)
    #[argh(option)]
    pub end_delay: Option<String>,
    /// seconds between safety full scans (default 300)
    #[argh(option)]
    pub interval: Option<String>,
    /// where the backup is kept
    #[argh(option)]
    pub state_dir: Option<String>,
    /// auto, syslog or stderr (default auto)
    #[argh(option)]
    pub log: Option<String>,
    /// error, warn, info or debug (default info)
    #[argh(option)]
    pub log_level: Option<String>,
    /// never call the server; log what would be sent
    #[argh(switch)]
    pub dry_run: bool,
    /// the Mattermost server base URL
    #[argh(option)]
    pub url: Option<String>,
    /// file holding the personal access token
    #[argh(option)]
    pub token_file: Option<String>,
    /// whose status to manage (default: the token's own user)
    #[argh(option)]
    pub user_id: Option<String>,
    /// appended to the custom status text (default " [In a meeting]")
    #[argh(option)]
    pub meeting_message: Option<String>,
    /// custom status emoji during a meeting (default calendar)
    #[argh(option)]
    pub meeting_emoji: Option<String>,
    /// dnd, away, online, offline or keep (default dnd)
    #[argh(option)]
    pub meeting_status: Option<String>,
    /// do nothing while offline (default true)
    #[argh(option)]
    pub ignore_if_offline: Option<String>,
    /// a PEM file with extra trusted CA certificates
    #[argh(option)]
    pub ca_file: Option<String>,
    /// seconds ahead for the meeting status's expiry (default 14400; 0 disables)
    #[argh(option)]
    pub lease: Option<String>,
    /// command run when a meeting starts
    #[argh(option)]
    pub on_meeting_start: Option<String>,
    /// command run when a meeting ends
    #[argh(option)]
    pub on_meeting_end: Option<String>,
}

impl Args {
    /// The configuration keys given as flags, by key name. The one place flag fields meet key names; a test
    /// checks it covers every key that takes a flag.
    pub fn flag_values(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut push = |name: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((name, v.clone()));
            }
        };
        let devices = match (&self.devices, self.device.is_empty()) {
            (d, true) => d.clone(),
            (Some(d), false) => Some(format!("{d},{}", self.device.join(","))),
            (None, false) => Some(self.device.join(",")),
        };
        push("devices", &devices);
        push("ignore-processes", &self.ignore_processes);
        push("require-streaming-for", &self.require_streaming_for);
        push("start-delay", &self.start_delay);
        push("end-delay", &self.end_delay);
        push("interval", &self.interval);
        push("state-dir", &self.state_dir);
        push("log", &self.log);
        push("log-level", &self.log_level);
        push("dry-run", &self.dry_run.then(|| "true".to_owned()));
        push("url", &self.url);
        push("token-file", &self.token_file);
        push("user-id", &self.user_id);
        push("meeting-message", &self.meeting_message);
        push("meeting-emoji", &self.meeting_emoji);
        push("meeting-status", &self.meeting_status);
        push("ignore-if-offline", &self.ignore_if_offline);
        push("ca-file", &self.ca_file);
        push("lease", &self.lease);
        push("on-meeting-start", &self.on_meeting_start);
        push("on-meeting-end", &self.on_meeting_end);
        out
    }
}

/// Parses `argv` (without the program name); argh's own messages for help and bad flags.
pub fn parse(argv: &[String]) -> Result<Args, (String, i32)> {
    // argh would answer `--token=VALUE` with "Unrecognized argument: --token=VALUE", copying the token into the
    // error (and from there into a journal); say where the token goes instead, without repeating it.
    if argv.iter().any(|a| a == "--token" || a.starts_with("--token=")) {
        let text = "mm-status-sync: --token is not accepted (the command line is visible to every user): put the \
                    token in a file and use --token-file PATH, or set MM_STATUS_SYNC_TOKEN";
        return Err((text.to_owned(), 2));
    }
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    Args::from_args(&["mm-status-sync"], &strs).map_err(|e| (e.output, if e.status.is_ok() { 0 } else { 2 }))
}

/// The binary's entry point; returns the exit code.
pub fn main() -> i32 {
    let mut argv = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => argv.push(s),
            Err(_) => {
                eprintln!("mm-status-sync: {}", not_utf8_argument(argv.last().map(String::as_str), argv.len() + 1));
                return 2;
            }
        }
    }
    let args = match parse(&argv) {
        Ok(a) => a,
        Err((text, code)) => {
            if code == 0 {
                println!("{text}")
            } else {
                eprintln!("{text}")
            }
            return code;
        }
    };
    if args.version {
        println!("mm-status-sync {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let inputs = Inputs::from_process(args.flag_values(), args.config.clone());
    match args.command.as_deref().unwrap_or("run") {
        "config" if args.keys => {
            for spec in KEYS {
                println!("{}", spec.name);
            }
            0
        }
        "config" => cmd_config(&Inputs { allow_incomplete: true, ..inputs }),
        command @ ("run" | "scan" | "check" | "restore") => {
            let config = match inputs.load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("mm-status-sync: {e}");
                    return 2;
                }
            };
            match command {
                "run" => cmd_run(inputs, config),
                "scan" => cmd_scan(&config),
                "check" => cmd_check(&config),
                _ => cmd_restore(&config),
            }
        }
        other => {
            eprintln!("mm-status-sync: unknown command {other:?}: expected run, scan, config, check or restore");
            2
        }
    }
}

/// The error line for argument number `position` that is not UTF-8, naming the key when it is a flag's value.
fn not_utf8_argument(previous: Option<&str>, position: usize) -> String {
    // --dry-run is a switch: what follows it is not its value.
    let takes_value = |k: &&str| *k != "dry-run" && KEYS.iter().any(|s| s.flag && s.name == *k);
    let key = previous.and_then(|p| p.strip_prefix("--")).filter(takes_value);
    match key {
        Some(key) => format!("invalid {key} (not valid UTF-8) (from flag): expected valid UTF-8 text"),
        None if previous == Some("--device") => {
            "invalid devices (not valid UTF-8) (from flag --device): expected valid UTF-8 text".to_owned()
        }
        None => format!("argument {position} is not valid UTF-8"),
    }
}

fn cmd_config(inputs: &Inputs) -> i32 {
    let loaded = inputs.raw().and_then(|raw| inputs.validate(&raw).map(|c| (raw, c)));
    match loaded {
        Ok((raw, config)) => {
            print!("{}", config::render(&raw, &config));
            for w in &config.warnings {
                eprintln!("mm-status-sync: warning: {w}");
            }
            0
        }
        Err(e) => {
            eprintln!("mm-status-sync: {e}");
            2
        }
    }
}

fn cmd_run(inputs: Inputs, config: Config) -> i32 {
    crate::logger::init(config.log, config.log_level);
    if config.server.is_none() && !config.dry_run {
        eprintln!(
            "mm-status-sync: missing url: set MM_STATUS_SYNC_URL and a token (or use --dry-run to try it without a server)"
        );
        return 2;
    }
    match crate::daemon::Daemon::new(inputs, config) {
        Ok(d) => d.run(),
        Err(e) => {
            log::error!("cannot start: {}", e.0);
            1
        }
    }
}

/// Runs one full scan for `config`'s devices; also used by `check`.
fn scan(config: &Config) -> Result<Scanner, String> {
    let patterns: Result<Vec<Pattern>, _> = config.devices.iter().map(|d| Pattern::new(d)).collect();
    let devices = DeviceSet::new(patterns.map_err(|e| e.to_string())?);
    let filter = Filter {
        ignore_processes: config.ignore_processes.clone(),
        require_streaming_for: config.require_streaming_for.clone(),
    };
    let mut scanner = Scanner::new().map_err(|e| format!("cannot open /proc: {e}"))?;
    let stats = scanner.full_scan(&devices, &filter);
    if stats.skipped > 0 {
        eprintln!(
            "note: {} processes could not be read (other users' processes need CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)",
            stats.skipped
        );
    }
    Ok(scanner)
}

fn print_holders(scanner: &Scanner) {
    if scanner.holders().is_empty() {
        println!("no process holds a device");
    }
    for h in scanner.holders() {
        let streaming = match h.streaming {
            Some(true) => "streaming",
            Some(false) => "not streaming",
            None => "-",
        };
        println!("pid {:<8} {:<16} {:<24} {:<14} {}", h.pid, h.comm(), h.device_lossy(), streaming, h.verdict.reason());
    }
}

fn cmd_scan(config: &Config) -> i32 {
    match scan(config) {
        Ok(scanner) => {
            print_holders(&scanner);
            if scanner.in_use() { 0 } else { 1 }
        }
        Err(e) => {
            eprintln!("mm-status-sync: {e}");
            1
        }
    }
}

/// What `check` says of the meeting emoji. The server accepts a system emoji or an existing custom emoji
/// (docs/mattermost-semantics.md, section 6); the API can only be asked about custom ones, and the daemon carries
/// no copy of the system list beyond its own default.
fn describe_meeting_emoji(emoji: &str, custom_exists: bool) -> String {
    match (emoji, custom_exists) {
        ("", _) => "meeting-emoji: none".to_owned(),
        (_, true) => format!("meeting-emoji: :{emoji}: (a custom emoji on this server)"),
        ("calendar", false) => "meeting-emoji: :calendar: (a system emoji)".to_owned(),
        (_, false) => format!(
            "WARNING: meeting-emoji :{emoji}: does not exist as a custom emoji on this server; unless it is one of \
             Mattermost's system emoji names, the server refuses it and meetings are marked without an emoji"
        ),
    }
}

fn cmd_check(config: &Config) -> i32 {
    let Some(server) = &config.server else {
        eprintln!("mm-status-sync: check needs a server: set MM_STATUS_SYNC_URL and a token");
        return 2;
    };
    for w in &config.warnings {
        println!("warning: {w}");
    }
    println!("configuration: valid");
    let client = match crate::mattermost::Client::new(
        &server.url,
        server.token.clone(),
        server.ca_file.as_deref(),
        crate::mattermost::Timeouts::default(),
    ) {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL: {e}");
            return 1;
        }
    };
    let result = (|| {
        let me = client.get_me()?;
        println!("server: {} reached (TLS verified where https)", server.url);
        println!("token user: {} ({})", me.username, me.id);
        let id = server.user_id.clone().unwrap_or(me.id.clone());
        let user = if id == me.id { me } else { client.get_user(&id)? };
        let status = client.get_status(&id)?;
        println!("managing: {} ({})", user.username, user.id);
        println!("availability: {}{}", status.status, if status.manual { " (manual)" } else { " (automatic)" });
        match &user.custom_status {
            Some(cs) => println!("custom status: :{}: {:?} {}", cs.emoji, cs.text, cs.duration),
            None => println!("custom status: none"),
        }
        println!(
            "{}",
            describe_meeting_emoji(&config.meeting.emoji, client.custom_emoji_exists(&config.meeting.emoji)?)
        );
        Ok::<(), crate::mattermost::ApiError>(())
    })();
    if let Err(e) = result {
        println!("FAIL: {e}");
        return 1;
    }
    match crate::state::Store::load(&mut crate::state::StateFile::new(&config.state_dir)) {
        Ok(Some(b)) => println!("backup: present (meeting since {})", crate::time::format_rfc3339(b.started_at)),
        Ok(None) => println!("backup: none"),
        Err(e) => println!("backup: {e}"),
    }
    match scan(config) {
        Ok(s) => print_holders(&s),
        Err(e) => println!("scan: {e}"),
    }
    println!("OK");
    0
}

fn cmd_restore(config: &Config) -> i32 {
    crate::logger::init(crate::config::LogTarget::Stderr, config.log_level);
    let backend = match crate::daemon::backend(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("mm-status-sync: {e}");
            return 2;
        }
    };
    let store: Box<dyn crate::state::Store> = Box::new(crate::state::StateFile::new(&config.state_dir));
    let mut sync = crate::sync::Sync::new(backend, store, config.meeting.clone());
    if !sync.has_backup() {
        println!("no backup: nothing to restore");
        return 0;
    }
    if sync.restore_until(Instant::now() + Duration::from_secs(30)) { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_that_takes_a_flag_has_one_and_the_token_has_none() {
        for spec in KEYS {
            let flag = format!("--{}", spec.name);
            let argv: Vec<String> =
                if spec.name == "dry-run" { vec![flag.clone()] } else { vec![flag.clone(), "v".into()] };
            match parse(&argv) {
                Ok(args) if spec.flag => {
                    let values = args.flag_values();
                    assert_eq!(values.len(), 1, "{flag}");
                    assert_eq!(values[0].0, spec.name, "{flag}");
                }
                Ok(_) => panic!("{flag} must not be accepted"),
                Err((text, code)) => {
                    assert!(!spec.flag, "{flag}: {text}");
                    assert_eq!(code, 2);
                }
            }
        }
    }

    #[test]
    fn a_token_flag_is_refused_without_repeating_its_value() {
        for argv in [&["--token=s3cr3t", "check"][..], &["check", "--token", "s3cr3t"], &["--token"]] {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            let (text, code) = parse(&argv).expect_err("--token must be refused");
            assert_eq!(code, 2);
            assert!(text.contains("--token-file") && text.contains("MM_STATUS_SYNC_TOKEN"), "{text}");
            assert!(!text.contains("s3cr3t") && !text.contains('\n'), "{text}");
        }
        // Only the exact flag: --token-file is a key of its own.
        let argv: Vec<String> = ["--token-file", "/t", "check"].map(String::from).to_vec();
        assert_eq!(parse(&argv).unwrap().flag_values(), vec![("token-file", "/t".to_owned())]);
    }

    #[test]
    fn a_flag_value_that_is_not_utf8_names_its_key() {
        assert_eq!(
            not_utf8_argument(Some("--meeting-message"), 2),
            "invalid meeting-message (not valid UTF-8) (from flag): expected valid UTF-8 text"
        );
        assert!(not_utf8_argument(Some("--device"), 4).starts_with("invalid devices "));
        assert_eq!(not_utf8_argument(Some("--dry-run"), 2), "argument 2 is not valid UTF-8");
        assert_eq!(not_utf8_argument(None, 1), "argument 1 is not valid UTF-8");
    }

    #[test]
    fn device_may_be_repeated_and_joins_devices() {
        let argv: Vec<String> =
            ["--device", "/a", "--devices", "/b,/c", "--device", "/d", "scan"].map(String::from).to_vec();
        let args = parse(&argv).unwrap();
        assert_eq!(args.command.as_deref(), Some("scan"));
        assert_eq!(args.flag_values(), vec![("devices", "/b,/c,/a,/d".to_owned())]);
    }
}
