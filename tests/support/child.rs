//! A child process of a test (the daemon, or a process holding a fake camera), killed and reaped on drop so a
//! failing test leaves nothing running.

use std::process::{Child, Command};

pub struct Reaped(pub Child);

impl Reaped {
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
