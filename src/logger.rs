//! A small `log::Log` over syslog (ident mm-status-sync, facility daemon) or stderr: one line per event, long
//! lines capped so that a hostile server message cannot flood the journal. Syslog is one RFC 3164 datagram per
//! line to `/dev/log`, written here rather than through a crate (which brought a date library for its timestamp).

use std::io::{IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
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

/// The local syslog socket.
const SYSLOG_SOCKET: &str = "/dev/log";
/// Facility `daemon` (3), shifted as RFC 3164's priority wants it.
const FACILITY_DAEMON: u8 = 3 << 3;

enum Sink {
    Stderr,
    /// An unconnected socket, so that a restarted syslog daemon (a new socket at the same path) is found again.
    Syslog {
        socket: UnixDatagram,
        path: PathBuf,
    },
}

/// One syslog datagram: `<priority>timestamp ident[pid]: line`.
fn syslog_datagram(level: Level, line: &str, now: i64) -> String {
    let severity = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    };
    let stamp = crate::time::format_rfc3164(now);
    format!("<{}>{stamp} mm-status-sync[{}]: {line}", FACILITY_DAEMON | severity, std::process::id())
}

fn syslog_sink(path: &Path) -> std::io::Result<Sink> {
    let socket = UnixDatagram::unbound()?;
    // Sent once so that a missing or refusing socket is said at start, not discovered line by line.
    socket.connect(path)?;
    let socket = UnixDatagram::unbound()?;
    Ok(Sink::Syslog { socket, path: path.to_owned() })
}

struct Logger {
    sink: Mutex<Sink>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Where `auto` sends lines: stderr for a terminal or journald (which adds its own timestamps), else syslog
/// when there is one.
pub(crate) fn resolve(target: LogTarget) -> LogTarget {
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
pub(crate) fn init(target: LogTarget, level: LevelFilter) {
    let sink = match resolve(target) {
        LogTarget::Syslog => match syslog_sink(Path::new(SYSLOG_SOCKET)) {
            Ok(sink) => sink,
            Err(e) => {
                eprintln!("mm-status-sync: cannot reach syslog ({e}); logging to stderr");
                Sink::Stderr
            }
        },
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
pub(crate) fn cap_line(s: &str, max: usize) -> String {
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
        let sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        write_line(&sink, record.level(), &line);
    }

    fn flush(&self) {}
}

/// Writes one line to `sink`; a line syslog does not take goes to stderr rather than nowhere.
fn write_line(sink: &Sink, level: Level, line: &str) {
    if let Sink::Syslog { socket, path } = sink {
        let datagram = syslog_datagram(level, line, crate::time::now_unix());
        if socket.send_to(datagram.as_bytes(), path).is_ok() {
            return;
        }
    }
    let level = match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug | Level::Trace => "DEBUG",
    };
    let _ = writeln!(std::io::stderr().lock(), "{level}: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a syslog daemon receives: the priority of facility daemon, the timestamp, ident and pid, the line.
    #[test]
    fn syslog_lines_are_rfc3164_datagrams_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("mm-status-sync-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let sink = syslog_sink(&path).unwrap();
        write_line(&sink, Level::Warn, "token file can be read by others");
        write_line(&sink, Level::Debug, "scan");
        let mut buf = [0u8; 2048];
        let pid = std::process::id();
        let n = receiver.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            got.starts_with("<28>")
                && got.ends_with(&format!(" mm-status-sync[{pid}]: token file can be read by others")),
            "{got}"
        );
        let n = receiver.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("<31>"));
        assert_eq!(syslog_datagram(Level::Error, "x", 0), format!("<27>Jan 01 00:00:00 mm-status-sync[{pid}]: x"));
        drop(receiver);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(syslog_sink(&path).is_err(), "a missing socket is said at start");
    }

    #[test]
    fn lines_are_capped_on_a_character_boundary_and_stay_one_line() {
        assert_eq!(cap_line("a\nb\rc", 100), "a b c");
        let long = "é".repeat(1000);
        let capped = cap_line(&long, 960);
        assert!(capped.len() <= 960 && capped.ends_with("..."));
        assert_eq!(cap_line("short", 960), "short");
    }
}
