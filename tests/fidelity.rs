//! The daemon's fidelity to what the real server does, end to end with the real binary and the fake server:
//! backups from older releases, the server's own rounding and lapses, the user's own DND, emoji the server refuses,
//! tokens that change. The facts each test relies on are in `docs/mattermost-semantics.md`.

mod support;

use support::daemon_run::Scene;

/// A backup written by release 0.1.0 (`tests/fixtures/state-v1.json`) in the middle of a meeting is restored by
/// this release: the user's manual away and their own custom status come back, and the backup goes.
#[test]
fn a_backup_from_release_0_1_0_is_restored() {
    let scene = Scene::new("v1-fixture");
    let fixture = include_str!("fixtures/state-v1.json").replace("u1xq5rj8bbyzmg3ifsr3j4c6ya", &scene.fake.user_id());
    std::fs::write(scene.backup_path(), fixture).unwrap();
    // The server as that meeting left it: DND over a manual away, the marker on the user's text.
    scene.fake.set_status("away", true, 0);
    let end = (scene.fake.now_unix() + 3600) / 60 * 60;
    scene.fake.set_status("dnd", true, end);
    scene.fake.set_prev_status("away");
    scene.fake.set_custom_status("calendar", "Lunch [In a meeting]", "date_and_time", "2099-01-01T00:00:00Z");

    let d = scene.daemon(&[]).unwrap();
    d.wait_log("found a backup from a meeting started at 2026-11-18T11:06:40Z; resuming").unwrap();
    d.wait_log("backup deleted").unwrap();
    let s = scene.fake.state();
    assert_eq!((s.status.as_str(), s.manual), ("away", true), "{}", d.log());
    let custom = s.custom_status.unwrap();
    assert_eq!((custom.emoji.as_str(), custom.text.as_str(), custom.duration.as_str()), ("sandwich", "Lunch", ""));
    assert!(!scene.backup_exists());
    assert_eq!(d.stop(), Some(0));
}
