//! The real binary run against a `FakeMattermost`, for tests that kill, restart, starve and soak it: a scene (a
//! temp dir with a fake camera node and a state dir), daemons whose stderr is collected through a pipe (so the
//! log survives kill -9 and a file size limit on the daemon), and camera holders that are real processes.
//!
//! Every wait polls with a generous limit and returns `Err` with the log instead of panicking, so a test that
//! runs a matrix of cases can collect every failing case before failing.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use super::child::Reaped as Camera;
pub use super::{BIN, WAIT, in_meeting, wait_for};
use super::{FakeMattermost, Reaped, TempDir, TestTls, UserState, child::hold_open, wait_until};

/// A temp dir with `video0` (the fake camera node) and `state/`, and a fake server (over TLS with `tls`).
pub struct Scene {
    pub dir: TempDir,
    pub fake: FakeMattermost,
    /// The CA that signed the fake's certificate, for a scene over TLS.
    pub tls: Option<TestTls>,
    /// How long the waits of this scene and its daemons poll before they fail.
    pub wait: Duration,
}

impl Scene {
    /// `name` goes into the directory's path (which the daemon logs: keep it free of words a test looks for).
    pub fn new(name: &str) -> Scene {
        Scene::with_fake(name, FakeMattermost::start(), None)
    }

    /// A scene whose fake serves HTTPS with a certificate from a fresh test CA (`tls`).
    pub fn tls(name: &str) -> Scene {
        let tls = TestTls::new();
        Scene::with_fake(name, FakeMattermost::start_tls(&tls), Some(tls))
    }

    fn with_fake(name: &str, fake: FakeMattermost, tls: Option<TestTls>) -> Scene {
        let dir = TempDir::new(&format!("run-{name}"));
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::write(dir.join("video0"), b"").unwrap();
        Scene { dir, fake, tls, wait: WAIT }
    }

    /// The same scene with waits that fail only after `limit` (for faults that take the client's whole timeout).
    pub fn waiting(mut self, limit: Duration) -> Scene {
        self.wait = limit;
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The scene's own device: its state dir is the scene's.
    fn own_device(&self) -> Device {
        Device { dir: self.dir.to_path_buf() }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.own_device().state_dir()
    }

    pub fn backup_path(&self) -> PathBuf {
        self.own_device().backup_path()
    }

    /// True when `state.json` exists in any form (also as a dangling symlink).
    pub fn backup_exists(&self) -> bool {
        self.own_device().backup_exists()
    }

    /// The binary with `first` (a subcommand, or nothing), the scene's camera pattern and state dir, stdin null,
    /// and nothing from the test's own environment that could change what it does: no
    /// `MM_STATUS_SYNC_*` variable, no systemd `STATE_DIRECTORY`, no proxy (which would answer for a host that
    /// must not resolve).
    pub fn bare_command(&self, first: &[&str]) -> Command {
        bare_command_in(&self.dir, &self.state_dir(), first)
    }

    /// The daemon's command line: stderr logging, delays 0, the scene's camera pattern, state dir and server, the
    /// token in `MM_STATUS_SYNC_TOKEN`, stdout null.
    pub fn command(&self, extra: &[&str]) -> Command {
        self.command_in(&self.dir, &self.state_dir(), extra)
    }

    /// Another device of the same user: its own camera node and state dir under `<scene>/<name>/`, the scene's
    /// server and token.
    pub fn device(&self, name: &str) -> Device {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::write(dir.join("video0"), b"").unwrap();
        Device { dir }
    }

    /// The command line of `device`'s daemon.
    pub fn device_command(&self, device: &Device, extra: &[&str]) -> Command {
        self.command_in(&device.dir, &device.state_dir(), extra)
    }

    /// Starts `device`'s daemon and waits for its start line.
    pub fn device_daemon(&self, device: &Device, extra: &[&str]) -> Result<Daemon, String> {
        self.spawn(self.device_command(device, extra))
    }

    /// A process holding `device`'s camera node open.
    pub fn open_device_camera(&self, device: &Device) -> Camera {
        hold_open(&device.dir.join("video0"), |_| {})
    }

    fn command_in(&self, camera_dir: &Path, state_dir: &Path, extra: &[&str]) -> Command {
        let mut cmd = bare_command_in(camera_dir, state_dir, &[]);
        cmd.args(DAEMON_ARGS).args(["--url", &self.fake.url()]).args(extra);
        cmd.env("MM_STATUS_SYNC_TOKEN", self.fake.token()).stdout(Stdio::null());
        cmd
    }

    /// Starts the daemon and waits for its start line.
    pub fn daemon(&self, extra: &[&str]) -> Result<Daemon, String> {
        self.spawn(self.command(extra))
    }

    /// Starts `cmd` (from `command`, perhaps with a uid or limits added) and waits for its start line. Its stderr
    /// is collected through a pipe.
    pub fn spawn(&self, mut cmd: Command) -> Result<Daemon, String> {
        let mut child = cmd.stderr(Stdio::piped()).spawn().map_err(|e| format!("cannot start {BIN}: {e}"))?;
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let d = Daemon { child: Reaped(child), log, reader: Some(reader), wait: self.wait };
        d.wait_log("Starting Mattermost Status Sync Daemon")?;
        Ok(d)
    }

    /// A process holding the camera node open, as root (or whoever runs the tests).
    pub fn open_camera(&self) -> Camera {
        hold_open(&self.dir.join("video0"), |_| {})
    }

    /// A process holding the camera node open, started as `uid`/`gid`: a daemon running as another user sees only
    /// that user's processes.
    pub fn open_camera_as(&self, uid: u32, gid: u32) -> Camera {
        hold_open(&self.dir.join("video0"), |c| {
            c.uid(uid).gid(gid);
        })
    }

    /// Polls the fake until `check` holds; `Err` names `what` and shows the server state.
    pub fn wait_state(&self, what: &str, check: impl Fn(&UserState) -> bool) -> Result<UserState, String> {
        self.wait_state_for(what, self.wait, check)
    }

    /// Like `wait_state`, for events that take longer than `WAIT` by design (the server's minute jobs).
    pub fn wait_state_for(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&UserState) -> bool,
    ) -> Result<UserState, String> {
        if self.fake.wait_until(limit, &check) {
            Ok(self.fake.state())
        } else {
            Err(format!("{what}: not reached in {} s; server state {:?}", limit.as_secs(), self.fake.state()))
        }
    }

    /// Polls until `check` holds; `Err` names `what` and shows the server state. An `Err` from `check` (a broken
    /// invariant) ends the wait at once.
    pub fn wait_until(&self, what: &str, check: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
        wait_until(what, self.wait, check).map_err(|e| format!("{e}; server state {:?}", self.fake.state()))
    }

    /// Polls until `check` holds; `Err` names `what`.
    pub fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) -> Result<(), String> {
        wait_until(what, self.wait, || Ok(check()))
    }
}

/// What every daemon of a scene runs with: logs on stderr, no safety tick to speak of, no delays.
const DAEMON_ARGS: [&str; 8] = ["--log", "stderr", "--interval", "3600", "--start-delay", "0", "--end-delay", "0"];

fn bare_command_in(camera_dir: &Path, state_dir: &Path, first: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(first)
        .args(["--device", &format!("{}/video*", camera_dir.display())])
        .args(["--state-dir", state_dir.to_str().unwrap()])
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy().to_ascii_lowercase();
        if k.starts_with("mm_status_sync_") || k.ends_with("_proxy") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// One more device of the scene's user (see `Scene::device`).
pub struct Device {
    pub dir: PathBuf,
}

impl Device {
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn backup_path(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }

    pub fn backup_exists(&self) -> bool {
        std::fs::symlink_metadata(self.backup_path()).is_ok()
    }

    /// The backup file's text ("" when there is none).
    pub fn backup_text(&self) -> String {
        std::fs::read_to_string(self.backup_path()).unwrap_or_default()
    }

    /// The device's instance id, once its daemon made one.
    pub fn instance_id(&self) -> Option<String> {
        std::fs::read_to_string(self.state_dir().join("instance")).ok().map(|s| s.trim().to_owned())
    }
}

/// A running daemon and everything it wrote to stderr. Dropping it kills it (its `Reaped` child does).
pub struct Daemon {
    child: Reaped,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    wait: Duration,
}

impl std::ops::Deref for Daemon {
    type Target = Reaped;

    fn deref(&self) -> &Reaped {
        &self.child
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Reaped {
        &mut self.child
    }
}

impl Daemon {
    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// How many times `needle` occurs in the log so far.
    pub fn count(&self, needle: &str) -> usize {
        self.log.lock().unwrap().matches(needle).count()
    }

    pub fn wait_log(&self, needle: &str) -> Result<(), String> {
        self.wait_log_count(needle, 1)
    }

    /// Waits until `needle` occurs at least `n` times in the log. The log grows over a test: a line an earlier
    /// cycle wrote must not satisfy the wait for this cycle's, so callers pass the occurrence they wait for.
    pub fn wait_log_count(&self, needle: &str, n: usize) -> Result<(), String> {
        wait_until("", self.wait, || Ok(self.count(needle) >= n))
            .map_err(|_| format!("{needle:?} not {n} times in the log:\n{}", self.log()))
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap().success();
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// Waits until the daemon has finished what it was doing when this was called: the loop handles one event at
    /// a time, so "configuration reloaded" is logged only after the pending sync step has run.
    pub fn settle(&self) -> Result<(), String> {
        let n = self.count("configuration reloaded");
        self.signal("HUP");
        self.wait_log_count("configuration reloaded", n + 1)
    }

    /// Still running (not exited)?
    pub fn is_running(&mut self) -> bool {
        self.child.alive()
    }

    /// kill -9, then reaps it; returns the whole log.
    pub fn kill9(self) -> String {
        let Daemon { child, log, reader, .. } = self;
        child.kill9();
        finish(log, reader)
    }

    /// SIGTERM (which restores before exiting), then the exit code.
    pub fn stop(self) -> Option<i32> {
        self.stop_with_log().0
    }

    /// SIGTERM, then the exit code and the whole log.
    pub fn stop_with_log(self) -> (Option<i32>, String) {
        let Daemon { child, log, reader, .. } = self;
        let code = child.stop();
        (code, finish(log, reader))
    }
}

/// The log once the reader has seen the end of the pipe.
fn finish(log: Arc<Mutex<String>>, reader: Option<JoinHandle<()>>) -> String {
    if let Some(r) = reader {
        let _ = r.join();
    }
    log.lock().unwrap().clone()
}

/// How `after` differs from the user's own state `before`, in everything a user or the server can observe:
/// availability, the manual flag, the custom status with its expiry (byte for byte when there was one), and the
/// DND end time and previous status while the user is in DND (the expiry job reads them only for a DND row;
/// outside DND the server keeps stale values that no REST call can reset).
pub fn differences(before: &UserState, after: &UserState) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{what}: was {a}, now {b}"));
        }
    };
    check("status", before.status.clone(), after.status.clone());
    check("manual", before.manual.to_string(), after.manual.to_string());
    check("custom status", format!("{:?}", before.custom_status), format!("{:?}", after.custom_status));
    if before.custom_status_raw.as_deref().is_some_and(|r| !r.is_empty()) {
        check(
            "custom status bytes",
            format!("{:?}", before.custom_status_raw),
            format!("{:?}", after.custom_status_raw),
        );
    }
    if before.status == "dnd" {
        check("dnd_end_time", before.dnd_end_time.to_string(), after.dnd_end_time.to_string());
        check("prev_status", before.prev_status.clone(), after.prev_status.clone());
    }
    out
}
