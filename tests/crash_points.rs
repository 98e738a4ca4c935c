//! kill -9 at every step of the start and end sequences, a state dir that cannot be written, and damaged backups,
//! all with the real binary against the fake server: whatever happens, the user's own status comes back exactly and
//! nothing on the server changes before the backup is on disk.
//!
//! The daemon is frozen at an exact step without any hook in the product: the fake server hangs on the nth request
//! with a given method and path, either before applying it (`NeverAnswer`) or after (`ProcessThenNeverAnswer`).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use support::UserState;
use support::daemon_run::{Camera, Daemon, Device, Scene, differences, in_meeting, wait_for};
use support::devices::is_root;
use support::go_time::GoTime;
use support::{FakeMattermost, Fault};

// ---------------------------------------------------------------------------------------------------------------
// The crash-point matrix.

/// A user's own state before a meeting.
struct UserSetup {
    name: &'static str,
    /// Set up on the fake.
    apply: fn(&FakeMattermost),
    /// The user had a custom status (restored with PUT, else cleared with DELETE).
    has_custom: bool,
    /// The daemon sets DND (false when the user is in their own DND, which is left alone).
    sets_dnd: bool,
    /// The configured meeting-emoji does not exist on the server: the start's custom status PUT is refused (400)
    /// and made again without the emoji.
    unknown_meeting_emoji: bool,
}

impl UserSetup {
    /// The daemon's extra arguments for this user.
    fn args(&self) -> &'static [&'static str] {
        if self.unknown_meeting_emoji { &["--meeting-emoji", "partyparrot"] } else { &[] }
    }

    /// The meeting status as the daemon sets it for this user.
    fn marked(&self, s: &UserState) -> bool {
        if !self.unknown_meeting_emoji {
            return in_meeting(s);
        }
        s.status == "dnd"
            && s.custom_status.as_ref().is_some_and(|c| c.text.ends_with("[In a meeting]") && c.emoji.is_empty())
    }
}

fn rfc3339_in(fake: &FakeMattermost, secs: i64) -> String {
    GoTime::from_unix_nanos(i128::from(fake.now_unix() + secs) * 1_000_000_000).to_rfc3339_nano()
}

const USERS: &[UserSetup] = &[
    UserSetup {
        name: "online auto, no custom",
        apply: |f| f.set_status("online", false, 0),
        has_custom: false,
        sets_dnd: true,
        unknown_meeting_emoji: false,
    },
    UserSetup {
        name: "away manual, expiring custom",
        apply: |f| {
            f.set_status("away", true, 0);
            f.set_custom_status("sandwich", "Lunch with \"the team\" ü", "date_and_time", &rfc3339_in(f, 7200));
        },
        has_custom: true,
        sets_dnd: true,
        unknown_meeting_emoji: false,
    },
    UserSetup {
        name: "own timed dnd, custom",
        apply: |f| {
            f.set_status("dnd", true, (f.now_unix() + 7200) / 60 * 60);
            f.set_prev_status("away");
            f.set_custom_status("headphones", "Focus time", "", "0001-01-01T00:00:00Z");
        },
        has_custom: true,
        sets_dnd: false,
        unknown_meeting_emoji: false,
    },
    UserSetup {
        name: "meeting-emoji unknown, custom",
        apply: |f| {
            f.set_status("online", false, 0);
            f.set_custom_status("coffee", "Break", "", "0001-01-01T00:00:00Z");
        },
        has_custom: true,
        sets_dnd: true,
        unknown_meeting_emoji: true,
    },
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// The camera goes on; the daemon is frozen on its way to the meeting status.
    Start,
    /// The meeting status is set, the camera goes off; the daemon is frozen on its way back.
    End,
}

/// One point to freeze the daemon at: the nth request with this method and exact path, and whether the server
/// applies it first.
struct Step {
    name: String,
    phase: Phase,
    method: &'static str,
    path: &'static str,
    nth: u32,
    fault: Fault,
}

const ME: &str = "/api/v4/users/me";
const STATUS: &str = "/api/v4/users/me/status";
const CUSTOM: &str = "/api/v4/users/me/status/custom";
/// The shared place of the user's devices: read, written, and entries removed.
const SHARED: &str = "/api/v4/users/me/preferences/mm_status_sync";
const SHARED_PUT: &str = "/api/v4/users/me/preferences";
const SHARED_DELETE: &str = "/api/v4/users/me/preferences/delete";

fn steps(user: &UserSetup) -> Vec<Step> {
    let step =
        |phase, name: &str, method, path, nth, fault| Step { name: name.to_owned(), phase, method, path, nth, fault };
    let nth_both = |phase, name: &str, method, path, nth| {
        [
            step(phase, &format!("{name}, not applied"), method, path, nth, Fault::NeverAnswer),
            step(phase, &format!("{name}, applied"), method, path, nth, Fault::ProcessThenNeverAnswer),
        ]
    };
    let both = |phase, name: &str, method, path| nth_both(phase, name, method, path, 1);
    let mut out = vec![
        // Before the backup: the token's user, then the server view (status, then the user with its custom status).
        step(Phase::Start, "GET users/me (who)", "GET", ME, 1, Fault::NeverAnswer),
        step(Phase::Start, "GET status", "GET", STATUS, 1, Fault::NeverAnswer),
        step(Phase::Start, "GET user (custom)", "GET", ME, 2, Fault::NeverAnswer),
    ];
    if !user.sets_dnd {
        // DND may be another device's: the shared place is read before anything is taken as the user's.
        out.push(step(Phase::Start, "GET shared", "GET", SHARED, 1, Fault::NeverAnswer));
        // Nobody there: the DND seen may have been put back meanwhile by a device ending; it is read again.
        out.push(step(Phase::Start, "GET status again", "GET", STATUS, 2, Fault::NeverAnswer));
    }
    // With the backup on disk.
    out.extend(both(Phase::Start, "PUT shared entries", "PUT", SHARED_PUT));
    if user.unknown_meeting_emoji {
        // Refused (400), then made again without the emoji.
        out.push(step(Phase::Start, "PUT meeting custom (emoji refused)", "PUT", CUSTOM, 1, Fault::NeverAnswer));
        out.extend(nth_both(Phase::Start, "PUT meeting custom, no emoji", "PUT", CUSTOM, 2));
    } else {
        out.extend(both(Phase::Start, "PUT meeting custom", "PUT", CUSTOM));
    }
    if user.sets_dnd {
        out.extend(both(Phase::Start, "PUT dnd", "PUT", STATUS));
    }
    out.push(step(Phase::End, "GET shared", "GET", SHARED, 1, Fault::NeverAnswer));
    out.push(step(Phase::End, "GET status", "GET", STATUS, 1, Fault::NeverAnswer));
    out.push(step(Phase::End, "GET user (custom)", "GET", ME, 1, Fault::NeverAnswer));
    if user.has_custom {
        out.extend(both(Phase::End, "PUT own custom", "PUT", CUSTOM));
    } else {
        out.extend(both(Phase::End, "DELETE custom", "DELETE", CUSTOM));
    }
    if user.sets_dnd {
        out.extend(both(Phase::End, "PUT own status", "PUT", STATUS));
    }
    out.extend(both(Phase::End, "DELETE shared entries", "POST", SHARED_DELETE));
    out
}

/// Waits until `d` is frozen at the armed step, then kills it with -9.
fn kill_at_the_step(scene: &Scene, d: Daemon) -> Result<(), String> {
    // The fake takes the fault, applies (or not) and records the call under one lock: once it is used up, the
    // daemon is waiting for an answer that never comes, exactly at this step.
    scene.wait_for("the step is reached", || scene.fake.pending_faults() == 0).map_err(|e| {
        let calls: Vec<String> = scene.fake.calls().iter().map(|c| format!("{} {}", c.method, c.path)).collect();
        format!("{e}; calls {calls:?}\nlog:\n{}", d.log())
    })?;
    d.kill9();
    Ok(())
}

/// Whether `step` is a call that puts part of the user's status back.
fn is_restore_call(step: &Step) -> bool {
    step.phase == Phase::End && [STATUS, CUSTOM].contains(&step.path) && step.method != "GET"
}

/// Freezes the daemon at `step`, kills it with -9, restarts it with the camera on or off, lets the meeting end
/// and checks the server is exactly as the user left it and the backup is gone.
fn crash_cell(user: &UserSetup, step: &Step, camera_on_at_restart: bool) -> Result<(), String> {
    let tag: String = format!("{}-{}-{}", user.name, step.name, camera_on_at_restart)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let scene = Scene::new(&tag);
    (user.apply)(&scene.fake);
    let before = scene.fake.state();
    let arm = || scene.fake.set_fault_on_nth(step.fault.clone(), step.method, step.path, step.nth);

    let (first, mut camera) = match step.phase {
        Phase::Start => {
            arm();
            let d = scene.daemon(user.args())?;
            let camera = scene.open_camera();
            (d, Some(camera))
        }
        Phase::End => {
            let d = scene.daemon(user.args())?;
            let camera = scene.open_camera();
            d.wait_log("meeting status set")?;
            scene.wait_state("meeting set", |s| user.marked(s))?;
            arm();
            drop(camera);
            (d, None)
        }
    };
    kill_at_the_step(&scene, first)?;
    let backup_after_kill = scene.backup_exists();
    scene.fake.clear_faults();
    if camera_on_at_restart {
        camera.get_or_insert_with(|| scene.open_camera());
    } else {
        camera = None;
    }

    let d = scene.daemon(user.args())?;
    if camera_on_at_restart {
        d.wait_log("camera in use")?;
        d.settle()?;
        if !scene.backup_exists() {
            return Err(format!("no backup while the meeting goes on\nlog:\n{}", d.log()));
        }
        // The new meeting is marked, except where a restore call took effect but its answer never came: the
        // daemon cannot tell its own restore from the user changing that part during the meeting, and what the
        // user changed is theirs. A restore it saw answered is recorded as put back, and marked again.
        let restore_unanswered = is_restore_call(step) && step.fault == Fault::ProcessThenNeverAnswer;
        let marked = user.marked(&scene.fake.state());
        if marked == restore_unanswered {
            return Err(format!(
                "after the restart with the camera on the meeting status is {}; server {:?}\nlog:\n{}",
                if marked { "set" } else { "missing" },
                scene.fake.state(),
                d.log()
            ));
        }
        drop(camera.take());
        d.wait_log("backup deleted")?;
    } else if backup_after_kill {
        d.wait_log("backup deleted")?;
    } else {
        // Nothing to do: the server must already be untouched. Let the daemon look at the devices first.
        d.settle()?;
    }
    let log = d.log();
    let code = d.stop();
    let mut problems = differences(&before, &scene.fake.state());
    if scene.backup_exists() {
        problems.push("the backup is still there".into());
    }
    if !scene.fake.preferences("mm_status_sync").is_empty() {
        problems.push(format!("shared entries left: {:?}", scene.fake.preferences("mm_status_sync")));
    }
    if code != Some(0) {
        problems.push(format!("exit code {code:?}"));
    }
    if log.contains(&scene.fake.token()) {
        problems.push("the token is in the log".into());
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("{}\nlog after restart:\n{log}", problems.join("; "))) }
}

/// A row of the matrix: its label and the outcomes with the camera on and off at the restart.
type Row = (String, [Result<(), String>; 2]);

#[test]
fn kill_9_at_every_step_then_restart_restores_exactly() {
    // One thread per user state: each cell has its own fake server and directory.
    let results: Vec<Vec<Row>> = std::thread::scope(|s| {
        let handles: Vec<_> = USERS
            .iter()
            .map(|user| {
                s.spawn(move || {
                    steps(user)
                        .iter()
                        .map(|step| {
                            let phase = if step.phase == Phase::Start { "start" } else { "end" };
                            let row = format!("{:<30} {:<5} {:<36}", user.name, phase, step.name);
                            (row, [crash_cell(user, step, true), crash_cell(user, step, false)])
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let header = format!("{:<30} {:<5} {:<36}", "user state", "phase", "killed at");
    assert_matrix_exact(&header, &results);
}

/// Prints the matrix (`header` names the row columns) and fails with every failed cell.
fn assert_matrix_exact(header: &str, results: &[Vec<Row>]) {
    let mut failures = Vec::new();
    eprintln!("\n{header} {:<10} {:<10}", "camera on", "camera off");
    for (row, [on, off]) in results.iter().flatten() {
        let mark = |r: &Result<(), String>| if r.is_ok() { "exact" } else { "FAIL" };
        eprintln!("{row} {:<10} {:<10}", mark(on), mark(off));
        for (camera, r) in [("camera on", on), ("camera off", off)] {
            if let Err(e) = r {
                failures.push(format!("{} / {camera}: {e}", row.split_whitespace().collect::<Vec<_>>().join(" ")));
            }
        }
    }
    let cells = results.iter().flatten().count() * 2;
    eprintln!("{} cells, {} failed", cells, failures.len());
    assert!(failures.is_empty(), "{} of {cells} cells failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------------------------
// Two devices of one user: kill -9 of either at every step of the protocol they share.

/// Which device is killed, and in which part of the shared protocol.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// B starts while A is in a meeting: it must join A's meeting status, not stack it or take it as the user's.
    Joining,
    /// A ends while B is still in a meeting (B's call started first, A joined it): it must leave the status to B.
    Leaving,
    /// B ends after A left: it is the last one out and puts the user's status back.
    LastOut,
}

fn shared_steps(role: Role) -> Vec<Step> {
    let step = |name: &str, method, path, nth, fault| Step {
        name: name.to_owned(),
        phase: if role == Role::Joining { Phase::Start } else { Phase::End },
        method,
        path,
        nth,
        fault,
    };
    let both = |name: &str, method, path| {
        [
            step(&format!("{name}, not applied"), method, path, 1, Fault::NeverAnswer),
            step(&format!("{name}, applied"), method, path, 1, Fault::ProcessThenNeverAnswer),
        ]
    };
    let mut out = Vec::new();
    match role {
        Role::Joining => {
            out.push(step("GET users/me (who)", "GET", ME, 1, Fault::NeverAnswer));
            out.push(step("GET status", "GET", STATUS, 1, Fault::NeverAnswer));
            out.push(step("GET user (custom)", "GET", ME, 2, Fault::NeverAnswer));
            out.push(step("GET shared", "GET", SHARED, 1, Fault::NeverAnswer));
            out.extend(both("PUT shared entries", "PUT", SHARED_PUT));
            out.push(step("GET shared at the confirming look", "GET", SHARED, 2, Fault::NeverAnswer));
        }
        Role::Leaving => {
            out.push(step("GET shared", "GET", SHARED, 1, Fault::NeverAnswer));
            out.extend(both("PUT own entry leaving", "PUT", SHARED_PUT));
            out.push(step("GET shared again", "GET", SHARED, 2, Fault::NeverAnswer));
            out.extend(both("DELETE own entry", "POST", SHARED_DELETE));
        }
        Role::LastOut => {
            out.push(step("GET shared", "GET", SHARED, 1, Fault::NeverAnswer));
            out.push(step("GET status", "GET", STATUS, 1, Fault::NeverAnswer));
            out.push(step("GET user (custom)", "GET", ME, 1, Fault::NeverAnswer));
            out.extend(both("PUT own custom", "PUT", CUSTOM));
            out.extend(both("PUT own status", "PUT", STATUS));
            out.extend(both("DELETE shared entries", "POST", SHARED_DELETE));
        }
    }
    out
}

/// One device of the cell: its directories, daemon and camera.
struct Peer {
    name: &'static str,
    device: Device,
    daemon: Option<Daemon>,
    camera: Option<Camera>,
}

impl Peer {
    fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }
}

/// Ends `peer`'s call and waits until its backup is gone.
fn end_call(scene: &Scene, peer: &mut Peer) -> Result<(), String> {
    drop(peer.camera.take());
    wait_for(&format!("{}'s backup deleted", peer.name), || !peer.device.backup_exists())
        .map_err(|e| format!("{e}\nlog of {}:\n{}", peer.name, peer.log()))?;
    let _ = scene;
    Ok(())
}

/// A in a meeting, B in a meeting or not as `role` needs; the victim frozen at `step` and killed with -9, then
/// restarted with its camera on or off; then every call ends. The user must look in a meeting whenever a device
/// still has its camera on, and end with exactly what they had, with nothing left in the shared place.
fn shared_crash_cell(role: Role, step: &Step, camera_on_at_restart: bool) -> Result<(), String> {
    let tag: String = format!("peers-{role:?}-{}-{camera_on_at_restart}", step.name)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let scene = Scene::new(&tag);
    (USERS[1].apply)(&scene.fake);
    let before = scene.fake.state();
    let arm = || scene.fake.set_fault_on_nth(step.fault.clone(), step.method, step.path, step.nth);
    let peer = |name| Peer { name, device: scene.device(name), daemon: None, camera: None };
    let (mut a, mut b) = (peer("a"), peer("b"));
    // While the fault is armed only the victim may call the server, so that the nth request on a path is its own.
    // A device that joins another's meeting status looks again every 10 s for two minutes, so the device whose
    // call starts first is the one that is not the victim: b where a is leaving, a otherwise.
    let (host, joiner) = if role == Role::Leaving { (&mut b, &mut a) } else { (&mut a, &mut b) };
    host.daemon = Some(scene.device_daemon(&host.device, &[])?);
    host.camera = Some(scene.open_device_camera(&host.device));
    host.daemon.as_ref().unwrap().wait_log("meeting status set")?;
    joiner.daemon = Some(scene.device_daemon(&joiner.device, &[])?);
    match role {
        Role::Joining => {
            arm();
            b.camera = Some(scene.open_device_camera(&b.device));
        }
        Role::Leaving => {
            a.camera = Some(scene.open_device_camera(&a.device));
            a.daemon.as_ref().unwrap().wait_log("meeting status set")?;
            arm();
            drop(a.camera.take());
        }
        Role::LastOut => {
            b.camera = Some(scene.open_device_camera(&b.device));
            b.daemon.as_ref().unwrap().wait_log("meeting status set")?;
            end_call(&scene, &mut a)?;
            arm();
            drop(b.camera.take());
        }
    }
    let victim = if role == Role::Leaving { &mut a } else { &mut b };
    kill_at_the_step(&scene, victim.daemon.take().unwrap())?;
    scene.fake.clear_faults();
    victim.camera = camera_on_at_restart.then(|| scene.open_device_camera(&victim.device));
    let restarted = scene.device_daemon(&victim.device, &[])?;
    if camera_on_at_restart {
        restarted.wait_log("camera in use")?;
    }
    restarted.settle()?;
    victim.daemon = Some(restarted);

    let mut problems = Vec::new();
    // As for one device: a restore call that took effect but whose answer never came cannot be told from the
    // user changing that part, and what the user changed is theirs, so the new call leaves that part alone.
    let restore_unanswered = is_restore_call(step) && step.fault == Fault::ProcessThenNeverAnswer;
    let in_call = |p: &Peer| p.camera.is_some() && !restore_unanswered;
    if (in_call(&a) || in_call(&b)) && !in_meeting(&scene.fake.state()) {
        problems
            .push(format!("after the restart a device is in a call and the user looks free: {:?}", scene.fake.state()));
    }
    // The calls end: the one that is not the victim first, then the victim.
    let (first, second) = if role == Role::Leaving { (&mut b, &mut a) } else { (&mut a, &mut b) };
    end_call(&scene, first)?;
    if in_call(second) && !in_meeting(&scene.fake.state()) {
        problems.push(format!("{} is still in a call and the user looks free: {:?}", second.name, scene.fake.state()));
    }
    end_call(&scene, second)?;
    // A device that never got a backup has nothing to do; one that did has ended above.
    for p in [&mut a, &mut b] {
        if let Some(d) = p.daemon.take() {
            let log = d.log();
            if d.stop() != Some(0) {
                problems.push(format!("{} did not exit cleanly", p.name));
            }
            if log.contains(&scene.fake.token()) {
                problems.push(format!("the token is in {}'s log", p.name));
            }
            p.daemon = None;
        }
    }
    problems.extend(differences(&before, &scene.fake.state()));
    if !scene.fake.preferences("mm_status_sync").is_empty() {
        problems.push(format!("shared entries left: {:?}", scene.fake.preferences("mm_status_sync")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\nlog of a:\n{}\nlog of b:\n{}", problems.join("; "), a.log(), b.log()))
    }
}

#[test]
fn kill_9_of_either_device_at_every_step_of_the_shared_protocol_then_restart_restores_exactly() {
    let roles = [Role::Joining, Role::Leaving, Role::LastOut];
    let results: Vec<Vec<Row>> = std::thread::scope(|s| {
        let handles: Vec<_> = roles
            .iter()
            .map(|&role| {
                s.spawn(move || {
                    shared_steps(role)
                        .iter()
                        .map(|step| {
                            let row = format!("{:<30} {:<36}", format!("{role:?}"), step.name);
                            (row, [shared_crash_cell(role, step, true), shared_crash_cell(role, step, false)])
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_matrix_exact(&format!("{:<30} {:<36}", "killed device", "killed at"), &results);
}

// ---------------------------------------------------------------------------------------------------------------
// A state dir that cannot be written: no status changes until the backup can be saved.

/// The user the daemon runs as when the tests run as root, who writes anywhere whatever the modes say.
const NOBODY: u32 = 65534;

/// While the backup cannot be saved: a clear line, retries, nothing but reads on the server, the daemon running.
fn assert_nothing_changed_while_unsaved(scene: &Scene, d: &mut Daemon, before: &UserState, why: &str) {
    d.wait_log_count("BACKUP FAILED", 2).unwrap();
    let log = d.log();
    let line = log.lines().find(|l| l.contains("BACKUP FAILED")).unwrap();
    let expected = format!("BACKUP FAILED: cannot write {}: {why}", scene.backup_path().display());
    assert!(line.contains(&expected) && line.contains("not changing anything (retrying in"), "{line}");
    let changes: Vec<String> =
        scene.fake.calls().iter().filter(|c| c.method != "GET").map(|c| format!("{} {}", c.method, c.path)).collect();
    assert!(changes.is_empty(), "changed the server without a backup: {changes:?}");
    assert_eq!(differences(before, &scene.fake.state()), Vec::<String>::new());
    assert_eq!(scene.fake.state().custom_status_raw, before.custom_status_raw);
    assert!(d.is_running(), "the daemon must keep running:\n{log}");
    assert!(!scene.backup_exists());
}

/// Once the backup can be saved: the meeting status, then an exact restore when the camera goes off.
fn assert_meeting_proceeds_and_restores(scene: &Scene, d: Daemon, camera: Camera, before: &UserState) {
    scene.wait_state("meeting set once the backup can be saved", in_meeting).unwrap();
    assert!(scene.backup_exists());
    d.wait_log("meeting status set").unwrap();
    // The server never failed: the line that ends the streak names what did. It follows "meeting status set" (the
    // pass logs that, then its caller ends the streak), so it is waited for, not looked for.
    d.wait_log("backup saved again").unwrap();
    let log = d.log();
    assert!(!log.contains("server reachable again"), "{log}");
    ends_exactly(scene, d, camera, before, "");
}

/// The camera goes off: the backup is deleted, the server holds exactly `before`, the daemon stops cleanly and
/// leaves no backup. `what` (a case name, or "") prefixes the failure messages.
fn ends_exactly(scene: &Scene, d: Daemon, camera: Camera, before: &UserState, what: &str) {
    drop(camera);
    d.wait_log("backup deleted").unwrap();
    assert_eq!(differences(before, &scene.fake.state()), Vec::<String>::new(), "{what}:\n{}", d.log());
    assert_eq!(d.stop(), Some(0), "{what}");
    assert!(!scene.backup_exists(), "{what}");
}

#[test]
fn state_dir_not_writable_changes_nothing_until_it_is() {
    let scene = Scene::new("readonly");
    (USERS[1].apply)(&scene.fake);
    let before = scene.fake.state();
    let state_dir = scene.state_dir();
    let root = is_root();
    let mut cmd = scene.command(&[]);
    if root {
        // The dir stays root's (0755); the daemon runs as a user who may read but not write it, and so does the
        // camera holder, as the daemon sees only its own user's processes.
        cmd.uid(NOBODY).gid(NOBODY);
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    } else {
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let mut d = scene.spawn(cmd).unwrap();
    let camera = if root { scene.open_camera_as(NOBODY, NOBODY) } else { scene.open_camera() };
    assert_nothing_changed_while_unsaved(&scene, &mut d, &before, "Permission denied");

    if root {
        std::os::unix::fs::chown(&state_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    } else {
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_meeting_proceeds_and_restores(&scene, d, camera, &before);
}

/// `cmd` run through `sh` with SIGXFSZ ignored and a soft file size limit of `limit` ("0" or "unlimited"), kept
/// across exec: a write past the limit then fails with EFBIG, which is how a full disk looks to the daemon, and
/// no mount or privilege is needed (nothing sends SIGXFSZ on a real full disk). The log goes through a pipe, which
/// the limit does not cover. `exec` keeps the daemon's pid the child's.
fn with_file_size_limit(cmd: &std::process::Command, limit: &str) -> std::process::Command {
    let mut wrapped = std::process::Command::new("sh");
    wrapped
        .args(["-c", "trap '' XFSZ && ulimit -S -f \"$1\" && shift && exec \"$@\"", "sh", limit])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// Fills ("0") or frees ("unlimited") the disk for a running daemon started `with_file_size_limit`. Only the soft
/// limit moves: raising a hard one needs CAP_SYS_RESOURCE, which root in a container may lack.
fn set_file_size_limit(pid: u32, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:unlimited")])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success(), "prlimit --pid {pid} --fsize={limit}");
}

#[test]
fn full_disk_changes_nothing_until_there_is_room() {
    let scene = Scene::new("full");
    (USERS[1].apply)(&scene.fake);
    let before = scene.fake.state();
    let cmd = with_file_size_limit(&scene.command(&[]), "0");
    let mut d = scene.spawn(cmd).unwrap();
    let camera = scene.open_camera();
    assert_nothing_changed_while_unsaved(&scene, &mut d, &before, "File too large");
    let leftovers: Vec<_> = std::fs::read_dir(scene.state_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.is_empty(), "a failed save leaves nothing behind: {leftovers:?}");

    set_file_size_limit(d.pid(), "unlimited");
    assert_meeting_proceeds_and_restores(&scene, d, camera, &before);
}

#[test]
fn disk_full_after_the_backup_was_saved_loses_nothing_and_the_meeting_ends_exactly() {
    let scene = Scene::new("full-later");
    (USERS[1].apply)(&scene.fake);
    let before = scene.fake.state();
    // The first meeting call is applied and its answer comes slowly: the disk fills up meanwhile, after the backup
    // was saved and before the daemon records that the call succeeded. The answer (about 150 bytes) takes some 6 s,
    // the time the test has to fill the disk (prlimit is a process to start, on a busy machine); each byte comes
    // well within the client's read timeout (10 s) and the whole within its total (20 s).
    scene.fake.set_fault_on_nth(Fault::Trickle { interval: Duration::from_millis(40) }, "PUT", CUSTOM, 1);
    let cmd = with_file_size_limit(&scene.command(&[]), "unlimited");
    let mut d = scene.spawn(cmd).unwrap();
    let camera = scene.open_camera();
    d.wait_log("BACKUP: Saved original status").unwrap();
    wait_for("the first call applied", || scene.fake.pending_faults() == 0).unwrap();
    let saved = std::fs::read(scene.backup_path()).unwrap();
    set_file_size_limit(d.pid(), "0");

    // Recording the call fails; so does every later plan that needs a new backup: nothing more changes, and the
    // backup on disk stays whole.
    d.wait_log("BACKUP FAILED").unwrap();
    let log = d.log();
    assert!(log.contains("set custom status :calendar:") && log.contains("File too large"), "{log}");
    assert!(d.is_running());
    assert_eq!(std::fs::read(scene.backup_path()).unwrap(), saved, "the saved backup is untouched");
    let during = scene.fake.state();
    assert!(during.custom_status.as_ref().is_some_and(|c| c.text.ends_with("[In a meeting]")), "{during:?}");
    assert_eq!(during.status, "away", "nothing after the failed save");

    // The meeting ends while the disk is still full: removing the backup needs no room.
    ends_exactly(&scene, d, camera, &before, "disk full");
}

// ---------------------------------------------------------------------------------------------------------------
// Damaged backups at startup: moved aside, never deleted nor followed, and the daemon works.

/// A backup as release 0.1.0 writes it (version 1, still read): DND was set over an automatic online.
fn valid_backup(user_id: &str) -> String {
    format!(
        "{{\"version\":1,\"user_id\":\"{user_id}\",\"started_at\":1800000000,\"previous\":{{\"status\":\"online\",\
         \"manual\":false,\"custom\":null}},\"ours\":{{\"custom\":null,\"custom_applied\":false,\
         \"custom_released\":false,\"status\":\"dnd\",\"dnd_end_time\":0,\"status_applied\":true,\
         \"status_released\":false}}}}\n"
    )
}

enum Planted {
    Bytes(Vec<u8>),
    /// `state.json` is a symlink to a file elsewhere holding a valid backup.
    SymlinkToValid,
}

#[test]
fn a_valid_backup_fixture_is_resumed() {
    // The control for the damaged cases below: the same bytes whole are a backup the daemon takes up.
    let scene = Scene::new("valid");
    scene.fake.set_status("online", false, 0);
    std::fs::write(scene.backup_path(), valid_backup(&scene.fake.user_id())).unwrap();
    let d = scene.daemon(&[]).unwrap();
    d.wait_log("found a backup from a meeting started at 2027-01-15T08:00:00Z; resuming").unwrap();
    d.wait_log("backup deleted").unwrap();
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn damaged_backups_are_moved_aside_and_the_daemon_works() {
    let cases: Vec<(&str, Planted, &str)> = {
        let valid = |id: &str| valid_backup(id).into_bytes();
        let id = "x".repeat(26);
        vec![
            ("truncated", Planted::Bytes(valid(&id)[..valid(&id).len() / 2].to_vec()), "(not a backup file)"),
            ("empty", Planted::Bytes(Vec::new()), "(not a backup file)"),
            ("garbage", Planted::Bytes(b"\xff\xfe\x00garbage\x1b[2J\n".to_vec()), "(not UTF-8)"),
            (
                "unknown version",
                Planted::Bytes(valid_backup(&id).replace("\"version\":1", "\"version\":3").into_bytes()),
                "(unknown version 3)",
            ),
            ("symlink", Planted::SymlinkToValid, "(a symbolic link)"),
        ]
    };
    for (name, planted, reason) in cases {
        let scene = Scene::new(&format!("damaged-{}", name.replace(' ', "-")));
        (USERS[1].apply)(&scene.fake);
        let before = scene.fake.state();
        let precious = scene.dir.join("precious.json");
        let precious_bytes = valid_backup(&scene.fake.user_id()).into_bytes();
        std::fs::write(&precious, &precious_bytes).unwrap();
        match &planted {
            Planted::Bytes(b) => std::fs::write(scene.backup_path(), b).unwrap(),
            Planted::SymlinkToValid => std::os::unix::fs::symlink(&precious, scene.backup_path()).unwrap(),
        }

        let mut d = scene.daemon(&[]).unwrap();
        d.wait_log("is unusable").unwrap();
        d.settle().unwrap();
        let log = d.log();
        let line = log.lines().find(|l| l.contains("is unusable")).unwrap();
        let expected = format!("backup {} is unusable {reason}; moved aside to ", scene.backup_path().display());
        assert!(line.contains(&expected), "{name}: {line}");
        assert!(!log.contains("resuming"), "{name}: a damaged or linked backup was taken up:\n{log}");
        assert!(d.is_running(), "{name}: the daemon must keep running:\n{log}");
        assert!(!scene.backup_exists(), "{name}");
        assert!(scene.fake.calls().is_empty(), "{name}: the server was called without a meeting");
        let aside: Vec<_> = std::fs::read_dir(scene.state_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("state.json.damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "{name}: {aside:?}");
        assert!(line.ends_with(&aside[0].display().to_string()), "{name}: the line names where it went: {line}");
        match &planted {
            Planted::Bytes(b) => assert_eq!(&std::fs::read(&aside[0]).unwrap(), b, "{name}: content kept"),
            Planted::SymlinkToValid => assert_eq!(std::fs::read_link(&aside[0]).unwrap(), precious, "{name}"),
        }

        // The daemon works: a whole meeting, with its new backup a plain file in the state dir.
        let camera = scene.open_camera();
        scene.wait_state("meeting set", in_meeting).unwrap();
        d.wait_log("meeting status set").unwrap();
        let meta = std::fs::symlink_metadata(scene.backup_path()).unwrap();
        assert!(meta.is_file(), "{name}: the new backup is a regular file");
        ends_exactly(&scene, d, camera, &before, name);
        assert_eq!(std::fs::read(&precious).unwrap(), precious_bytes, "{name}: the link's target is untouched");
        assert!(aside[0].symlink_metadata().is_ok(), "{name}: the moved-aside file is kept");
    }
}
