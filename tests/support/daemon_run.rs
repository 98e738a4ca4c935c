//! The real binary run against a `FakeMattermost`, for tests that kill, restart, starve and soak it: a scene (a
//! temp dir with a fake camera node and a state dir), daemons whose stderr is collected through a pipe (so the
//! log survives kill -9 and a file size limit on the daemon), and camera holders that are real processes.
//!
//! Every wait polls with a generous limit and returns `Err` with the log instead of panicking, so a test that
//! runs a matrix of cases can collect every failing case before failing.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{FakeMattermost, UserState};

pub const BIN: &str = env!("CARGO_BIN_EXE_mm-status-sync");
/// Long enough for a loaded 2-core machine; a wait normally ends in milliseconds.
pub const WAIT: Duration = Duration::from_secs(30);

/// A temp dir with `video0` (the fake camera node) and `state/`, and a fake server.
pub struct Scene {
    pub dir: PathBuf,
    pub fake: FakeMattermost,
}

impl Scene {
    pub fn new(name: &str) -> Scene {
        let dir = std::env::temp_dir().join(format!("mm-run-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::write(dir.join("video0"), b"").unwrap();
        Scene { dir, fake: FakeMattermost::start() }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn backup_path(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }

    /// True when `state.json` exists in any form (also as a dangling symlink).
    pub fn backup_exists(&self) -> bool {
        std::fs::symlink_metadata(self.backup_path()).is_ok()
    }

    /// The daemon's command line: stderr logging, delays 0, the scene's camera pattern, state dir and server.
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
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec 3<\"$1\"; exec sleep 600", "sh"]).arg(device.dir.join("video0"));
        Camera(cmd.spawn().unwrap())
    }

    fn command_in(&self, camera_dir: &std::path::Path, state_dir: &std::path::Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["--log", "stderr", "--interval", "3600", "--start-delay", "0", "--end-delay", "0"])
            .args(["--device", &format!("{}/video*", camera_dir.display())])
            .args(["--state-dir", state_dir.to_str().unwrap(), "--url", &self.fake.url()])
            .args(extra)
            .env("MM_STATUS_SYNC_TOKEN", self.fake.token())
            .env_remove("MM_STATUS_SYNC_CONFIG")
            .env_remove("STATE_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// Starts the daemon and waits for its start line.
    pub fn daemon(&self, extra: &[&str]) -> Result<Daemon, String> {
        self.spawn(self.command(extra))
    }

    /// Starts `cmd` (from `command`, perhaps with a uid or limits added) and waits for its start line.
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
        let d = Daemon { child, log, reader: Some(reader) };
        d.wait_log("Starting Mattermost Status Sync Daemon")?;
        Ok(d)
    }

    /// A process holding the camera node open, as root (or whoever runs the tests).
    pub fn open_camera(&self) -> Camera {
        self.open_camera_with(|_| {})
    }

    /// A process holding the camera node open, started as `uid`/`gid`: a daemon running as another user sees only
    /// that user's processes.
    pub fn open_camera_as(&self, uid: u32, gid: u32) -> Camera {
        self.open_camera_with(|c| {
            c.uid(uid).gid(gid);
        })
    }

    fn open_camera_with(&self, setup: impl FnOnce(&mut Command)) -> Camera {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec 3<\"$1\"; exec sleep 600", "sh"]).arg(self.dir.join("video0"));
        setup(&mut cmd);
        Camera(cmd.spawn().unwrap())
    }

    /// Polls the fake until `check` holds; `Err` names `what` and shows the server state.
    pub fn wait_state(&self, what: &str, check: impl Fn(&UserState) -> bool) -> Result<UserState, String> {
        if self.fake.wait_until(WAIT, &check) {
            Ok(self.fake.state())
        } else {
            Err(format!("{what}: not reached; server state {:?}", self.fake.state()))
        }
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

    /// Polls until `check` holds; `Err` names `what`.
    pub fn wait_for(&self, what: &str, check: impl Fn() -> bool) -> Result<(), String> {
        wait_for(what, check)
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

/// Polls until `check` holds, for at most `WAIT`.
pub fn wait_for(what: &str, check: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    while !check() {
        if Instant::now() >= deadline {
            return Err(format!("{what}: not reached in {} s", WAIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A running daemon. Dropping it kills it.
pub struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

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

    /// Waits until `needle` occurs at least `n` times in the log.
    pub fn wait_log_count(&self, needle: &str, n: usize) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        while self.count(needle) < n {
            if Instant::now() >= deadline {
                return Err(format!("{needle:?} not {n} times in the log:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
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
        matches!(self.child.try_wait(), Ok(None))
    }

    /// kill -9, then reaps it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_reader();
    }

    /// SIGTERM (which restores before exiting), then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let code = self.child.wait().unwrap().code();
        self.join_reader();
        code
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process holding the camera node open; dropping it closes the camera.
pub struct Camera(Child);

impl Camera {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The meeting status as the daemon sets it by default: DND (its own, or the user's left alone) and the marker at
/// the end of the custom status with the `calendar` emoji.
pub fn in_meeting(s: &UserState) -> bool {
    s.status == "dnd"
        && s.custom_status.as_ref().is_some_and(|c| c.text.ends_with("[In a meeting]") && c.emoji == "calendar")
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
