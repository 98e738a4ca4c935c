//! End to end: the real binary, the fake Mattermost server and a real child process holding a temp device file.
//! Full meetings restore byte for byte; kill -9 and restart ends correct; a server down at the start or the end
//! ends correct once it is back; SIGHUP changes the message; TLS with a test CA works with `ca-file` only.

mod support;

use std::time::Instant;

use support::daemon_run::Scene;
use support::{Fault, FaultScope, UserState, in_meeting};

/// The user's own state before a meeting, as the server stores it.
fn user_setup(env: &Scene) -> UserState {
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
    let env = Scene::new("cycle");
    let before = user_setup(&env);
    let d = env.daemon(&[]).unwrap();
    for cycle in 1..=3 {
        let cam = env.open_camera();
        let s = env.wait_state("meeting set", in_meeting).unwrap();
        assert_eq!(s.custom_status.unwrap().text, "Lunch with \"the team\" ü [In a meeting]");
        assert!(s.dnd_end_time > env.fake.now_unix() + 14_000, "DND carries the lease");
        assert_eq!(s.prev_status, "away");
        assert!(env.backup_exists());
        drop(cam);
        env.wait_state("restored", |s| s.status == "away" && !in_meeting(s)).unwrap();
        // The availability is back before the backup is deleted: wait for this cycle's line, not an earlier one.
        d.wait_log_count("RESTORE: Status restored (Avail: away) and backup deleted.", cycle).unwrap();
        assert_restored(&before, &env.fake.state());
        assert!(!env.backup_exists());
    }
    let (code, log) = d.stop_with_log();
    assert_eq!(code, Some(0));
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
        let env = Scene::new(if camera_stays_on { "kill-on" } else { "kill-off" });
        let before = user_setup(&env);
        let d = env.daemon(&[]).unwrap();
        let cam = env.open_camera();
        env.wait_state("meeting set", in_meeting).unwrap();
        d.wait_log_count("meeting status set", 1).unwrap();
        d.kill9();
        assert!(env.backup_exists(), "the backup survives kill -9");
        if camera_stays_on {
            let d = env.daemon(&[]).unwrap();
            d.wait_log_count("resuming", 1).unwrap();
            d.settle().unwrap();
            assert!(in_meeting(&env.fake.state()), "the meeting goes on after a restart");
            drop(cam);
            env.wait_state("restored", |s| !in_meeting(s)).unwrap();
            d.wait_log_count("backup deleted", 1).unwrap();
            assert_restored(&before, &env.fake.state());
            d.stop();
        } else {
            drop(cam);
            let d = env.daemon(&[]).unwrap();
            env.wait_state("restored after restart", |s| !in_meeting(s)).unwrap();
            d.wait_log_count("backup deleted", 1).unwrap();
            assert_restored(&before, &env.fake.state());
            d.stop();
        }
    }
}

#[test]
fn kill_9_between_backup_and_first_call_changes_nothing_wrongly() {
    let env = Scene::new("kill-early");
    let before = user_setup(&env);
    // The first call hangs, so the daemon is killed with the backup written and nothing set.
    env.fake.set_fault(Fault::NeverAnswer, FaultScope::on("PUT", "/api/v4/users").times(1));
    let d = env.daemon(&[]).unwrap();
    let cam = env.open_camera();
    d.wait_log_count("BACKUP: Saved original status", 1).unwrap();
    d.kill9();
    env.fake.clear_faults();
    drop(cam);
    let d = env.daemon(&[]).unwrap();
    d.wait_log_count("backup deleted", 1).unwrap();
    assert_restored(&before, &env.fake.state());
    d.stop();
}

#[test]
fn server_down_at_start_and_at_end_ends_correct_once_it_is_back() {
    let env = Scene::new("down");
    let before = user_setup(&env);
    let d = env.daemon(&[]).unwrap();
    env.fake.set_fault(Fault::RefuseConnections, FaultScope::all());
    let cam = env.open_camera();
    d.wait_log_count("API ERROR", 1).unwrap();
    assert!(!env.backup_exists(), "no backup without a server to read from");
    env.fake.clear_faults();
    env.wait_state("meeting set once the server is back", in_meeting).unwrap();
    env.fake.set_fault(Fault::app_error(503), FaultScope::all());
    drop(cam);
    // The refusal's own words: a bare "503" could match a pid in an earlier line.
    d.wait_log_count(": 503 ", 1).unwrap();
    assert!(env.backup_exists(), "the backup is kept while the server fails");
    env.fake.clear_faults();
    env.wait_state("restored once the server is back", |s| !in_meeting(s)).unwrap();
    d.wait_log_count("backup deleted", 1).unwrap();
    assert_restored(&before, &env.fake.state());
    d.stop();
}

#[test]
fn sighup_changes_the_meeting_message() {
    let env = Scene::new("hup");
    env.fake.set_status("online", false, 0);
    let conf = env.dir.join("config.env");
    std::fs::write(&conf, "MM_STATUS_SYNC_MEETING_MESSAGE=\"On a call\"\n").unwrap();
    let d = env.daemon(&["--config", conf.to_str().unwrap()]).unwrap();
    let cam = env.open_camera();
    env.wait_state("first message", |s| s.custom_status.as_ref().is_some_and(|c| c.text == "On a call")).unwrap();
    drop(cam);
    env.wait_state("restored", |s| s.custom_status.is_none() && s.status == "online").unwrap();
    std::fs::write(&conf, "MM_STATUS_SYNC_MEETING_MESSAGE=\"🎥 Busy\"\nMM_STATUS_SYNC_MEETING_STATUS=away\n").unwrap();
    d.signal("HUP");
    d.wait_log_count("configuration reloaded", 1).unwrap();
    let cam = env.open_camera();
    env.wait_state("new message", |s| {
        s.custom_status.as_ref().is_some_and(|c| c.text == "🎥 Busy") && s.status == "away"
    })
    .unwrap();
    drop(cam);
    let after = env.wait_state("restored", |s| s.custom_status.is_none() && s.status == "online").unwrap();
    assert!(!after.manual);
    d.stop();
}

#[test]
fn tls_with_a_test_ca_works_with_ca_file_and_fails_clearly_without() {
    let env = Scene::tls("tls");
    let fake = &env.fake;
    let check = |ca: Option<&str>| {
        let mut cmd = env.bare_command(&["check"]);
        cmd.args(["--url", &fake.url()]);
        if let Some(ca) = ca {
            cmd.args(["--ca-file", ca]);
        }
        let out = cmd.env("MM_STATUS_SYNC_TOKEN", fake.token()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = check(Some(env.tls.as_ref().unwrap().ca_file().to_str().unwrap()));
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
    let env = Scene::new("latency");
    env.fake.set_status("online", false, 0);
    let d = env.daemon(&[]).unwrap();
    let mut samples = Vec::new();
    for cycle in 1..=20 {
        env.fake.clear_calls();
        let opened = Instant::now();
        let cam = env.open_camera();
        env.wait_state("meeting set", |s| s.status == "dnd").unwrap();
        samples.push(opened.elapsed());
        drop(cam);
        env.wait_state("restored", |s| s.status == "online" && s.custom_status.is_none()).unwrap();
        d.wait_log_count("backup deleted", cycle).unwrap();
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
