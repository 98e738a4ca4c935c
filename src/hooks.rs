//! The optional `on-meeting-start` / `on-meeting-end` commands (lights, music): run in the background with a time
//! limit, so a slow or hung command never holds up the loop, and without the token in their environment.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a hook may run before it is killed.
const HOOK_TIME_LIMIT: Duration = Duration::from_secs(60);

/// Hooks still running.
#[derive(Default)]
pub(crate) struct Hooks {
    running: Vec<(Child, Instant, &'static str)>,
}

impl Hooks {
    /// Starts `command` with `sh -c`. `event` is `start` or `end`; `apps` describes who holds a device.
    pub(crate) fn spawn(&mut self, event: &'static str, command: &str, apps: &str) {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .env("MM_STATUS_SYNC_EVENT", event)
            .env("MM_STATUS_SYNC_APPS", apps)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The token (and where it lives) stays with the daemon.
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("MM_STATUS_SYNC_TOKEN") || k == "CREDENTIALS_DIRECTORY") {
                cmd.env_remove(k);
            }
        }
        match cmd.spawn() {
            Ok(child) => {
                log::info!("on-meeting-{event} command started (pid {})", child.id());
                self.running.push((child, Instant::now(), event));
            }
            Err(e) => log::warn!("on-meeting-{event} command could not start: {e}"),
        }
    }

    /// Reaps finished hooks and kills those over the limit; returns when to look again.
    pub(crate) fn reap(&mut self, now: Instant) -> Option<Instant> {
        self.running.retain_mut(|(child, started, event)| match child.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    log::warn!("on-meeting-{event} command failed: {status}");
                }
                false
            }
            Ok(None) if now.duration_since(*started) >= HOOK_TIME_LIMIT => {
                log::warn!(
                    "on-meeting-{event} command still running after {} s; killing it",
                    HOOK_TIME_LIMIT.as_secs()
                );
                let _ = child.kill();
                let _ = child.wait();
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
        // Poll finished children once a second while any run; they are rare and short.
        (!self.running.is_empty()).then(|| now + Duration::from_secs(1))
    }
}
