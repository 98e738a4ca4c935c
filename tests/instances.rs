//! Several servers. Two instances of the real binary, set up the way the template units `mm-status-sync@NAME` set
//! them up (their own config file named by `MM_STATUS_SYNC_CONFIG`, their own token file, their own
//! `STATE_DIRECTORY`), watch one camera and mark the user on two fake servers: both servers get the meeting status,
//! both get exactly their own status back, and neither backup lands in the other's state dir. And one instance
//! moved to another server by a reload in the middle of a meeting.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::daemon_run::{BIN, Daemon, Scene, differences, in_meeting, wait_for};
use support::go_time::GoTime;
use support::{FakeMattermost, Fault, FaultScope};

/// One instance: `NAME.env` and `NAME.token` in the scene's `etc/`, its state in `state/mm-status-sync/NAME`.
struct Instance<'a> {
    name: &'static str,
    fake: &'a FakeMattermost,
    config: PathBuf,
    state_dir: PathBuf,
}

impl<'a> Instance<'a> {
    fn new(scene: &Scene, name: &'static str, fake: &'a FakeMattermost) -> Instance<'a> {
        let etc = scene.dir.join("etc");
        fs::create_dir_all(&etc).unwrap();
        let config = etc.join(format!("{name}.env"));
        let camera = format!("{}/video*", scene.dir.display());
        fs::write(
            &config,
            format!(
                "MM_STATUS_SYNC_URL={}\nMM_STATUS_SYNC_DEVICES={camera}\nMM_STATUS_SYNC_START_DELAY=0\n\
                 MM_STATUS_SYNC_END_DELAY=0\nMM_STATUS_SYNC_INTERVAL=3600\nMM_STATUS_SYNC_LOG=stderr\n",
                fake.url()
            ),
        )
        .unwrap();
        let token = etc.join(format!("{name}.token"));
        fs::write(&token, format!("{}\n", fake.token())).unwrap();
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        // systemd creates StateDirectory=mm-status-sync/%i before the start.
        let state_dir = scene.dir.join("state/mm-status-sync").join(name);
        fs::create_dir_all(&state_dir).unwrap();
        Instance { name, fake, config, state_dir }
    }

    fn start(&self, scene: &Scene) -> Daemon {
        scene.spawn(self.command("run")).unwrap_or_else(|e| panic!("instance {}: {e}", self.name))
    }

    /// The binary with `sub` (run, restore, ...) and this instance's environment, as the template unit sets it.
    fn command(&self, sub: &str) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg(sub)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MM_STATUS_SYNC_CONFIG", &self.config)
            .env("MM_STATUS_SYNC_TOKEN_FILE", self.config.with_extension("token"))
            .env("STATE_DIRECTORY", &self.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// Points the instance's config file and token file at `fake` (the url and the token of its user).
    fn point_at(&self, from: &FakeMattermost, to: &FakeMattermost) {
        let config = fs::read_to_string(&self.config).unwrap().replace(&from.url(), &to.url());
        fs::write(&self.config, config).unwrap();
        fs::write(self.config.with_extension("token"), format!("{}\n", to.token())).unwrap();
    }

    /// The names in the state dir, sorted.
    fn state_files(&self) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(&self.state_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        names
    }

    fn backup(&self) -> String {
        fs::read_to_string(self.state_dir.join("state.json")).unwrap_or_default()
    }
}

fn rfc3339_in(fake: &FakeMattermost, secs: i64) -> String {
    GoTime::from_unix_nanos(i128::from(fake.now_unix() + secs) * 1_000_000_000).to_rfc3339_nano()
}

fn wait_both(what: &str, fakes: [&FakeMattermost; 2], check: impl Fn(&support::UserState) -> bool) {
    wait_for(what, || fakes.iter().all(|f| check(&f.state())))
        .unwrap_or_else(|e| panic!("{e}; work {:?}; community {:?}", fakes[0].state(), fakes[1].state()));
}

fn holds_only(path: &Path, names: &[&str]) -> bool {
    let mut found: Vec<String> =
        fs::read_dir(path).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    found.sort();
    found == names
}

#[test]
fn two_instances_mark_and_restore_two_servers_from_one_camera() {
    let scene = Scene::new("instances");
    let work_server = &scene.fake;
    let community_server = FakeMattermost::start();
    assert_ne!(work_server.user_id(), community_server.user_id(), "the fakes should have different users");

    // Different own states on the two servers: a manual away with an expiring custom status, and an automatic
    // online with none.
    work_server.set_status("away", true, 0);
    work_server.set_custom_status("sandwich", "Lunch", "date_and_time", &rfc3339_in(work_server, 7200));
    community_server.set_status("online", false, 0);
    let before = [work_server.state(), community_server.state()];

    let work = Instance::new(&scene, "work", work_server);
    let community = Instance::new(&scene, "community", &community_server);
    let work_daemon = work.start(&scene);
    let community_daemon = community.start(&scene);

    let camera = scene.open_camera();
    wait_both("both servers show the meeting", [work_server, &community_server], in_meeting);
    // The loop handles one event at a time: once a reload is logged, the meeting's calls and their records are done.
    work_daemon.settle().unwrap();
    community_daemon.settle().unwrap();
    for (instance, other) in [(&work, &community), (&community, &work)] {
        // The backup, and the device's instance id for the shared place on that server (kept across meetings).
        assert_eq!(
            instance.state_files(),
            ["instance", "state.json"],
            "{}: state dir holds more than its backup and instance id",
            instance.name
        );
        let backup = instance.backup();
        assert!(backup.contains(&instance.fake.user_id()), "{}: backup is not for its server: {backup}", instance.name);
        assert!(
            !backup.contains(&other.fake.user_id()),
            "{}: backup names the other server's user: {backup}",
            instance.name
        );
    }
    assert!(work.backup().contains("Lunch"), "work backup lacks the user's own custom status: {}", work.backup());
    assert!(!community.backup().contains("Lunch"), "community backup holds work's custom status");

    drop(camera);
    wait_both("both servers restored", [work_server, &community_server], |s| !in_meeting(s));
    for (instance, daemon) in [(&work, &work_daemon), (&community, &community_daemon)] {
        daemon.wait_log("backup deleted").unwrap_or_else(|e| panic!("{}: {e}", instance.name));
        assert_eq!(
            instance.state_files(),
            ["instance"],
            "{}: state dir holds more than its instance id",
            instance.name
        );
    }
    for (name, before, after) in
        [("work", &before[0], work_server.state()), ("community", &before[1], community_server.state())]
    {
        let changed = differences(before, &after);
        assert!(changed.is_empty(), "{name}: not restored exactly: {changed:?}");
    }
    assert!(holds_only(&scene.dir.join("state/mm-status-sync"), &["community", "work"]));

    assert_eq!(work_daemon.stop(), Some(0));
    assert_eq!(community_daemon.stop(), Some(0));
}

/// A reload that points a running daemon at another server while the meeting is on: the first server gets its
/// previous status back before the daemon lets go of it (nothing stale is left where the daemon no longer looks),
/// and the meeting goes on on the second. While the first server cannot be reached, the reload is held back and
/// the daemon stays with it and its backup; a reload once it answers again goes through.
#[test]
fn a_reload_to_another_server_mid_meeting_puts_the_status_back_on_the_first() {
    let scene = Scene::new("handover");
    let first = &scene.fake;
    let second = FakeMattermost::start();
    first.set_status("away", true, 0);
    first.set_custom_status("sandwich", "Lunch", "", "0001-01-01T00:00:00Z");
    second.set_status("online", false, 0);
    let before = [first.state(), second.state()];
    let instance = Instance::new(&scene, "moving", first);
    let d = instance.start(&scene);
    let camera = scene.open_camera();
    scene.wait_state("the meeting on the first server", in_meeting).unwrap();
    d.wait_log("meeting status set").unwrap();
    let first_backup = instance.backup();
    assert!(first_backup.contains(&first.user_id()), "{first_backup}");

    // The first server is down: the reload to the second is refused, and nothing moves.
    first.set_fault(Fault::RefuseConnections, FaultScope::all());
    instance.point_at(first, &second);
    d.signal("HUP");
    d.wait_log("reload held back: the previous status is not back on").unwrap();
    assert_eq!(d.count("configuration reloaded"), 0, "{}", d.log());
    assert!(second.calls().is_empty(), "the second server was used before the first was done: {:?}", second.calls());
    assert_eq!(instance.backup(), first_backup, "the backup for the first server is kept as it was");
    first.clear_faults();
    assert!(in_meeting(&first.state()), "the first server still shows the meeting");

    // It answers again: the reload puts its status back, then the meeting goes on on the second.
    d.signal("HUP");
    d.wait_log("configuration reloaded").unwrap();
    assert_eq!(differences(&before[0], &first.state()), Vec::<String>::new(), "{}", d.log());
    let first_calls = first.calls().len();
    wait_for("the meeting on the second server", || in_meeting(&second.state())).unwrap();
    d.settle().unwrap();
    let second_backup = instance.backup();
    assert!(second_backup.contains(&second.user_id()), "{second_backup}");
    assert!(!second_backup.contains(&first.user_id()) && !second_backup.contains("Lunch"), "{second_backup}");

    drop(camera);
    wait_for("the second server restored", || !in_meeting(&second.state())).unwrap();
    // The first was deleted when the first server got its status back.
    d.wait_log_count("backup deleted", 2).unwrap();
    assert_eq!(differences(&before[1], &second.state()), Vec::<String>::new(), "{}", d.log());
    assert_eq!(first.calls().len(), first_calls, "the first server was called after the move: {:?}", first.calls());
    assert_eq!(d.stop(), Some(0));
}

/// A crash in the middle of a meeting, then a start with another server's url and token: the backup, taken on the
/// first server, is neither put back on the second (another account) nor in the way of the second's meetings. It is
/// kept aside whole, with one line saying so, and `restore` with the first server's settings puts it back there.
#[test]
fn a_backup_from_another_server_is_set_aside_and_can_be_restored_there() {
    let scene = Scene::new("other-server");
    let first = &scene.fake;
    let second = FakeMattermost::start();
    first.set_status("away", true, 0);
    first.set_custom_status("sandwich", "Lunch", "", "0001-01-01T00:00:00Z");
    second.set_status("online", false, 0);
    let before = [first.state(), second.state()];
    let instance = Instance::new(&scene, "crashing", first);
    let d = instance.start(&scene);
    let camera = scene.open_camera();
    scene.wait_state("the meeting on the first server", in_meeting).unwrap();
    d.settle().unwrap();
    let first_backup = instance.backup();
    assert!(first_backup.contains(&format!(r#""server":"{}""#, first.url())), "{first_backup}");
    d.kill9();
    let first_calls = first.calls().len();

    instance.point_at(first, &second);
    let out = instance.command("check").stdout(Stdio::piped()).output().unwrap();
    let check = String::from_utf8_lossy(&out.stdout);
    let warning = "WARNING: backup: present (meeting since ";
    assert!(check.contains(warning) && check.contains(&format!("taken on {}, but url is", first.url())), "{check}");
    let d = instance.start(&scene);
    d.wait_log("moved aside to").unwrap();
    assert!(d.log().contains(&format!("taken on {}, but url is now {}", first.url(), second.url())), "{}", d.log());
    wait_for("the meeting on the second server", || in_meeting(&second.state())).unwrap();
    d.settle().unwrap();
    let aside: Vec<String> =
        instance.state_files().into_iter().filter(|n| n.starts_with("state.json.other-server-")).collect();
    assert_eq!(aside.len(), 1, "{:?}", instance.state_files());
    let aside = instance.state_dir.join(&aside[0]);
    assert_eq!(fs::read_to_string(&aside).unwrap(), first_backup, "kept whole");
    assert!(instance.backup().contains(&second.user_id()), "{}", instance.backup());
    assert_eq!(first.calls().len(), first_calls, "the first server was called: {:?}", first.calls());
    assert!(in_meeting(&first.state()), "the first server keeps the meeting status until its lease");
    drop(camera);
    wait_for("the second server restored", || !in_meeting(&second.state())).unwrap();
    d.wait_log("backup deleted").unwrap();
    assert_eq!(differences(&before[1], &second.state()), Vec::<String>::new(), "{}", d.log());
    assert_eq!(d.stop(), Some(0));

    // By hand, as the log says: the file back, and `restore` with the first server's settings. With the second's it
    // is refused, and the file stays where it is.
    fs::rename(&aside, instance.state_dir.join("state.json")).unwrap();
    let out = instance.command("restore").stderr(Stdio::piped()).output().unwrap();
    let refusal = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{refusal}");
    assert!(refusal.contains(&format!("was taken on {}, but url is {}", first.url(), second.url())), "{refusal}");
    assert_eq!(instance.backup(), first_backup, "{refusal}");
    instance.point_at(&second, first);
    let out = instance.command("restore").stderr(Stdio::piped()).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(differences(&before[0], &first.state()), Vec::<String>::new(), "{log}");
    assert_eq!(instance.state_files(), ["instance"], "{log}");
}

/// A reload to another server held back (the first server is down), and nobody reloads again: the held-back
/// configuration takes effect by itself once the meeting has ended and its status is back on the first server.
/// The next meeting is on the second.
#[test]
fn a_reload_held_back_takes_effect_once_the_meeting_is_put_back() {
    let scene = Scene::new("held-back");
    let first = &scene.fake;
    let second = FakeMattermost::start();
    first.set_status("away", true, 0);
    second.set_status("online", false, 0);
    let before = [first.state(), second.state()];
    let instance = Instance::new(&scene, "moving", first);
    let d = instance.start(&scene);
    let camera = scene.open_camera();
    scene.wait_state("the meeting on the first server", in_meeting).unwrap();
    d.wait_log("meeting status set").unwrap();
    first.set_fault(Fault::RefuseConnections, FaultScope::all());
    instance.point_at(first, &second);
    d.signal("HUP");
    d.wait_log("reload held back").unwrap();
    first.clear_faults();

    drop(camera);
    d.wait_log("configuration reloaded (held back until the status was back)").unwrap();
    assert_eq!(differences(&before[0], &first.state()), Vec::<String>::new(), "{}", d.log());
    assert!(second.calls().is_empty(), "the second server was used before the move: {:?}", second.calls());
    let first_calls = first.calls().len();
    let camera = scene.open_camera();
    wait_for("the next meeting on the second server", || in_meeting(&second.state())).unwrap();
    drop(camera);
    wait_for("the second server restored", || !in_meeting(&second.state())).unwrap();
    d.wait_log_count("backup deleted", 2).unwrap();
    assert_eq!(differences(&before[1], &second.state()), Vec::<String>::new(), "{}", d.log());
    assert_eq!(first.calls().len(), first_calls, "the first server was called after the move: {:?}", first.calls());
    assert_eq!(d.stop(), Some(0));
}

/// Found in review: a reload to another server while the first refuses the token. The restore on the first server
/// read the token file again after the refusal, found the second server's token there, and sent it to the first.
#[test]
fn a_move_to_another_server_never_sends_its_token_to_the_old_one() {
    let scene = Scene::new("handover-token");
    let first = &scene.fake;
    let second = FakeMattermost::start();
    first.set_status("away", true, 0);
    second.set_status("online", false, 0);
    let instance = Instance::new(&scene, "moving", first);
    let d = instance.start(&scene);
    let _camera = scene.open_camera();
    scene.wait_state("the meeting on the first server", in_meeting).unwrap();
    d.wait_log("meeting status set").unwrap();
    first.revoke_token();
    instance.point_at(first, &second);
    d.signal("HUP");
    d.wait_log("reload held back").unwrap();
    // Nor after it, while the daemon retries the first server with the settings it kept (the retry 30 s after the
    // first refusal is the one that would read the token file again).
    d.wait_log_count("(retrying in 60 s)", 1).unwrap();
    let leaked: Vec<String> = first
        .calls()
        .into_iter()
        .filter(|c| c.header("authorization").is_some_and(|a| a.contains(&second.token())))
        .map(|c| c.request_line())
        .collect();
    assert!(leaked.is_empty(), "the second server's token went to the first: {leaked:?}\n{}", d.log());
    assert!(!d.log().contains("the token file holds a new token"), "{}", d.log());
    assert_eq!(d.stop(), Some(0));
}
