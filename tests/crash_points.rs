//! kill -9 at every step of the start and end sequences, a state dir that cannot be written, and damaged backups,
//! all with the real binary against the fake server: whatever happens, the user's own status comes back exactly and
//! nothing on the server changes before the backup is on disk.
//!
//! The daemon is frozen at an exact step without any hook in the product: the fake server hangs on the nth request
//! with a given method and path, either before applying it (`NeverAnswer`) or after (`ProcessThenNeverAnswer`).

mod support;

use support::daemon_run::{Scene, differences, in_meeting};
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
    },
    UserSetup {
        name: "away manual, expiring custom",
        apply: |f| {
            f.set_status("away", true, 0);
            f.set_custom_status("sandwich", "Lunch with \"the team\" ü", "date_and_time", &rfc3339_in(f, 7200));
        },
        has_custom: true,
        sets_dnd: true,
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

fn steps(user: &UserSetup) -> Vec<Step> {
    let step =
        |phase, name: &str, method, path, nth, fault| Step { name: name.to_owned(), phase, method, path, nth, fault };
    let both = |phase, name: &str, method, path| {
        [
            step(phase, &format!("{name}, not applied"), method, path, 1, Fault::NeverAnswer),
            step(phase, &format!("{name}, applied"), method, path, 1, Fault::ProcessThenNeverAnswer),
        ]
    };
    let mut out = vec![
        // Before the backup: the token's user, then the server view (status, then the user with its custom status).
        step(Phase::Start, "GET users/me (who)", "GET", ME, 1, Fault::NeverAnswer),
        step(Phase::Start, "GET status", "GET", STATUS, 1, Fault::NeverAnswer),
        step(Phase::Start, "GET user (custom)", "GET", ME, 2, Fault::NeverAnswer),
    ];
    // With the backup on disk.
    out.extend(both(Phase::Start, "PUT meeting custom", "PUT", CUSTOM));
    if user.sets_dnd {
        out.extend(both(Phase::Start, "PUT dnd", "PUT", STATUS));
    }
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
    out
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
            let d = scene.daemon(&[])?;
            let camera = scene.open_camera();
            (d, Some(camera))
        }
        Phase::End => {
            let d = scene.daemon(&[])?;
            let camera = scene.open_camera();
            d.wait_log("meeting status set")?;
            scene.wait_state("meeting set", in_meeting)?;
            arm();
            drop(camera);
            (d, None)
        }
    };
    // The fake takes the fault, applies (or not) and records the call under one lock: once it is used up, the
    // daemon is waiting for an answer that never comes, exactly at this step.
    scene.wait_for("the step is reached", || scene.fake.pending_faults() == 0).map_err(|e| {
        let calls: Vec<String> = scene.fake.calls().iter().map(|c| format!("{} {}", c.method, c.path)).collect();
        format!("{e}; calls {calls:?}\nlog:\n{}", first.log())
    })?;
    first.kill9();
    let backup_after_kill = scene.backup_exists();
    scene.fake.clear_faults();
    if camera_on_at_restart {
        camera.get_or_insert_with(|| scene.open_camera());
    } else {
        camera = None;
    }

    let d = scene.daemon(&[])?;
    if camera_on_at_restart {
        d.wait_log("camera in use")?;
        d.settle()?;
        if !scene.backup_exists() {
            return Err(format!("no backup while the meeting goes on\nlog:\n{}", d.log()));
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
    let mut failures = Vec::new();
    eprintln!("\n{:<30} {:<5} {:<36} {:<10} {:<10}", "user state", "phase", "killed at", "camera on", "camera off");
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
