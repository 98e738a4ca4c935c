//! A small `log::Log` over syslog (ident mm-status-sync, facility daemon) or stderr: one line per event, long
//! lines capped so that a hostile server message cannot flood the journal.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Auto,
    Syslog,
    Stderr,
}

/// Longest line written, in bytes (sudo-rs caps syslog messages at 960).
const MAX_LINE: usize = 960;

enum Sink {
    Stderr,
    Syslog(Box<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>),
}

struct Logger {
    sink: Mutex<Sink>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Where `auto` sends lines: stderr for a terminal or journald (which adds its own timestamps), else syslog
/// when there is one.
pub fn resolve(target: LogTarget) -> LogTarget {
    match target {
        LogTarget::Auto if std::io::stderr().is_terminal() || std::env::var_os("JOURNAL_STREAM").is_some() => {
            LogTarget::Stderr
        }
        LogTarget::Auto if std::path::Path::new("/dev/log").exists() => LogTarget::Syslog,
        LogTarget::Auto => LogTarget::Stderr,
        other => other,
    }
}

/// Installs the logger once; later calls (after a reload) only change the level and the sink.
pub fn init(target: LogTarget, level: LevelFilter) {
    let sink = match resolve(target) {
        LogTarget::Syslog => {
            let formatter = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_DAEMON,
                hostname: None,
                process: "mm-status-sync".into(),
                pid: std::process::id(),
            };
            match syslog::unix(formatter) {
                Ok(l) => Sink::Syslog(Box::new(l)),
                Err(e) => {
                    eprintln!("mm-status-sync: cannot reach syslog ({e}); logging to stderr");
                    Sink::Stderr
                }
            }
        }
        _ => Sink::Stderr,
    };
    match LOGGER.get() {
        Some(l) => *l.sink.lock().unwrap_or_else(|p| p.into_inner()) = sink,
        None => {
            let l = LOGGER.get_or_init(|| Logger { sink: Mutex::new(sink) });
            let _ = log::set_logger(l);
        }
    }
    log::set_max_level(level);
}

/// Cuts `s` to at most `max` bytes on a character boundary, and folds line breaks so one event stays one line.
pub fn cap_line(s: &str, max: usize) -> String {
    let mut out: String = s.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    if out.len() > max {
        let mut cut = max.saturating_sub(3);
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("mm_status_sync")
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = cap_line(&record.args().to_string(), MAX_LINE);
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *sink {
            Sink::Stderr => {
                let level = match record.level() {
                    Level::Error => "ERROR",
                    Level::Warn => "WARN",
                    Level::Info => "INFO",
                    Level::Debug | Level::Trace => "DEBUG",
                };
                let _ = writeln!(std::io::stderr().lock(), "{level}: {line}");
            }
            Sink::Syslog(l) => {
                let _ = match record.level() {
                    Level::Error => l.err(line),
                    Level::Warn => l.warning(line),
                    Level::Info => l.info(line),
                    Level::Debug | Level::Trace => l.debug(line),
                };
            }
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::cap_line;

    #[test]
    fn lines_are_capped_on_a_character_boundary_and_stay_one_line() {
        assert_eq!(cap_line("a\nb\rc", 100), "a b c");
        let long = "é".repeat(1000);
        let capped = cap_line(&long, 960);
        assert!(capped.len() <= 960 && capped.ends_with("..."));
        assert_eq!(cap_line("short", 960), "short");
    }
}
