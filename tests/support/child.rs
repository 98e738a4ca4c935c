//! A child process of a test (the daemon, or a process holding a fake camera), killed and reaped on drop so a
//! failing test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Reaped(pub Child);

/// A `sleep` process holding `path` open on descriptor 3 (opened by the shell before it becomes `sleep`); `setup`
/// may add a uid or anything else to the command first. It may still be the shell when this returns: a test that
/// needs the node open waits for `Reaped::comm` to be `sleep`.
pub fn hold_open(path: &Path, setup: impl FnOnce(&mut Command)) -> Reaped {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec 3<\"$1\"; exec sleep 600", "sh"]).arg(path).stdin(Stdio::null()).stdout(Stdio::null());
    setup(&mut cmd);
    Reaped(cmd.spawn().unwrap())
}

impl Reaped {
    pub fn spawn(cmd: &mut Command) -> Reaped {
        Reaped(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program())))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends `sig` (a name such as `HUP`) with kill(1).
    pub fn signal(&self, sig: &str) {
        assert!(Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap().success());
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// `VmHWM` (peak resident set) from `/proc/PID/status`, in KiB; 0 when it cannot be read.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The program the kernel runs for this process when it is not `program` itself: an emulator registered
    /// with binfmt_misc (qemu-user, when the tests run for another machine), whose memory figures are its own
    /// (translated code, its heap), not the emulated program's. None for a program that runs natively.
    pub fn emulator(&self, program: &str) -> Option<PathBuf> {
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid())).ok()?;
        // A rebuilt binary shows as "PATH (deleted)", which is no file: that is not an emulator.
        (exe != std::fs::canonicalize(program).ok()? && exe.is_file()).then_some(exe)
    }

    /// The process's name (`/proc/PID/comm`), "" once it is gone.
    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid())).unwrap_or_default().trim_end().to_owned()
    }

    /// Kills and reaps it now (dropping it later does nothing more).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    pub fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        std::mem::forget(self);
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let code = self.0.wait().unwrap().code();
        std::mem::forget(self);
        code
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
