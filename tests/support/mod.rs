//! Test support shared by the integration test crates (`mod support;`): a fake Mattermost server that speaks the
//! real protocol over real sockets, a throw-away TLS certificate authority for it, the real binary run against it
//! (`daemon_run::Scene`), and the few things every test needs: the binary's path, a temp dir and a child process
//! that clean up on drop, a wait, and what the meeting status looks like.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod child;
pub mod daemon_run;
pub mod devices;
pub mod fake_mattermost;
pub mod go_json;
pub mod go_time;
pub mod http;
pub mod temp_dir;
pub mod tls;

use std::time::{Duration, Instant};

pub use child::Reaped;
pub use fake_mattermost::EchoStyle;
pub use fake_mattermost::{
    CustomStatus, FakeMattermost, FakeUser, Fault, FaultBody, FaultScope, RateLimit, RecordedCall, UserState,
};
pub use temp_dir::TempDir;
pub use tls::TestTls;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mm-status-sync");

/// How long a wait polls before it fails: long enough for an overloaded 2-core machine or an emulator, where a
/// wait normally ends in milliseconds. A failure deadline, never a bound on how fast anything must be. (At 30 s the
/// crash matrices failed on a machine running two busy loops and a parallel build beside them, a load of 16.)
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls until `check` holds, for at most `WAIT`; `Err` names `what`.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) -> Result<(), String> {
    wait_until(what, WAIT, || Ok(check()))
}

/// Polls `check` every 5 ms until it holds, for at most `limit`. An `Err` from `check` (a broken invariant) ends
/// the wait at once with that error.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !check()? {
        if Instant::now() >= deadline {
            return Err(format!("{what}: not reached in {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// How much of the meeting status `in_meeting_as` requires besides DND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// The default custom status: the marker at the end of the text and the `calendar` emoji.
    Default,
    /// The marker at the end of the text, whatever the emoji.
    Text,
    /// No custom status check (custom statuses are turned off on the server).
    None,
}

/// The meeting status as the daemon sets it by default: DND (its own, or the user's left alone) and the marker at
/// the end of the custom status with the `calendar` emoji.
pub fn in_meeting(s: &UserState) -> bool {
    in_meeting_as(s, Marker::Default)
}

/// The meeting status: DND, and as much of the custom status as `marker` says.
pub fn in_meeting_as(s: &UserState, marker: Marker) -> bool {
    let marked = |emoji: Option<&str>| {
        s.custom_status
            .as_ref()
            .is_some_and(|c| c.text.ends_with("[In a meeting]") && emoji.is_none_or(|e| c.emoji == e))
    };
    s.status == "dnd"
        && match marker {
            Marker::Default => marked(Some("calendar")),
            Marker::Text => marked(None),
            Marker::None => true,
        }
}
