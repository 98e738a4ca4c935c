//! End to end: the real binary, the fake Mattermost server and a real child process holding a temp device file.
//! Full meetings restore byte for byte; kill -9 and restart ends correct; a server down at the start or the end
//! ends correct once it is back; SIGHUP changes the message; TLS with a test CA works with `ca-file` only.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::child::Reaped as Daemon;
use support::child::Reaped as Holder;
use support::{FakeMattermost, Fault, FaultScope, TestTls, UserState};

const BIN: &str = env!("CARGO_BIN_EXE_mm-status-sync");
const WAIT: Duration = Duration::from_secs(15);

struct Env {
    dir: PathBuf,
    fake: FakeMattermost,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("mm-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::write(dir.join("video0"), b"").unwrap();
        Env { dir, fake: FakeMattermost::start() }
    }

    fn daemon(&self, extra: &[&str]) -> Daemon {
        let log = std::fs::File::create(self.dir.join("daemon.log")).unwrap();
        let child = Command::new(BIN)
            .args(["--log", "stderr", "--interval", "3600", "--start-delay", "0", "--end-delay", "0"])
            .args(["--device", &format!("{}/video*", self.dir.display())])
            .args(["--state-dir", self.dir.join("state").to_str().unwrap(), "--url", &self.fake.url()])
            .args(extra)
            .env("MM_STATUS_SYNC_TOKEN", self.fake.token())
            .env_remove("MM_STATUS_SYNC_CONFIG")
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon(child);
        self.wait_log("Starting Mattermost Status Sync Daemon");
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str) {
        self.wait_log_count(needle, 1);
    }

    /// Waits for the `n`-th occurrence: an earlier cycle's line must not end the wait.
    fn wait_log_count(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.log().matches(needle).count() < n {
            assert!(Instant::now() < deadline, "{needle:?} not {n} times in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn open_camera(&self) -> Holder {
        let child = Command::new("sh")
            .args(["-c", "exec 3<\"$1\"; exec sleep 120", "sh"])
            .arg(self.dir.join("video0"))
            .spawn()
            .unwrap();
        Holder(child)
    }

    fn wait_state(&self, what: &str, check: impl Fn(&UserState) -> bool) -> UserState {
        assert!(
            self.fake.wait_until(WAIT, &check),
            "{what}: server state {:#?}\nlog:\n{}",
            self.fake.state(),
            self.log()
        );
        self.fake.state()
    }

    fn backup_exists(&self) -> bool {
        self.dir.join("state/state.json").exists()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn in_meeting(s: &UserState) -> bool {
    s.status == "dnd" && s.custom_status.as_ref().is_some_and(|c| c.text.ends_with("[In a meeting]"))
}

/// The user's own state before a meeting, as the server stores it.
fn user_setup(env: &Env) -> UserState {
    let expires = support::go_time::GoTime::from_unix_nanos(i128::from(env.fake.now_unix() + 86_400) * 1_000_000_000)
        .to_rfc3339_nano();
    env.fake.set_status("away", true, 0);
    env.fake.set_custom_status("sandwich", "Lunch with \"the team\" ü", "today", &expires);
    env.fake.state()
}

fn assert_restored(before: &UserState, after: &UserState) {
    assert_eq!(after.status, before.status);
    assert_eq!(after.manual, before.manual);
    assert_eq!(after.custom_status_raw, before.custom_status_raw, "custom status byte for byte");
}

#[test]
fn full_cycles_restore_byte_for_byte() {
    let env = Env::new("cycle");
    let before = user_setup(&env);
    let d = env.daemon(&[]);
    for cycle in 1..=3 {
        let cam = env.open_camera();
        let s = env.wait_state("meeting set", in_meeting);
        assert_eq!(s.custom_status.unwrap().text, "Lunch with \"the team\" ü [In a meeting]");
        assert!(s.dnd_end_time > env.fake.now_unix() + 14_000, "DND carries the lease");
        assert_eq!(s.prev_status, "away");
        assert!(env.backup_exists());
        drop(cam);
        env.wait_state("restored", |s| s.status == "away" && !in_meeting(s));
        env.wait_log_count("RESTORE: Status restored (Avail: away) and backup deleted.", cycle);
        assert_restored(&before, &env.fake.state());
        assert!(!env.backup_exists());
    }
    assert_eq!(d.stop(), Some(0));
    let log = env.log();
    assert!(!log.contains(&env.fake.token()), "token in the log");
    for call in env.fake.calls() {
        assert_eq!(call.status, Some(200), "{call:?}");
        assert!(!call.path.contains(&env.fake.token()));
    }
}

#[test]
fn kill_9_at_any_point_and_restart_ends_correct() {
    // Kill right after the meeting status is set, while the camera is still on, and after it went off.
    for camera_stays_on in [true, false] {
        let env = Env::new(if camera_stays_on { "kill-on" } else { "kill-off" });
        let before = user_setup(&env);
        let d = env.daemon(&[]);
        let cam = env.open_camera();
        env.wait_state("meeting set", in_meeting);
        env.wait_log("meeting status set");
        d.kill9();
        assert!(env.backup_exists(), "the backup survives kill -9");
        if camera_stays_on {
            let d = env.daemon(&[]);
            env.wait_log("resuming");
            std::thread::sleep(Duration::from_millis(500));
            assert!(in_meeting(&env.fake.state()), "the meeting goes on after a restart");
            drop(cam);
            env.wait_state("restored", |s| !in_meeting(s));
            env.wait_log("backup deleted");
            assert_restored(&before, &env.fake.state());
            d.stop();
        } else {
            drop(cam);
            let d = env.daemon(&[]);
            env.wait_state("restored after restart", |s| !in_meeting(s));
            env.wait_log("backup deleted");
            assert_restored(&before, &env.fake.state());
            d.stop();
        }
    }
}

#[test]
fn kill_9_between_backup_and_first_call_changes_nothing_wrongly() {
    let env = Env::new("kill-early");
    let before = user_setup(&env);
    // The first call hangs, so the daemon is killed with the backup written and nothing set.
    env.fake.set_fault(Fault::NeverAnswer, FaultScope::on("PUT", "/api/v4/users").times(1));
    let d = env.daemon(&[]);
    let cam = env.open_camera();
    env.wait_log("BACKUP: Saved original status");
    d.kill9();
    env.fake.clear_faults();
    drop(cam);
    let d = env.daemon(&[]);
    env.wait_log("backup deleted");
    assert_restored(&before, &env.fake.state());
    d.stop();
}

#[test]
fn server_down_at_start_and_at_end_ends_correct_once_it_is_back() {
    let env = Env::new("down");
    let before = user_setup(&env);
    let d = env.daemon(&[]);
    env.fake.set_fault(Fault::RefuseConnections, FaultScope::all());
    let cam = env.open_camera();
    env.wait_log("API ERROR");
    assert!(!env.backup_exists(), "no backup without a server to read from");
    env.fake.clear_faults();
    env.wait_state("meeting set once the server is back", in_meeting);
    env.fake.set_fault(Fault::app_error(503), FaultScope::all());
    drop(cam);
    env.wait_log("503");
    assert!(env.backup_exists(), "the backup is kept while the server fails");
    env.fake.clear_faults();
    env.wait_state("restored once the server is back", |s| !in_meeting(s));
    env.wait_log("backup deleted");
    assert_restored(&before, &env.fake.state());
    d.stop();
}

#[test]
fn sighup_changes_the_meeting_message() {
    let env = Env::new("hup");
    env.fake.set_status("online", false, 0);
    let conf = env.dir.join("config.env");
    std::fs::write(&conf, "MM_STATUS_SYNC_MEETING_MESSAGE=\"On a call\"\n").unwrap();
    let d = env.daemon(&["--config", conf.to_str().unwrap()]);
    let cam = env.open_camera();
    env.wait_state("first message", |s| s.custom_status.as_ref().is_some_and(|c| c.text == "On a call"));
    drop(cam);
    env.wait_state("restored", |s| s.custom_status.is_none() && s.status == "online");
    std::fs::write(&conf, "MM_STATUS_SYNC_MEETING_MESSAGE=\"🎥 Busy\"\nMM_STATUS_SYNC_MEETING_STATUS=away\n").unwrap();
    d.signal("HUP");
    env.wait_log("configuration reloaded");
    let cam = env.open_camera();
    env.wait_state("new message", |s| {
        s.custom_status.as_ref().is_some_and(|c| c.text == "🎥 Busy") && s.status == "away"
    });
    drop(cam);
    let after = env.wait_state("restored", |s| s.custom_status.is_none() && s.status == "online");
    assert!(!after.manual);
    d.stop();
}

#[test]
fn tls_with_a_test_ca_works_with_ca_file_and_fails_clearly_without() {
    let tls = TestTls::new();
    let fake = FakeMattermost::start_tls(&tls);
    let check = |ca: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["check", "--url", &fake.url(), "--device", "/nonexistent/video*"]);
        if let Some(ca) = ca {
            cmd.args(["--ca-file", ca]);
        }
        let out = cmd.env("MM_STATUS_SYNC_TOKEN", fake.token()).env_remove("MM_STATUS_SYNC_CONFIG").output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = check(Some(tls.ca_file().to_str().unwrap()));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("token user: {} ({})", fake.username(), fake.user_id())), "{out}");
    assert!(out.contains("availability: "), "{out}");
    let (code, out) = check(None);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL") && out.to_lowercase().contains("certificate"), "{out}");
    assert!(!out.contains(&fake.token()), "{out}");
}

/// The latency figure for the notes: from the device being opened to the server receiving the status change,
/// with start-delay 0. Printed; correctness asserted, speed not.
#[test]
fn latency_from_open_to_server() {
    let env = Env::new("latency");
    env.fake.set_status("online", false, 0);
    let d = env.daemon(&[]);
    let mut samples = Vec::new();
    for _ in 0..20 {
        env.fake.clear_calls();
        let opened = Instant::now();
        let cam = env.open_camera();
        env.wait_state("meeting set", |s| s.status == "dnd");
        samples.push(opened.elapsed());
        drop(cam);
        env.wait_state("restored", |s| s.status == "online" && s.custom_status.is_none());
        env.wait_log("backup deleted");
    }
    samples.sort();
    eprintln!(
        "open -> status on server, start-delay 0, {} cycles: median {:.1} ms, worst {:.1} ms",
        samples.len(),
        samples[samples.len() / 2].as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0
    );
    d.stop();
}
