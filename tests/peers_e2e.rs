//! Two devices of one user, each running the real daemon with its own state dir and camera against one fake server:
//! back-to-back and overlapping calls in both orders, simultaneous starts, and a laptop that died mid-meeting,
//! within its lease and past it. Whatever the order, the marker never stacks, no device takes a marker for the
//! user's own status, the user never looks available while a device is still in a call, and the user ends with
//! exactly what they had.

mod support;

use support::UserState;
use support::daemon_run::{Daemon, Device, Scene, differences, in_meeting};
use support::go_time::GoTime;

const CATEGORY: &str = "mm_status_sync";
const MARKED: &str = "Focusing \"deep\" ü [In a meeting]";

/// The user before any meeting: away (set by hand), a custom status of their own with an expiry.
fn user(scene: &Scene) -> UserState {
    scene.fake.set_status("away", true, 0);
    let expires = GoTime::from_unix_nanos(i128::from(scene.fake.now_unix() + 86_400) * 1_000_000_000).to_rfc3339_nano();
    scene.fake.set_custom_status("coffee", "Focusing \"deep\" ü", "date_and_time", &expires);
    scene.fake.state()
}

fn marked_once(s: &UserState) -> bool {
    in_meeting(s) && s.custom_status.as_ref().is_some_and(|c| c.text == MARKED)
}

/// The device's saved backup holds the user's own status, not a marker.
fn assert_backup_is_the_users(device: &Device, who: &str) {
    let text = device.backup_text();
    assert!(text.contains("\"previous\":{\"status\":\"away\",\"manual\":true"), "{who}: {text}");
    assert!(text.contains("\"emoji\":\"coffee\",\"text\":\"Focusing \\\"deep\\\" ü\""), "{who}: {text}");
}

fn start(scene: &Scene, device: &Device, d: &Daemon, n: usize) -> support::daemon_run::Camera {
    let camera = scene.open_device_camera(device);
    d.wait_log_count("meeting status set", n).unwrap();
    camera
}

#[test]
fn overlapping_calls_end_in_the_original_state_in_both_orders() {
    for a_ends_first in [true, false] {
        let scene = Scene::new(if a_ends_first { "abab" } else { "abba" });
        let before = user(&scene);
        let (a, b) = (scene.device("a"), scene.device("b"));
        let (da, db) = (scene.device_daemon(&a, &[]).unwrap(), scene.device_daemon(&b, &[]).unwrap());

        let camera_a = start(&scene, &a, &da, 1);
        assert!(marked_once(&scene.fake.state()), "{:?}", scene.fake.state());
        assert_backup_is_the_users(&a, "A");
        let camera_b = start(&scene, &b, &db, 1);
        let during = scene.fake.state();
        assert!(marked_once(&during), "B stacked or changed the marker: {during:?}\n{}", db.log());
        assert_backup_is_the_users(&b, "B");
        assert!(db.log().contains("another device is in a meeting"), "{}", db.log());
        assert_eq!(scene.fake.preferences(CATEGORY).len(), 3, "two devices and the original");

        let ((first, first_d, first_cam), (second, second_d, second_cam)) = if a_ends_first {
            ((&a, &da, camera_a), (&b, &db, camera_b))
        } else {
            ((&b, &db, camera_b), (&a, &da, camera_a))
        };
        drop(first_cam);
        first_d.wait_log("RESTORE LEFT TO ANOTHER DEVICE").unwrap();
        first_d.wait_for_no_backup(first).unwrap();
        // The other device is still in its call: the user must not look available.
        assert!(marked_once(&scene.fake.state()), "{:?}\n{}", scene.fake.state(), first_d.log());
        drop(second_cam);
        second_d.wait_log("RESTORE: Status restored").unwrap();
        second_d.wait_for_no_backup(second).unwrap();
        let after = scene.fake.state();
        assert_eq!(differences(&before, &after), Vec::<String>::new(), "{}\n{}", da.log(), db.log());
        assert!(scene.fake.preferences(CATEGORY).is_empty(), "{:?}", scene.fake.preferences(CATEGORY));
        assert_eq!(da.stop(), Some(0));
        assert_eq!(db.stop(), Some(0));
        assert_eq!(differences(&before, &scene.fake.state()), Vec::<String>::new());
    }
}

#[test]
fn simultaneous_starts_end_in_the_original_state() {
    let scene = Scene::new("simultaneous");
    let before = user(&scene);
    let (a, b) = (scene.device("a"), scene.device("b"));
    let (da, db) = (scene.device_daemon(&a, &[]).unwrap(), scene.device_daemon(&b, &[]).unwrap());
    for round in 1..=5 {
        // Both cameras within a millisecond: the daemons' calls interleave as the machine schedules them.
        let (camera_a, camera_b) = (scene.open_device_camera(&a), scene.open_device_camera(&b));
        da.wait_log_count("meeting status set", round).unwrap();
        db.wait_log_count("meeting status set", round).unwrap();
        let during = scene.fake.state();
        assert!(marked_once(&during), "round {round}: {during:?}\n{}\n{}", da.log(), db.log());
        assert_backup_is_the_users(&a, "A");
        assert_backup_is_the_users(&b, "B");
        // Both end together too, each way round in turn.
        if round % 2 == 0 {
            drop(camera_a);
            drop(camera_b);
        } else {
            drop(camera_b);
            drop(camera_a);
        }
        da.wait_log_count("backup deleted", round).unwrap();
        db.wait_log_count("backup deleted", round).unwrap();
        let after = scene.fake.state();
        assert_eq!(differences(&before, &after), Vec::<String>::new(), "round {round}\n{}\n{}", da.log(), db.log());
        assert!(scene.fake.preferences(CATEGORY).is_empty(), "round {round}: {:?}", scene.fake.preferences(CATEGORY));
    }
}

/// A laptop in a meeting is killed (battery, lid, crash): its entry and marker stay behind. Its instance id, when
/// it made one.
fn dead_laptop(scene: &Scene, laptop: &Device) -> Option<String> {
    let dl = scene.device_daemon(laptop, &[]).unwrap();
    let camera = start(scene, laptop, &dl, 1);
    dl.kill9();
    drop(camera);
    assert!(marked_once(&scene.fake.state()));
    laptop.instance_id()
}

#[test]
fn a_dead_laptops_marker_within_its_lease_is_neither_stacked_nor_taken_for_the_users() {
    let scene = Scene::new("dead-within");
    let before = user(&scene);
    let (laptop, desktop) = (scene.device("laptop"), scene.device("desktop"));
    let laptop_id = dead_laptop(&scene, &laptop);

    let dd = scene.device_daemon(&desktop, &[]).unwrap();
    let camera = start(&scene, &desktop, &dd, 1);
    assert!(marked_once(&scene.fake.state()), "{:?}\n{}", scene.fake.state(), dd.log());
    assert_backup_is_the_users(&desktop, "desktop");
    drop(camera);
    // Within its lease the dead laptop cannot be told from one still in a call: the status stays its to put back.
    dd.wait_log("RESTORE LEFT TO ANOTHER DEVICE").unwrap();
    assert!(dd.log().contains(&laptop_id.expect("the laptop's instance id")), "{}", dd.log());
    assert!(marked_once(&scene.fake.state()));
    // The laptop comes back without a call: it is the last one out and puts everything back.
    let dl = scene.device_daemon(&laptop, &[]).unwrap();
    dl.wait_log("RESTORE: Status restored").unwrap();
    dl.wait_for_no_backup(&laptop).unwrap();
    assert_eq!(differences(&before, &scene.fake.state()), Vec::<String>::new(), "{}", dl.log());
    assert!(scene.fake.preferences(CATEGORY).is_empty());
}

#[test]
fn a_dead_laptop_past_its_lease_is_ignored_and_cleaned_up() {
    let scene = Scene::new("dead-past");
    let before = user(&scene);
    let (laptop, desktop) = (scene.device("laptop"), scene.device("desktop"));
    let laptop_id = dead_laptop(&scene, &laptop);
    // Its lease passes: the server ends its DND (putting back the previous availability, as automatic), its custom
    // status expires, and its entry says it ended a minute ago.
    let lapsed = scene.fake.now_unix() - 60;
    if let Some(id) = &laptop_id {
        scene.fake.set_preference(CATEGORY, id, &format!("{{\"until\":{lapsed}}}"));
    }
    scene.fake.set_status("dnd", true, lapsed / 60 * 60);
    assert_eq!(scene.fake.run_dnd_expiry(), 1);
    assert_eq!((scene.fake.state().status.as_str(), scene.fake.state().manual), ("away", false));

    let dd = scene.device_daemon(&desktop, &[]).unwrap();
    let camera = start(&scene, &desktop, &dd, 1);
    assert!(marked_once(&scene.fake.state()), "{:?}\n{}", scene.fake.state(), dd.log());
    assert_backup_is_the_users(&desktop, "desktop");
    assert!(!dd.log().contains("another device is in a meeting"), "{}", dd.log());
    drop(camera);
    dd.wait_log("RESTORE: Status restored").unwrap();
    dd.wait_for_no_backup(&desktop).unwrap();
    assert_eq!(differences(&before, &scene.fake.state()), Vec::<String>::new(), "{}", dd.log());
    assert!(scene.fake.preferences(CATEGORY).is_empty(), "the stale entry is removed by the last one out");
}

trait WaitBackup {
    fn wait_for_no_backup(&self, device: &Device) -> Result<(), String>;
}

impl WaitBackup for Daemon {
    /// Waits for the state the test asserts next (the backup gone), not for a log line.
    fn wait_for_no_backup(&self, device: &Device) -> Result<(), String> {
        support::daemon_run::wait_for("the backup is deleted", || !device.backup_exists())
            .map_err(|e| format!("{e}\n{}", self.log()))
    }
}

#[test]
fn a_start_while_the_last_one_out_restores_gets_the_meeting_status_back_at_once() {
    use std::time::Duration;
    use support::Fault;
    let scene = Scene::new("end-and-start");
    let before = user(&scene);
    let (a, b) = (scene.device("a"), scene.device("b"));
    let (da, db) = (scene.device_daemon(&a, &[]).unwrap(), scene.device_daemon(&b, &[]).unwrap());
    let camera_a = start(&scene, &a, &da, 1);
    // A ends alone: it reads the shared place (no one else), then its read of the server comes back slowly.
    scene.fake.set_fault_on_nth(
        Fault::Trickle { interval: Duration::from_millis(25) },
        "GET",
        "/api/v4/users/me/status",
        1,
    );
    drop(camera_a);
    scene.wait_for("A's slow read has begun", || scene.fake.pending_faults() == 0).unwrap();
    // Meanwhile B starts: it sees A's marker and A's entry, and joins without a call of its own.
    let camera_b = start(&scene, &b, &db, 1);
    assert!(db.log().contains("another device is in a meeting"), "the race did not happen:\n{}", db.log());
    // A had decided before B's entry arrived: it is the last one out and restores.
    da.wait_log("RESTORE: Status restored").unwrap();
    // B finds the original gone at its next look and sets the meeting status again.
    db.wait_log("setting the meeting status again").unwrap();
    scene.wait_state("B's meeting status back", marked_once).unwrap();
    assert_backup_is_the_users(&b, "B");
    drop(camera_b);
    db.wait_log("RESTORE: Status restored").unwrap();
    db.wait_for_no_backup(&b).unwrap();
    assert_eq!(differences(&before, &scene.fake.state()), Vec::<String>::new(), "{}\n{}", da.log(), db.log());
    assert!(scene.fake.preferences(CATEGORY).is_empty(), "{:?}", scene.fake.preferences(CATEGORY));
}

#[test]
fn a_server_refusing_the_shared_place_still_gets_the_meeting_status_set_and_put_back() {
    use support::{Fault, FaultScope};
    let scene = Scene::new("no-sharing");
    let before = user(&scene);
    // A proxy or a server that does not take our preferences: 400 on every preference call.
    scene.fake.set_fault(Fault::app_error(400), FaultScope::path("/api/v4/users/me/preferences"));
    let a = scene.device("a");
    let d = scene.device_daemon(&a, &[]).unwrap();
    for round in 1..=2 {
        let camera = start(&scene, &a, &d, round);
        assert!(marked_once(&scene.fake.state()), "{}", d.log());
        drop(camera);
        d.wait_log_count("RESTORE: Status restored", round).unwrap();
        d.wait_for_no_backup(&a).unwrap();
        assert_eq!(differences(&before, &scene.fake.state()), Vec::<String>::new(), "{}", d.log());
    }
    // One warning a meeting (each meeting asks again), and no retries of the refused calls.
    assert_eq!(d.count("working as the only device"), 2, "{}", d.log());
    assert!(!d.log().contains("retrying in"), "{}", d.log());
}

#[test]
fn a_shared_write_that_fails_at_the_start_is_made_on_the_retry() {
    use support::{Fault, FaultScope};
    let scene = Scene::new("shared-retry");
    let before = user(&scene);
    scene.fake.set_fault(Fault::html(502), FaultScope::on("PUT", "/api/v4/users/me/preferences").times(1));
    let a = scene.device("a");
    let d = scene.device_daemon(&a, &[]).unwrap();
    let camera = start(&scene, &a, &d, 1);
    let id = a.instance_id().unwrap();
    scene
        .wait_for("the entry is written on the retry", || {
            scene.fake.preferences(CATEGORY).iter().any(|(n, _)| *n == id)
        })
        .unwrap();
    assert!(scene.fake.preferences(CATEGORY).iter().any(|(n, _)| n == "original"));
    drop(camera);
    d.wait_log("RESTORE: Status restored").unwrap();
    d.wait_for_no_backup(&a).unwrap();
    assert_eq!(differences(&before, &scene.fake.state()), Vec::<String>::new(), "{}", d.log());
    assert!(scene.fake.preferences(CATEGORY).is_empty());
}
