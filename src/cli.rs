//! The command line: a flag for every configuration key that takes one, read from the key table, the commands,
//! and the mapping of outcomes to exit codes (0 fine, 1 a negative answer or a runtime failure, 2 bad input).
//!
//! `argh::FromArgs` is implemented by hand rather than derived: the derive needs one struct field per flag, written
//! out, which is the list of keys a second time (and their help and defaults a third). Implemented over the table,
//! a key added there is a flag, in `--help`, with no code here; argh's trait and `EarlyExit` stay the interface.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argh::{EarlyExit, FromArgs};

use crate::config::{self, Config, Inputs, KEYS, keys};
use crate::detect::scan::Scanner;

/// The commands, with what each does, for `--help` and the man page.
pub(crate) const COMMANDS: &[(&str, &str)] = &[
    ("run", "the daemon (the default when no command is given)"),
    ("scan", "who holds a device now; exit 0 when one counts, 1 when none; needs no server"),
    ("config", "the effective configuration as a config file, each value with its source; --keys lists the keys"),
    ("check", "validate the configuration, reach the server, show the user, the backup and who holds a device"),
    ("restore", "put the saved status back now and exit"),
];

/// The flags that are not configuration keys, with their value placeholder and what they do.
pub(crate) const OTHER_FLAGS: &[(&str, &str, &str)] = &[
    ("config", "PATH", "config file of MM_STATUS_SYNC_KEY=value lines (also MM_STATUS_SYNC_CONFIG)"),
    ("keys", "", "with config: list every key name, one per line"),
    ("version", "", "print the version"),
    ("help", "", "print this help"),
];

/// The parsed command line.
#[derive(Debug, Default)]
pub(crate) struct Args {
    /// run, scan, config, check or restore
    pub(crate) command: Option<String>,
    pub(crate) config: Option<PathBuf>,
    pub(crate) keys: bool,
    pub(crate) version: bool,
    /// `(key name, value)` in the order given; a repeatable flag's items are joined to its key's value.
    flags: Vec<(&'static str, String)>,
    /// Items of repeatable flags (`--device`), by key.
    repeated: Vec<(&'static str, String)>,
}

impl Args {
    /// The configuration keys given as flags, by key name. A repeatable flag's items (`--device`) are added to the
    /// key's list (`--devices`).
    pub(crate) fn flag_values(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for spec in KEYS {
            let given = self.flags.iter().find(|(k, _)| *k == spec.name).map(|(_, v)| v.clone());
            let items: Vec<&str> =
                self.repeated.iter().filter(|(k, _)| *k == spec.name).map(|(_, v)| v.as_str()).collect();
            let value = match (given, items.is_empty()) {
                (given, true) => given,
                (Some(list), false) => Some(format!("{list},{}", items.join(","))),
                (None, false) => Some(items.join(",")),
            };
            if let Some(value) = value {
                out.push((spec.name, value));
            }
        }
        out
    }
}

fn usage_error(text: String) -> EarlyExit {
    EarlyExit { output: format!("mm-status-sync: {text} (see --help)"), status: Err(()) }
}

impl FromArgs for Args {
    fn from_args(_command_name: &[&str], args: &[&str]) -> Result<Args, EarlyExit> {
        let mut parsed = Args::default();
        let mut rest = args.iter();
        let mut options_end = false;
        while let Some(&arg) = rest.next() {
            let Some(name) = arg.strip_prefix("--").filter(|_| !options_end) else {
                if arg == "-h" && !options_end {
                    return Err(EarlyExit { output: help(), status: Ok(()) });
                }
                if parsed.command.is_some() {
                    return Err(usage_error(format!("unexpected argument {arg:?} after the command")));
                }
                parsed.command = Some(arg.to_owned());
                continue;
            };
            let mut value = |flag: &str| {
                rest.next().map(|v| (*v).to_owned()).ok_or_else(|| usage_error(format!("--{flag} needs a value")))
            };
            match name {
                "" => options_end = true,
                "help" => return Err(EarlyExit { output: help(), status: Ok(()) }),
                "version" => parsed.version = true,
                "keys" => parsed.keys = true,
                "config" if parsed.config.is_some() => return Err(usage_error("--config is given twice".into())),
                "config" => parsed.config = Some(PathBuf::from(value(name)?)),
                _ => {
                    if let Some(spec) = KEYS.iter().find(|s| s.repeatable == Some(name)) {
                        parsed.repeated.push((spec.name, value(name)?));
                        continue;
                    }
                    // Only up to a `=`: `--tokne=VALUE` must not be copied into the error (and from there a journal).
                    let shown = name.split('=').next().unwrap_or_default();
                    let Some(spec) = KEYS.iter().find(|s| s.name == name && s.flag) else {
                        return Err(usage_error(format!("unknown flag --{shown}")));
                    };
                    // As argh had it: a value given twice is a mistake, a switch given twice is still on.
                    if parsed.flags.iter().any(|(k, _)| *k == spec.name) {
                        if spec.is_switch() {
                            continue;
                        }
                        return Err(usage_error(format!("--{name} is given twice")));
                    }
                    let v = if spec.is_switch() { "true".to_owned() } else { value(name)? };
                    parsed.flags.push((spec.name, v));
                }
            }
        }
        Ok(parsed)
    }
}

/// `--help`: the commands, then every key from the table with its flag (or variable), what is allowed and the
/// default.
pub(crate) fn help() -> String {
    let mut out = String::from(
        "Usage: mm-status-sync [COMMAND] [--config PATH] [--KEY VALUE]...\n\n\
         Marks you \"in a meeting\" on Mattermost while your webcam is in use, and puts back exactly what was there\n\
         before.\n\nCommands:\n",
    );
    for (name, what) in COMMANDS {
        out.push_str(&format!("  {name:<10}{what}\n"));
    }
    out.push_str("\nOptions:\n");
    for (name, metavar, what) in OTHER_FLAGS {
        out.push_str(&format!("  {:<32}{what}\n", format!("--{name} {metavar}").trim_end()));
    }
    out.push_str(
        "\nKeys: every key is also MM_STATUS_SYNC_<KEY> in the environment and a MM_STATUS_SYNC_<KEY>=value line\n\
         in the --config file; a flag beats the environment, which beats the file.\n",
    );
    for spec in KEYS {
        let flag = match (spec.flag, spec.is_switch()) {
            (false, _) => format!("{} (no flag)", spec.env_var()),
            (true, true) => format!("--{}", spec.name),
            (true, false) => format!("--{} {}", spec.name, spec.metavar()),
        };
        out.push_str(&format!("  {flag}\n      {}\n      allowed: {}", spec.help, spec.allowed()));
        match (spec.default, spec.empty_means) {
            (Some(d), _) if !d.is_empty() => out.push_str(&format!("; default: {d:?}")),
            (_, "") => {}
            (_, means) => out.push_str(&format!("; default: {means}")),
        }
        if let Some(repeatable) = spec.repeatable {
            out.push_str(&format!(
                "\n      --{repeatable} {} adds one (repeatable)",
                spec.metavar().trim_end_matches('S')
            ));
        }
        out.push('\n');
    }
    out
}

/// Parses `argv` (without the program name): help, version and usage errors as `(text, exit code)`.
pub(crate) fn parse(argv: &[String]) -> Result<Args, (String, i32)> {
    // Said before anything else, without repeating the value: `--token=VALUE` or `--token VALUE`.
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
    let flag = previous.and_then(|p| p.strip_prefix("--")).unwrap_or_default();
    let takes_value = |s: &&keys::Spec| s.flag && s.name == flag && !s.is_switch();
    if let Some(spec) = KEYS.iter().find(takes_value) {
        return format!("invalid {} (not valid UTF-8) (from flag): expected valid UTF-8 text", spec.name);
    }
    match KEYS.iter().find(|s| s.repeatable == Some(flag)) {
        Some(spec) => {
            format!("invalid {} (not valid UTF-8) (from flag --{flag}): expected valid UTF-8 text", spec.name)
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
    let devices = crate::wiring::device_set(config);
    let filter = crate::wiring::filter(config);
    let mut scanner = Scanner::new().map_err(|e| format!("cannot open /proc: {e}"))?;
    scanner.explain_unreadable(true);
    let stats = scanner.full_scan(&devices, &filter);
    if stats.other_users > 0 {
        eprintln!(
            "note: {} processes of other users could not be read (that needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: \
             run the system service to see every user's calls)",
            stats.other_users
        );
    }
    if stats.not_dumpable > 0 {
        let names: Vec<String> =
            scanner.not_dumpable(&stats).iter().map(|p| format!("{} (pid {})", p.comm(), p.pid)).collect();
        let more = stats.not_dumpable - names.len();
        eprintln!(
            "note: {} of your own processes could not be read because they made themselves non-dumpable: {}{}; \
             reading them needs CAP_SYS_PTRACE: run the system service, which has it",
            stats.not_dumpable,
            names.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
    }
    let rest = stats.skipped - stats.other_users - stats.not_dumpable;
    if rest > 0 {
        eprintln!("note: {rest} processes exited during the scan or could not be read for another reason");
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
        println!(
            "pid {:<8} {:<16} {:<10} {:<24} {:<14} {}",
            h.pid,
            h.comm(),
            h.class.name(),
            h.device_lossy(),
            streaming,
            h.verdict.reason()
        );
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
    let client = match crate::wiring::client(server) {
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
        Ok(Some(b)) => {
            let since = crate::time::format_rfc3339(b.started_at);
            match (b.server.as_deref(), config.server.as_ref().map(|s| s.url.as_str())) {
                (Some(there), Some(here)) if there != here => println!(
                    "WARNING: backup: present (meeting since {since}), taken on {there}, but url is {here}: the \
                     daemon will move it aside at its start; `restore` with that server's url and token puts it back"
                ),
                (Some(there), _) => println!("backup: present (meeting since {since}, on {there})"),
                (None, _) => println!("backup: present (meeting since {since})"),
            }
        }
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
    crate::logger::init(crate::logger::LogTarget::Stderr, config.log_level);
    let backend = match crate::wiring::backend(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("mm-status-sync: {e}");
            return 2;
        }
    };
    let store: Box<dyn crate::state::Store> = Box::new(crate::state::StateFile::new(&config.state_dir));
    let mut sync = crate::sync::Sync::new(backend, store, config.meeting.clone());
    if let Some((there, here)) = sync.foreign_backup() {
        eprintln!(
            "mm-status-sync: the backup in {} was taken on {there}, but url is {here}: run restore with that \
             server's url and token",
            config.state_dir.display()
        );
        return 1;
    }
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

    #[test]
    fn help_comes_from_the_table_and_exits_0() {
        let (text, code) = parse(&["--help".to_owned()]).expect_err("help");
        assert_eq!(code, 0);
        for spec in KEYS {
            assert!(text.contains(&spec.help[..20.min(spec.help.len())]), "{}: {text}", spec.name);
            assert!(text.contains(&spec.allowed()), "{}", spec.name);
        }
        assert!(text.contains("  --dry-run\n") && text.contains("  --start-delay SECONDS\n"), "{text}");
        assert!(text.contains("  MM_STATUS_SYNC_TOKEN (no flag)\n"), "{text}");
    }

    #[test]
    fn usage_errors_are_one_line_and_exit_2() {
        let cases: &[(&[&str], &str)] = &[
            (&["--frobnicate"], "unknown flag --frobnicate"),
            (&["--tokne=s3cr3t"], "unknown flag --tokne "),
            (&["--start-delay"], "--start-delay needs a value"),
            (&["--lease", "1", "--lease", "2"], "--lease is given twice"),
            (&["--config", "/a", "--config", "/b"], "--config is given twice"),
            (&["scan", "check"], "unexpected argument \"check\""),
        ];
        for (argv, want) in cases {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            let (text, code) = parse(&argv).expect_err(want);
            assert_eq!(code, 2, "{argv:?}");
            assert!(text.contains(want) && !text.contains('\n') && !text.contains("s3cr3t"), "{argv:?}: {text}");
        }
        // After `--` everything is the command, and a switch takes no value.
        let argv: Vec<String> = ["--dry-run", "--dry-run", "--", "--scan"].map(String::from).to_vec();
        let args = parse(&argv).unwrap();
        assert_eq!(
            (args.command.as_deref(), args.flag_values()),
            (Some("--scan"), vec![("dry-run", "true".to_owned())])
        );
    }
}
