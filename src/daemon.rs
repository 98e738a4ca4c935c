//! The daemon: one synchronous loop over a closed set of events (device activity, a timer, reload, terminate)
//! that ties detection, the debounce and the sync shell together.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Config, Inputs};
use crate::debounce::{Debounce, Transition};
use crate::detect::scan::Scanner;
use crate::detect::watch::{Wake, Watcher};
use crate::detect::{DeviceClass, DeviceSet, Filter, Verdict};
use crate::hooks::Hooks;
use crate::notify::Notifier;
use crate::state::{MemoryStore, StateFile, Store};
use crate::sync::{Backend, Sync, Want};

/// How long SIGTERM may spend putting the user's status back before exiting.
const RESTORE_ON_EXIT: Duration = Duration::from_secs(20);
/// How long a reload that moves to another server may spend putting the status back on the old one first.
const HANDOVER_TIME: Duration = Duration::from_secs(20);
/// After an open event that a full scan could not pin on anyone (the descriptor is installed just after the
/// event), look once more shortly after.
const OPEN_RACE_RESCAN: Duration = Duration::from_millis(200);
/// Holders that count only while streaming start and stop streaming without any inotify event; look at them this
/// often while they are the only holders.
const STREAMING_POLL: Duration = Duration::from_secs(2);

/// What wakes the loop.
enum Event {
    Device(Wake),
    Tick,
    Reload,
    Terminate,
}

/// Why a full scan runs, for the debug log and the benchmark's idle count.
#[derive(Clone, Copy, Debug)]
enum ScanReason {
    Startup,
    Safety,
    Opened,
    LastHolderGone,
    Topology,
    Reload,
    OpenRace,
    /// A node that could not be watched is watched now; it may have been opened in the meantime.
    Rewatched,
}

pub(crate) struct Daemon {
    inputs: Inputs,
    config: Config,
    devices: DeviceSet,
    filter: Filter,
    scanner: Scanner,
    watcher: Watcher,
    debounce: Debounce,
    sync: Sync<Box<dyn Backend>, Box<dyn Store>>,
    hooks: Hooks,
    notifier: Notifier,
    signal_pipe: UnixStream,
    hup: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    next_full_scan: Instant,
    recheck_at: Option<Instant>,
    /// A full scan shortly after an open that the last one could not pin on anyone new.
    open_race_at: Option<Instant>,
    sync_due: Option<Instant>,
    /// A reloaded configuration for another server, held back while the meeting status set on the current one
    /// could not be put back there: it takes effect once no backup is left (see `hand_over`).
    held_back: Option<Config>,
    watchdog_due: Option<Instant>,
    /// Whether a camera, and a microphone, were in use at the last evaluation (for the "in use by" / "free" lines).
    last_in_use: [bool; 2],
    full_scans: u64,
}

/// Why the daemon could not start.
#[derive(Debug)]
pub(crate) struct StartError(pub(crate) String);

const CLASSES: [DeviceClass; 2] = [DeviceClass::Camera, DeviceClass::Microphone];

impl Daemon {
    pub(crate) fn new(inputs: Inputs, config: Config) -> Result<Daemon, StartError> {
        let devices = crate::wiring::device_set(&config);
        let scanner = Scanner::new().map_err(|e| StartError(format!("cannot open /proc: {e}")))?;
        let watcher =
            Watcher::new(&devices.watch_patterns()).map_err(|e| StartError(format!("cannot start inotify: {e}")))?;
        let store: Box<dyn Store> =
            if config.dry_run { Box::new(MemoryStore::default()) } else { Box::new(StateFile::new(&config.state_dir)) };
        let backend = crate::wiring::backend(&config).map_err(StartError)?;
        let sync = Sync::new(backend, store, config.meeting.clone());
        let debounce = Debounce::new(config.start_delay, config.end_delay, sync.has_backup());

        let (signal_pipe, signal_write) = UnixStream::pair().map_err(|e| StartError(e.to_string()))?;
        signal_pipe.set_nonblocking(true).map_err(|e| StartError(e.to_string()))?;
        let hup = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        let register = || -> std::io::Result<()> {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            signal_hook::flag::register(SIGHUP, Arc::clone(&hup))?;
            signal_hook::flag::register(SIGTERM, Arc::clone(&term))?;
            signal_hook::flag::register(SIGINT, Arc::clone(&term))?;
            for sig in [SIGHUP, SIGTERM, SIGINT] {
                signal_hook::low_level::pipe::register(sig, signal_write.try_clone()?)?;
            }
            Ok(())
        };
        register().map_err(|e| StartError(format!("cannot install signal handlers: {e}")))?;

        let now = Instant::now();
        Ok(Daemon {
            filter: crate::wiring::filter(&config),
            inputs,
            devices,
            scanner,
            watcher,
            debounce,
            sync,
            hooks: Hooks::default(),
            notifier: Notifier::from_env(),
            signal_pipe,
            hup,
            term,
            next_full_scan: now,
            recheck_at: None,
            open_race_at: None,
            sync_due: Some(now),
            held_back: None,
            watchdog_due: None,
            last_in_use: [false; 2],
            full_scans: 0,
            config,
        })
    }

    /// Runs until SIGTERM or SIGINT; returns the exit code.
    pub(crate) fn run(mut self) -> i32 {
        for w in &self.config.warnings {
            log::warn!("{w}");
        }
        let nodes = match self.devices.node_count() {
            0 => "no device node yet, waiting for the first one to appear".to_owned(),
            1 => "1 device node".to_owned(),
            n => format!("{n} device nodes"),
        };
        let microphones = if self.config.microphones.is_empty() {
            String::new()
        } else {
            let patterns: Vec<&str> = self.config.microphones.iter().map(|p| p.as_str()).collect();
            format!("; microphones {}", patterns.join(", "))
        };
        log::info!(
            "Starting Mattermost Status Sync Daemon {} (watching {}{microphones}; {nodes}{})",
            env!("CARGO_PKG_VERSION"),
            self.config.devices.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
            if self.config.dry_run { "; dry run: the server is never called" } else { "" }
        );
        self.full_scan(ScanReason::Startup);
        self.evaluate(Instant::now());
        self.notifier.ready();
        self.watchdog_due = self.notifier.watchdog_interval().map(|i| Instant::now() + i);
        loop {
            match self.next_event() {
                Event::Terminate => return self.terminate(),
                Event::Reload => self.reload(),
                Event::Device(wake) => self.on_device(wake),
                Event::Tick => {}
            }
            let now = Instant::now();
            if now >= self.next_full_scan {
                self.full_scan(ScanReason::Safety);
            } else if self.open_race_at.is_some_and(|t| now >= t) {
                self.full_scan(ScanReason::OpenRace);
            } else if self.recheck_at.is_some_and(|t| now >= t) {
                self.recheck_at = None;
                self.recheck(true);
            }
            if self.debounce.deadline().is_some_and(|t| now >= t) {
                // Confirm with the ground truth before a meeting starts or ends.
                self.recheck(false);
            }
            self.evaluate(now);
            if !self.sync.has_backup() {
                if let Some(config) = self.held_back.take() {
                    match self.apply(config) {
                        Ok(()) => log::info!("configuration reloaded (held back until the status was back)"),
                        Err(e) => log::error!("reload rejected: {e}; keeping the current configuration"),
                    }
                }
            }
            if self.watchdog_due.is_some_and(|t| now >= t) {
                self.notifier.watchdog();
                self.watchdog_due = self.notifier.watchdog_interval().map(|i| now + i);
            }
        }
    }

    /// Waits for the next event: a signal, inotify, or the earliest deadline.
    fn next_event(&mut self) -> Event {
        loop {
            if self.term.swap(false, Ordering::Relaxed) {
                return Event::Terminate;
            }
            if self.hup.swap(false, Ordering::Relaxed) {
                return Event::Reload;
            }
            let now = Instant::now();
            let deadlines = [
                Some(self.next_full_scan),
                self.recheck_at,
                self.open_race_at,
                self.debounce.deadline(),
                self.sync_due,
                self.watchdog_due,
                self.hooks.reap(now),
            ];
            let next = deadlines.into_iter().flatten().min();
            if next.is_some_and(|t| t <= now) {
                return Event::Tick;
            }
            let timeout = next.map(|t| t - now);
            let mut ready = [false; 2];
            if let Err(e) =
                crate::sys::poll_readable(&[self.watcher.fd(), self.signal_pipe.as_raw_fd()], &mut ready, timeout)
            {
                log::error!("poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            if ready[1] {
                let mut buf = [0u8; 64];
                while matches!(self.signal_pipe.read(&mut buf), Ok(n) if n > 0) {}
                continue;
            }
            if ready[0] {
                match self.watcher.read_events() {
                    Ok(wake) if wake.any() => return Event::Device(wake),
                    Ok(_) => continue,
                    Err(e) => {
                        log::warn!("inotify: {e}; doing a full scan");
                        return Event::Device(Wake { topology: true, ..Wake::default() });
                    }
                }
            }
            if !ready[0] && !ready[1] && timeout.is_some() {
                return Event::Tick;
            }
        }
    }

    fn on_device(&mut self, wake: Wake) {
        log::debug!("device event: {wake:?}");
        if wake.topology {
            self.devices.refresh();
            if let Err(e) = self.watcher.rewatch(&self.devices.watch_patterns()) {
                log::warn!("cannot watch devices: {e}");
            }
            self.full_scan(ScanReason::Topology);
            return;
        }
        if wake.retry && self.watcher.retry_failed() > 0 {
            self.full_scan(ScanReason::Rewatched);
            return;
        }
        // Only a full scan finds a new holder. While known ones count for every kind of device watched, the
        // meeting is on whoever else opens one; otherwise (nobody, or only holders that do not count: ignored,
        // idle, playback; or a camera in use and a microphone perhaps opened) an open may be the one that matters.
        if wake.opened && !self.every_kind_counted() {
            self.full_scan(ScanReason::Opened);
            if !self.every_kind_counted() {
                self.open_race_at = Some(Instant::now() + OPEN_RACE_RESCAN);
            }
        } else if wake.opened || wake.closed {
            self.recheck(true);
        }
    }

    /// Whether known holders count for cameras and, when microphones are watched, for microphones: then nobody
    /// who opens a device now can change whether there is a meeting.
    fn every_kind_counted(&self) -> bool {
        let mics = !self.devices.microphone_patterns().is_empty();
        self.scanner.in_use_by(DeviceClass::Camera) && (!mics || self.scanner.in_use_by(DeviceClass::Microphone))
    }

    /// Re-examines the known holders; when `full_if_gone`, a full scan when the last one that counted is gone
    /// (someone who opened a device since may still hold it).
    fn recheck(&mut self, full_if_gone: bool) {
        if self.scanner.holders().is_empty() {
            if self.open_race_at.is_none() && full_if_gone {
                self.full_scan(ScanReason::OpenRace);
            }
            return;
        }
        let counted = self.scanner.in_use();
        self.scanner.recheck(&self.devices, &self.filter);
        let gone = self.scanner.holders().is_empty() || (counted && !self.scanner.in_use());
        if gone && full_if_gone {
            self.full_scan(ScanReason::LastHolderGone);
        }
    }

    fn full_scan(&mut self, reason: ScanReason) {
        // The safety net for a refused watch whose permission change was missed; before the scan, so that the
        // scan covers whatever happened before the watch existed.
        if self.watcher.failed() > 0 {
            self.watcher.retry_failed();
        }
        // Why processes could not be read costs a read each; only the debug line says it.
        let debug = log::log_enabled!(log::Level::Debug);
        self.scanner.explain_unreadable(debug);
        let stats = self.scanner.full_scan(&self.devices, &self.filter);
        self.open_race_at = None;
        self.full_scans += 1;
        self.next_full_scan = Instant::now() + self.config.interval;
        if debug {
            let why = crate::detect::scan::explain_skipped(&stats, self.scanner.not_dumpable(&stats));
            log::debug!(
                "full scan ({reason:?}, #{}): {} processes, {} descriptors, {} skipped{}, {} holders in {:.1} ms",
                self.full_scans,
                stats.processes,
                stats.fds,
                stats.skipped,
                if why.is_empty() { why } else { format!(" ({why})") },
                self.scanner.holders().len(),
                stats.elapsed.as_secs_f64() * 1000.0
            );
        }
    }

    /// Who holds a device (of `class`, or of either), for log lines and hooks: `zoom (pid 4242) on /dev/video0`.
    fn apps(&self, class: Option<DeviceClass>) -> String {
        let counted: Vec<String> = self
            .scanner
            .holders()
            .iter()
            .filter(|h| h.verdict == Verdict::Counts && class.is_none_or(|c| h.class == c))
            .map(|h| format!("{} (pid {}) on {}", h.comm(), h.pid, h.device_lossy()))
            .collect();
        if counted.is_empty() { "nobody".to_owned() } else { counted.join(", ") }
    }

    /// Whether the devices are held only by processes that count while they stream (whose maps were read), counted
    /// or not. Starting or stopping a stream sends no inotify event, so this one case is polled: every
    /// `STREAMING_POLL`, only while it lasts. A holder that counts without the gate ends with a close, which
    /// inotify reports.
    fn streaming_gated_only(&self) -> bool {
        let holders = self.scanner.holders();
        holders.iter().any(|h| h.streaming.is_some())
            && !holders.iter().any(|h| h.verdict == Verdict::Counts && h.streaming.is_none())
    }

    /// Feeds the devices' state to the debounce and the result to the sync shell.
    fn evaluate(&mut self, now: Instant) {
        for (i, class) in CLASSES.into_iter().enumerate() {
            let in_use = self.scanner.in_use_by(class);
            if in_use != self.last_in_use[i] {
                if in_use {
                    log::info!("{class} in use by {}", self.apps(Some(class)));
                } else {
                    log::info!("{class} free");
                }
                self.last_in_use[i] = in_use;
            }
        }
        // A camera or a microphone makes the meeting; it ends when both have been free for end-delay.
        let in_use = self.scanner.in_use();
        if self.streaming_gated_only() && self.recheck_at.is_none() {
            self.recheck_at = Some(now + STREAMING_POLL);
        }
        match self.debounce.observe(in_use, now) {
            Some(Transition::Started) => {
                let apps = self.apps(None);
                log::info!("meeting started: {apps}");
                if let Some(cmd) = &self.config.on_meeting_start {
                    self.hooks.spawn("start", cmd, &apps);
                }
                self.sync_due = Some(now);
            }
            Some(Transition::Ended) => {
                log::info!("meeting ended");
                if let Some(cmd) = &self.config.on_meeting_end {
                    self.hooks.spawn("end", cmd, "");
                }
                self.sync_due = Some(now);
            }
            None => {}
        }
        if self.sync_due.is_some_and(|t| now >= t) {
            let want = if self.debounce.in_meeting() { Want::Meeting } else { Want::NoMeeting };
            self.sync_due = self.sync.step(want, now);
        }
    }

    fn reload(&mut self) {
        self.notifier.reloading();
        log::info!("SIGHUP: reloading the configuration");
        // A newer configuration replaces one held back.
        self.held_back = None;
        match self.inputs.load() {
            Ok(config) => match self.cannot_reload(&config) {
                Some(why) => log::error!("reload rejected: {why}; restart instead. Keeping the current configuration"),
                // The new settings must prove usable before anything is done for them.
                None => match crate::wiring::backend(&config).map(drop) {
                    Err(e) => log::error!("reload rejected: {e}; keeping the current configuration"),
                    Ok(()) => match self.hand_over(&config) {
                        Err(e) => {
                            log::error!(
                                "reload held back: {e}; the current configuration stays until it is (at the latest \
                                 when this meeting ends), then this one takes effect"
                            );
                            self.held_back = Some(config);
                        }
                        Ok(()) => match self.apply(config) {
                            Ok(()) => log::info!("configuration reloaded"),
                            Err(e) => log::error!("reload rejected: {e}; keeping the current configuration"),
                        },
                    },
                },
            },
            Err(e) => log::error!("reload rejected: {e}; keeping the current configuration"),
        }
        self.notifier.ready();
    }

    /// Why `new` cannot replace the running configuration, if it cannot: where the backup lives is fixed for the
    /// life of the process (a restart reads the new place), and so is dry-run.
    fn cannot_reload(&self, new: &Config) -> Option<&'static str> {
        if new.dry_run != self.config.dry_run {
            Some("dry-run cannot change while running")
        } else if new.state_dir != self.config.state_dir {
            Some("state-dir cannot change while running (the backup stays where it is)")
        } else {
            None
        }
    }

    /// Before a reload that points the daemon at another account (another `url` or `user-id`) while a meeting's
    /// status is set: puts the previous status back where it was taken from, with the current settings, so that
    /// nothing is left on a server the daemon no longer talks to. The token file is not read again meanwhile: it
    /// may hold the new server's token, which the old server must never see. If the status is not all back after
    /// `HANDOVER_TIME` of retries (that server fails), `Err`: the reload is held back, the meeting status is set
    /// again at once wherever a part was put back (the call goes on), and the backup stays.
    fn hand_over(&mut self, new: &Config) -> Result<(), String> {
        if self.config.dry_run {
            return Ok(());
        }
        let (Some(old), Some(next), Some(backup)) = (&self.config.server, &new.server, self.sync.backup()) else {
            return Ok(());
        };
        // Compared as written once normalised: a trailing slash or a default port is no other server.
        let whom = if old.url.as_str() != next.url.as_str() {
            format!("url changes to {}", next.url)
        } else if next.user_id.as_ref().is_some_and(|id| *id != backup.user_id) {
            "user-id changes".to_owned()
        } else {
            return Ok(());
        };
        log::info!(
            "{whom} while the meeting status is set on {}: putting the previous status back there first",
            old.url
        );
        // Back on only with the next configuration applied (`Sync::set_settings`): while this one is held back, the
        // file keeps the new server's token and the daemon keeps talking to the old server.
        self.sync.set_token_rereads(false);
        if self.sync.restore_until(Instant::now() + HANDOVER_TIME) && !self.sync.has_backup() {
            Ok(())
        } else {
            self.sync.act_at_next_step();
            self.sync_due = Some(Instant::now());
            Err(format!("the previous status is not back on {} yet", old.url))
        }
    }

    fn apply(&mut self, config: Config) -> Result<(), String> {
        let devices = crate::wiring::device_set(&config);
        let backend = crate::wiring::backend(&config)?;
        for w in &config.warnings {
            log::warn!("{w}");
        }
        crate::logger::init(config.log, config.log_level);
        self.devices = devices;
        if let Err(e) = self.watcher.rewatch(&self.devices.watch_patterns()) {
            log::warn!("cannot watch devices: {e}");
        }
        self.filter = crate::wiring::filter(&config);
        self.debounce.start_delay = config.start_delay;
        self.debounce.end_delay = config.end_delay;
        self.sync.set_settings(config.meeting.clone(), backend);
        self.config = config;
        self.full_scan(ScanReason::Reload);
        self.sync_due = Some(Instant::now());
        Ok(())
    }

    fn terminate(mut self) -> i32 {
        self.notifier.stopping();
        if self.sync.has_backup() {
            log::info!("stopping: putting the previous status back first");
            self.sync.restore_until(Instant::now() + RESTORE_ON_EXIT);
        }
        log::info!("stopped after {} full scans", self.full_scans);
        0
    }
}
