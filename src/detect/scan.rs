//! The ground truth: which processes hold a camera, read from `/proc/*/fd` with `getdents64` and `readlinkat` into
//! buffers allocated once, so that a full scan of tens of thousands of descriptors costs only kernel time and never
//! touches the heap (measured in `examples/bench_scan.rs`, proved in `tests/scan_alloc.rs`).

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{COMM_MAX, DeviceClass, DeviceSet, Filter, Verdict, is_capture_node};
use crate::sys;

/// Where procfs is mounted unless a test says otherwise.
pub(crate) const DEFAULT_PROC_ROOT: &str = "/proc";

/// `getdents64` buffer for `/proc` and for each `/proc/PID/fd`: 32 KiB holds about a thousand entries per call.
const DIRENT_BUF: usize = 32 * 1024;
/// Link targets up to `PATH_MAX` fit with a byte to spare; a target that fills the whole buffer may have been cut
/// and is never matched.
const LINK_BUF: usize = libc::PATH_MAX as usize + 1;
/// `/proc/PID/maps` is read through this window; a line is at most a page plus its header, so one always fits.
const MAPS_BUF: usize = 64 * 1024;
/// `getdents64` buffer for `/proc/PID/task`: only the first few threads are looked at.
const TASK_BUF: usize = 4 * 1024;

/// A process holding a matching device, and what it means.
#[derive(Clone)]
pub struct Holder {
    pub pid: u32,
    comm: [u8; COMM_MAX + 1],
    comm_len: u8,
    device: Vec<u8>,
    /// Whether the device is a camera or a microphone.
    pub class: DeviceClass,
    /// Whether the process maps the device (streams from it); `None` when nobody asked (the process is not in
    /// `require_streaming_for`) or `/proc/PID/maps` could not be read.
    pub streaming: Option<bool>,
    pub verdict: Verdict,
}

impl Holder {
    fn empty() -> Holder {
        Holder {
            pid: 0,
            comm: [0; COMM_MAX + 1],
            comm_len: 0,
            device: Vec::with_capacity(64),
            class: DeviceClass::Camera,
            streaming: None,
            verdict: Verdict::Counts,
        }
    }

    /// The process name from `/proc/PID/comm`; only its valid UTF-8 start if the name is not UTF-8, and empty if
    /// it could not be read.
    pub fn comm(&self) -> &str {
        let bytes = self.comm_bytes();
        match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        }
    }

    pub(crate) fn comm_bytes(&self) -> &[u8] {
        &self.comm[..self.comm_len as usize]
    }

    /// The device as the kernel names it in `/proc/PID/fd` (the canonical node, e.g. `/dev/video0`).
    pub fn device(&self) -> &[u8] {
        &self.device
    }

    /// The device for people to read, with any non-UTF-8 bytes replaced.
    pub fn device_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.device)
    }
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Holder")
            .field("pid", &self.pid)
            .field("comm", &String::from_utf8_lossy(self.comm_bytes()))
            .field("device", &self.device_lossy())
            .field("class", &self.class)
            .field("streaming", &self.streaming)
            .field("verdict", &self.verdict)
            .finish()
    }
}

/// What one scan looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Processes whose descriptors were read.
    pub processes: usize,
    /// Descriptor links read.
    pub fds: usize,
    /// Processes that vanished or whose descriptors could not be read, in full or in part (other users' processes
    /// without privileges, any process from inside a user namespace). Holders among what could be read still count.
    pub skipped: usize,
    /// Of the skipped, those denied to us that belong to another user (or whose user ids differ from ours in part,
    /// as a setuid program's do); counted only when [`Scanner::explain_unreadable`] is on.
    pub(crate) other_users: usize,
    /// Of the skipped, those denied to us although they are our own: they made themselves non-dumpable
    /// (`prctl(PR_SET_DUMPABLE, 0)`), and reading them takes `CAP_SYS_PTRACE`. Counted, and the first few named
    /// ([`Scanner::not_dumpable`]), only when [`Scanner::explain_unreadable`] is on.
    pub(crate) not_dumpable: usize,
    pub(crate) elapsed: Duration,
}

/// A process of our own we could not read because it is not dumpable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NotDumpable {
    pub(crate) pid: u32,
    comm: [u8; COMM_MAX],
    comm_len: u8,
}

impl NotDumpable {
    /// Its name from `/proc/PID/comm` (lossy: invalid UTF-8 is cut at the first bad byte).
    pub(crate) fn comm(&self) -> &str {
        let bytes = &self.comm[..self.comm_len as usize];
        match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        }
    }
}

/// Why processes were skipped, for `scan` and the debug log: `2 of other users, 1 of your own not dumpable:
/// keepassxc (pid 4242)`; empty when nothing was counted by cause.
pub(crate) fn explain_skipped(stats: &ScanStats, not_dumpable: &[NotDumpable]) -> String {
    let mut out = String::new();
    if stats.other_users > 0 {
        out.push_str(&format!("{} of other users", stats.other_users));
    }
    if stats.not_dumpable > 0 {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let names: Vec<String> = not_dumpable.iter().map(|p| format!("{} (pid {})", p.comm(), p.pid)).collect();
        let more = stats.not_dumpable - not_dumpable.len();
        out.push_str(&format!("{} of your own not dumpable: {}", stats.not_dumpable, names.join(", ")));
        if more > 0 {
            out.push_str(&format!(" and {more} more"));
        }
    }
    out
}

/// How many non-dumpable processes a scan names; the rest are only counted.
const NOT_DUMPABLE_NAMED: usize = 8;

/// Scans `/proc` for holders of the devices in a [`DeviceSet`]. Owns a descriptor on the proc root and every buffer
/// it needs, and keeps holder slots between scans, so a warmed-up scan allocates nothing.
pub struct Scanner {
    proc_dir: OwnedFd,
    proc_buf: Box<[u8]>,
    self_pid: u32,
    work: PidReader,
}

/// The part of the scanner that reads one process; separate from the `/proc` listing buffer, which is borrowed
/// while processes are read.
struct PidReader {
    fd_buf: Box<[u8]>,
    /// For `/proc/PID/task`, listed while a thread's descriptors are read into `fd_buf`.
    task_buf: Box<[u8]>,
    link_buf: Box<[u8]>,
    maps_buf: Box<[u8]>,
    /// Slots; the first `holder_count` are the current holders, the rest keep their buffers for later scans.
    holders: Vec<Holder>,
    holder_count: usize,
    recheck_pids: Vec<u32>,
    /// Whether to find out why a process could not be read (an extra read of `/proc/PID/status` for each).
    explain: bool,
    self_uid: u32,
    not_dumpable: [NotDumpable; NOT_DUMPABLE_NAMED],
}

impl Scanner {
    /// A scanner over `/proc`.
    pub fn new() -> io::Result<Scanner> {
        Scanner::with_proc_root(DEFAULT_PROC_ROOT)
    }

    /// A scanner over another procfs mount or a fake tree of `PID/fd/N` symbolic links, `PID/comm` and `PID/maps`.
    pub fn with_proc_root(proc_root: impl AsRef<Path>) -> io::Result<Scanner> {
        Scanner::with_link_buffer(proc_root.as_ref(), LINK_BUF)
    }

    fn with_link_buffer(proc_root: &Path, link_buf: usize) -> io::Result<Scanner> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("cannot open {}: {e}", proc_root.display()));
        let path = CString::new(proc_root.as_os_str().as_bytes())
            .map_err(|e| context(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let proc_dir = sys::open_dir_at(None, &path).map_err(context)?;
        Ok(Scanner {
            proc_dir,
            proc_buf: vec![0; DIRENT_BUF].into_boxed_slice(),
            self_pid: std::process::id(),
            work: PidReader {
                fd_buf: vec![0; DIRENT_BUF].into_boxed_slice(),
                task_buf: vec![0; TASK_BUF].into_boxed_slice(),
                link_buf: vec![0; link_buf].into_boxed_slice(),
                maps_buf: vec![0; MAPS_BUF].into_boxed_slice(),
                holders: Vec::with_capacity(8),
                holder_count: 0,
                recheck_pids: Vec::with_capacity(8),
                explain: false,
                self_uid: sys::effective_uid(),
                not_dumpable: [NotDumpable { pid: 0, comm: [0; COMM_MAX], comm_len: 0 }; NOT_DUMPABLE_NAMED],
            },
        })
    }

    /// Reads the descriptors of every process (but this one) and replaces the holder list. Processes that vanish
    /// or cannot be read are skipped and counted; nothing here fails.
    pub fn full_scan(&mut self, devices: &DeviceSet, filter: &Filter) -> ScanStats {
        let started = Instant::now();
        let mut stats = ScanStats::default();
        self.work.holder_count = 0;
        let proc_dir = self.proc_dir.as_fd();
        if let Err(e) = sys::rewind_dir(proc_dir) {
            log::warn!("cannot rewind the proc directory: {e}");
        }
        loop {
            let filled = match sys::getdents(proc_dir, &mut self.proc_buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    log::warn!("cannot list the proc directory: {e}");
                    break;
                }
            };
            for entry in sys::dirents(&self.proc_buf[..filled]) {
                let Some(pid) = parse_pid(entry.name()) else { continue };
                if pid != self.self_pid {
                    self.work.read_pid(proc_dir, pid, devices, filter, &mut stats);
                }
            }
        }
        stats.elapsed = started.elapsed();
        stats
    }

    /// Re-reads only the processes in the current holder list, dropping the holders that are gone or closed the
    /// device. The cheap first answer to an inotify event; it cannot find new holders (that takes a full scan).
    pub fn recheck(&mut self, devices: &DeviceSet, filter: &Filter) -> ScanStats {
        let started = Instant::now();
        let mut stats = ScanStats::default();
        let work = &mut self.work;
        work.recheck_pids.clear();
        for holder in &work.holders[..work.holder_count] {
            if !work.recheck_pids.contains(&holder.pid) {
                work.recheck_pids.push(holder.pid);
            }
        }
        work.holder_count = 0;
        for i in 0..work.recheck_pids.len() {
            let pid = work.recheck_pids[i];
            work.read_pid(self.proc_dir.as_fd(), pid, devices, filter, &mut stats);
        }
        stats.elapsed = started.elapsed();
        stats
    }

    /// Whether scans find out why processes could not be read ([`ScanStats::other_users`],
    /// [`ScanStats::not_dumpable`]). Off by default: it costs a read of `/proc/PID/status` per such process, which
    /// for a user service is every other user's process.
    pub(crate) fn explain_unreadable(&mut self, on: bool) {
        self.work.explain = on;
    }

    /// The first of our own non-dumpable processes the last scan could not read (at most 8; `ScanStats` has the
    /// count).
    pub(crate) fn not_dumpable(&self, stats: &ScanStats) -> &[NotDumpable] {
        &self.work.not_dumpable[..stats.not_dumpable.min(NOT_DUMPABLE_NAMED)]
    }

    /// One entry per process and device, from the last scan or recheck.
    pub fn holders(&self) -> &[Holder] {
        &self.work.holders[..self.work.holder_count]
    }

    /// Whether some holder counts, i.e. a camera or a microphone is in use.
    pub fn in_use(&self) -> bool {
        self.holders().iter().any(|h| h.verdict == Verdict::Counts)
    }

    /// Whether some holder of a device of `class` counts.
    pub fn in_use_by(&self, class: DeviceClass) -> bool {
        self.holders().iter().any(|h| h.verdict == Verdict::Counts && h.class == class)
    }
}

/// A `/proc` entry name that is a process id.
fn parse_pid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name.len() > 10 {
        return None;
    }
    let mut pid: u32 = 0;
    for &b in name {
        if !b.is_ascii_digit() {
            return None;
        }
        pid = pid.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(pid)
}

/// The four user ids (real, effective, saved, file system) from the `Uid:` line of `/proc/PID/status`.
fn status_uids(status: &[u8]) -> Option<[u32; 4]> {
    let start = status.windows(5).position(|w| w == b"\nUid:")? + 5;
    let line = &status[start..];
    let line = &line[..line.iter().position(|&b| b == b'\n')?];
    let mut uids = [0u32; 4];
    let mut fields = line.split(|&b| b == b'\t' || b == b' ').filter(|f| !f.is_empty());
    for uid in &mut uids {
        *uid = parse_pid(fields.next()?)?;
    }
    Some(uids)
}

/// A path like `"1234/task/1240/fd"` relative to the proc root.
fn thread_path(pid: u32, tid: u32, leaf: &[u8]) -> sys::StackPath<40> {
    let mut path = sys::StackPath::new();
    path.push_u32(pid).push(b"/task/").push_u32(tid).push(b"/").push(leaf);
    path
}

/// A path like `"1234/fd"` relative to the proc root.
fn pid_path(pid: u32, leaf: &[u8]) -> sys::StackPath<40> {
    let mut path = sys::StackPath::new();
    path.push_u32(pid).push(b"/").push(leaf);
    path
}

impl PidReader {
    fn read_pid(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        pid: u32,
        devices: &DeviceSet,
        filter: &Filter,
        stats: &mut ScanStats,
    ) {
        let mut path = pid_path(pid, b"fd");
        let Some(path) = path.as_cstr() else { return };
        let fd_dir = match sys::open_dir_at(Some(proc_dir), path) {
            Ok(fd) => fd,
            Err(e) if sys::is_denied(&e) && self.owns_leaderless(proc_dir, pid) => {
                // Our own process whose main thread has exited: its /proc/PID/fd is denied even to us (the leader
                // has no memory map left to judge access by), while each remaining thread's fd directory opens.
                // Our non-dumpable processes are denied there too, and are counted as such below.
                let first = self.holder_count;
                let thread = self.read_thread_fds(proc_dir, pid, first, devices, stats);
                if let Some((_, false)) = thread {
                    stats.processes += 1;
                } else {
                    stats.skipped += 1;
                    self.explain_denied(proc_dir, pid, stats);
                }
                if self.holder_count > first {
                    self.judge(proc_dir, pid, thread.map(|(tid, _)| tid), first, devices, filter);
                }
                return;
            }
            Err(e) => {
                stats.skipped += 1;
                if sys::is_denied(&e) {
                    self.explain_denied(proc_dir, pid, stats);
                } else if !sys::is_gone(&e) {
                    log::debug!("cannot open /proc/{pid}/fd: {e}");
                }
                return;
            }
        };
        let first = self.holder_count;
        let (listed, mut denied) = self.read_fds(fd_dir.as_fd(), pid, first, devices, stats);
        // The thread to read the memory map of when the main thread is gone (its own map is then empty).
        let mut thread = None;
        if listed == 0 {
            // Once the main thread has exited, /proc/PID/fd lists nothing while the other threads still hold the
            // descriptors; each thread's own fd directory shows them.
            if let Some((tid, thread_denied)) = self.read_thread_fds(proc_dir, pid, first, devices, stats) {
                thread = Some(tid);
                denied = thread_denied;
            }
        }
        if denied {
            stats.skipped += 1;
            self.explain_denied(proc_dir, pid, stats);
        } else {
            stats.processes += 1;
        }
        if self.holder_count > first {
            self.judge(proc_dir, pid, thread, first, devices, filter);
        }
    }

    /// Whether `/proc/PID`, whose fd directory we were denied, belongs to us (the kernel keeps the process's user
    /// on it even while the process is not dumpable). Then the process is either ours and non-dumpable, or ours
    /// with its main thread gone: only the latter's threads' fd directories open. One `stat`, only for denied
    /// processes, so other users' processes cost no more than that.
    fn owns_leaderless(&self, proc_dir: BorrowedFd<'_>, pid: u32) -> bool {
        let mut path = sys::StackPath::<16>::new();
        path.push_u32(pid);
        path.as_cstr().is_some_and(|p| sys::owner_at(proc_dir, p).is_ok_and(|uid| uid == self.self_uid))
    }

    /// Counts a process we were denied by cause, when asked to: another user's, or our own non-dumpable one
    /// (its user ids in `/proc/PID/status`, readable by all, are all ours). Allocation-free.
    fn explain_denied(&mut self, proc_dir: BorrowedFd<'_>, pid: u32, stats: &mut ScanStats) {
        if !self.explain {
            return;
        }
        let mut status = [0u8; 1024];
        let mut path = pid_path(pid, b"status");
        let Some(Ok(fd)) = path.as_cstr().map(|p| sys::open_file_at(Some(proc_dir), p)) else { return };
        let Ok(n) = sys::read_full(fd.as_fd(), &mut status) else { return };
        let Some(uids) = status_uids(&status[..n]) else { return };
        if uids.iter().any(|&uid| uid != self.self_uid) {
            stats.other_users += 1;
            return;
        }
        if let Some(slot) = self.not_dumpable.get_mut(stats.not_dumpable) {
            let mut comm = [0u8; 64];
            let mut path = pid_path(pid, b"comm");
            let len = match path.as_cstr().map(|p| sys::open_file_at(Some(proc_dir), p)) {
                Some(Ok(fd)) => sys::read_full(fd.as_fd(), &mut comm).unwrap_or(0),
                _ => 0,
            };
            let comm = comm[..len].strip_suffix(b"\n").unwrap_or(&comm[..len]);
            let comm = &comm[..comm.len().min(COMM_MAX)];
            slot.pid = pid;
            slot.comm[..comm.len()].copy_from_slice(comm);
            slot.comm_len = comm.len() as u8;
        }
        stats.not_dumpable += 1;
    }

    /// Reads one fd directory into the holders from `first`; returns how many descriptors it listed and whether
    /// reading some of them was denied.
    fn read_fds(
        &mut self,
        fd_dir: BorrowedFd<'_>,
        pid: u32,
        first: usize,
        devices: &DeviceSet,
        stats: &mut ScanStats,
    ) -> (usize, bool) {
        let mut listed = 0;
        let mut denied = false;
        loop {
            let filled = match sys::getdents(fd_dir, &mut self.fd_buf) {
                Ok(0) => break,
                Ok(n) => n,
                // The process exited while we listed it: what we saw so far is all there is.
                Err(_) => break,
            };
            for entry in sys::dirents(&self.fd_buf[..filled]) {
                if entry.name().first() == Some(&b'.') {
                    continue;
                }
                listed += 1;
                let len = match sys::readlink_at(fd_dir, entry.name_cstr(), &mut self.link_buf) {
                    Ok(len) => len,
                    Err(e) => {
                        // Listing another user's descriptors can work while reading them does not (it takes
                        // CAP_SYS_PTRACE too); a closed descriptor is simply gone.
                        denied |= sys::is_denied(&e);
                        continue;
                    }
                };
                stats.fds += 1;
                if len >= self.link_buf.len() {
                    continue;
                }
                let target = &self.link_buf[..len];
                let class = devices.class_of(target).or_else(|| {
                    // Another root (a chroot, a container with /dev bind-mounted): the same node by number. Only
                    // targets named like a device cost the stat.
                    if !devices.names_a_device(target) {
                        return None;
                    }
                    let rdev = sys::char_device_at(fd_dir, entry.name_cstr()).ok().flatten()?;
                    devices.class_of_number(rdev)
                });
                if let Some(class) = class {
                    add_holder(&mut self.holders, &mut self.holder_count, first, pid, target, class);
                }
            }
        }
        (listed, denied)
    }

    /// The descriptors of a process whose main thread is gone, through `/proc/PID/task/TID/fd` of the first other
    /// thread that lists any; returns that thread and whether reading was denied. Kernel threads and processes
    /// without descriptors cost one `task` listing.
    fn read_thread_fds(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        pid: u32,
        first: usize,
        devices: &DeviceSet,
        stats: &mut ScanStats,
    ) -> Option<(u32, bool)> {
        let mut path = pid_path(pid, b"task");
        let Some(Ok(task_dir)) = path.as_cstr().map(|p| sys::open_dir_at(Some(proc_dir), p)) else { return None };
        let filled = sys::getdents(task_dir.as_fd(), &mut self.task_buf).ok()?;
        // Copied out first: `read_fds` needs `self` while the listing sits in `task_buf`. Threads share one table,
        // so the first few that are still there are plenty.
        let mut tids = [0u32; 16];
        let mut count = 0;
        for tid in sys::dirents(&self.task_buf[..filled]).filter_map(|entry| parse_pid(entry.name())) {
            if tid != pid && count < tids.len() {
                tids[count] = tid;
                count += 1;
            }
        }
        for &tid in &tids[..count] {
            let mut path = thread_path(pid, tid, b"fd");
            let Some(Ok(fd_dir)) = path.as_cstr().map(|p| sys::open_dir_at(Some(proc_dir), p)) else { continue };
            let (listed, denied) = self.read_fds(fd_dir.as_fd(), pid, first, devices, stats);
            if listed > 0 {
                return Some((tid, denied));
            }
        }
        None
    }

    /// Fills in the process name, streaming evidence and verdict of the holders `first..` (all of process `pid`).
    fn judge(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        pid: u32,
        thread: Option<u32>,
        first: usize,
        devices: &DeviceSet,
        filter: &Filter,
    ) {
        let mut comm = [0u8; 64];
        let mut path = pid_path(pid, b"comm");
        let comm_len = match path.as_cstr().map(|p| sys::open_file_at(Some(proc_dir), p)) {
            Some(Ok(fd)) => sys::read_full(fd.as_fd(), &mut comm).unwrap_or(0),
            Some(Err(e)) if sys::is_gone(&e) => {
                // Exited since its descriptors were read: it holds nothing any more.
                self.holder_count = first;
                return;
            }
            _ => 0,
        };
        let comm = comm[..comm_len].strip_suffix(b"\n").unwrap_or(&comm[..comm_len]);
        let comm = &comm[..comm.len().min(COMM_MAX)];
        for i in first..self.holder_count {
            let holder = &mut self.holders[i];
            holder.comm[..comm.len()].copy_from_slice(comm);
            holder.comm_len = comm.len() as u8;
            holder.streaming = None;
            holder.verdict = if filter.ignores(comm) {
                Verdict::Ignored
            } else if holder.class == DeviceClass::Microphone {
                // Sound servers hold a capture node only while something records (they suspend idle nodes), so
                // holding one is the evidence; require-streaming-for is about cameras.
                if is_capture_node(&holder.device) { Verdict::Counts } else { Verdict::NotCapture }
            } else if devices.is_metadata_node(&holder.device) {
                Verdict::MetadataNode
            } else if filter.requires_streaming(comm) {
                let mut maps = match thread {
                    Some(tid) => thread_path(pid, tid, b"maps"),
                    None => pid_path(pid, b"maps"),
                };
                holder.streaming =
                    maps.as_cstr().and_then(|path| maps_device(proc_dir, path, &holder.device, &mut self.maps_buf));
                // Unreadable maps leave only the descriptor as evidence, which is what counts without the filter.
                if holder.streaming == Some(false) { Verdict::NotStreaming } else { Verdict::Counts }
            } else {
                Verdict::Counts
            };
        }
    }
}

/// Records that `pid` holds `target`, reusing a slot and its buffer; a process holding the same device through
/// several descriptors is one holder.
fn add_holder(holders: &mut Vec<Holder>, count: &mut usize, first: usize, pid: u32, target: &[u8], class: DeviceClass) {
    if holders[first..*count].iter().any(|h| h.device == target) {
        return;
    }
    if *count == holders.len() {
        holders.push(Holder::empty());
    }
    let slot = &mut holders[*count];
    slot.pid = pid;
    slot.device.clear();
    slot.device.extend_from_slice(target);
    slot.class = class;
    slot.comm_len = 0;
    slot.streaming = None;
    slot.verdict = Verdict::Counts;
    *count += 1;
}

/// Whether `/proc/PID/maps` has a mapping of `device` (a line ending in `" <device>"`), read through `buf` a
/// window at a time; `None` if it cannot be read.
fn maps_device(proc_dir: BorrowedFd<'_>, path: &CStr, device: &[u8], buf: &mut [u8]) -> Option<bool> {
    let fd = sys::open_file_at(Some(proc_dir), path).ok()?;
    let maps_line = |line: &[u8]| {
        line.len() > device.len() && line.ends_with(device) && line[line.len() - device.len() - 1] == b' '
    };
    // `kept` bytes of an unfinished line wait at the start of `buf`; `skipping` is set inside a line too long for
    // the window, which is dropped rather than matched on a fragment.
    let mut kept = 0;
    let mut skipping = false;
    loop {
        if kept == buf.len() {
            kept = 0;
            skipping = true;
        }
        let n = sys::read(fd.as_fd(), &mut buf[kept..]).ok()?;
        if n == 0 {
            return Some(!skipping && maps_line(&buf[..kept]));
        }
        let filled = kept + n;
        let mut start = 0;
        while let Some(newline) = buf[start..filled].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + newline];
            if skipping {
                skipping = false;
            } else if maps_line(line) {
                return Some(true);
            }
            start += newline + 1;
        }
        if skipping {
            kept = 0;
        } else {
            buf.copy_within(start..filled, 0);
            kept = filled - start;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Pattern;

    #[test]
    fn pid_names_table() {
        let cases: &[(&[u8], Option<u32>)] = &[
            (b"1", Some(1)),
            (b"4294967295", Some(u32::MAX)),
            (b"4294967296", None),
            (b"self", None),
            (b"12a", None),
            (b"", None),
            (b".", None),
        ];
        for &(name, want) in cases {
            assert_eq!(parse_pid(name), want, "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn status_uids_table() {
        let cases: &[(&[u8], Option<[u32; 4]>)] = &[
            (b"Name:\tx\nState:\tS\nUid:\t1000\t1000\t1000\t1000\nGid:\t1\t1\t1\t1\n", Some([1000; 4])),
            (b"Name:\tx\nUid:\t0\t1000\t0\t1000\n", Some([0, 1000, 0, 1000])),
            (b"Name:\tUid:\t5\t5\t5\t5\n", None),
            (b"Name:\tx\nUid:\t1000\t1000\n", None),
            (b"Name:\tx\nUid:\t1000\t1000\t1000\t1000", None),
            (b"", None),
        ];
        for &(status, want) in cases {
            assert_eq!(status_uids(status), want, "{:?}", String::from_utf8_lossy(status));
        }
    }

    /// A fake proc root with one process whose maps file is given.
    fn maps_fixture(tag: &str, maps: &[u8]) -> (std::path::PathBuf, OwnedFd) {
        let root = std::env::temp_dir().join(format!("mmss-maps-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(root.join("7")).unwrap();
        std::fs::write(root.join("7/maps"), maps).unwrap();
        let c = CString::new(root.as_os_str().as_bytes()).unwrap();
        let fd = sys::open_dir_at(None, &c).unwrap();
        (root, fd)
    }

    #[test]
    fn maps_lines_across_windows() {
        let dev = b"/dev/video0";
        let line = |path: &str| format!("7f00-7f10 rw-s 00000000 00:05 12    {path}\n");
        let filler: String = (0..200).map(|_| line("/usr/lib/libc.so.6")).collect();
        let cases: Vec<(&str, String, usize, Option<bool>)> = vec![
            ("hit", format!("{filler}{}", line("/dev/video0")), 64, Some(true)),
            ("hit-no-newline", format!("{filler}{}", line("/dev/video0").trim_end()), 64, Some(true)),
            ("other-node", format!("{filler}{}", line("/dev/video01")), 64, Some(false)),
            ("suffix-only", format!("{filler}{}", line("/x/dev/video0")), 64, Some(false)),
            ("deleted", format!("{filler}{}", line("/dev/video0 (deleted)")), 64, Some(false)),
            // A line longer than the window is dropped, even though its tail would match.
            (
                "overlong",
                format!("{}{}", line(&format!("/a{}/dev/video0", "b".repeat(80))), line("/lib")),
                64,
                Some(false),
            ),
            (
                "overlong-then-hit",
                format!("{}{}", line(&format!("/a{}", "b".repeat(80))), line("/dev/video0")),
                64,
                Some(true),
            ),
            ("empty", String::new(), 64, Some(false)),
        ];
        for (tag, maps, window, want) in cases {
            let (root, fd) = maps_fixture(tag, maps.as_bytes());
            let mut buf = vec![0u8; window];
            assert_eq!(maps_device(fd.as_fd(), c"7/maps", dev, &mut buf), want, "{tag}");
            let mut big = vec![0u8; MAPS_BUF];
            if tag != "overlong" {
                assert_eq!(maps_device(fd.as_fd(), c"7/maps", dev, &mut big), want, "{tag} with a big window");
            }
            std::fs::remove_dir_all(root).unwrap();
        }
    }

    /// A link target that does not fit the buffer is cut short by the kernel; the cut-off prefix must not be
    /// taken for a match (`.../cam` is a directory here, `.../cam*` the pattern).
    #[test]
    fn truncated_link_targets_never_match() {
        let root = std::env::temp_dir().join(format!("mmss-trunc-{}", std::process::id()));
        let proc_root = root.join("proc");
        let target = root.join("cam/inner/file");
        std::fs::create_dir_all(proc_root.join("42/fd")).unwrap();
        std::fs::write(proc_root.join("42/comm"), b"cam-app\n").unwrap();
        std::os::unix::fs::symlink(&target, proc_root.join("42/fd/3")).unwrap();
        let pattern = Pattern::new(&format!("{}/cam*", root.display())).unwrap();
        let devices = DeviceSet::new(vec![pattern]);
        let cut = root.join("cam").as_os_str().len();
        let mut scanner = Scanner::with_link_buffer(&proc_root, cut).unwrap();
        let stats = scanner.full_scan(&devices, &Filter::default());
        assert_eq!(stats.fds, 1);
        assert!(scanner.holders().is_empty(), "{:?}", scanner.holders());
        // The same tree with room for the whole target: it does not match either, but a matching one does.
        std::fs::remove_file(proc_root.join("42/fd/3")).unwrap();
        std::os::unix::fs::symlink(root.join("camera"), proc_root.join("42/fd/3")).unwrap();
        let mut scanner = Scanner::with_link_buffer(&proc_root, LINK_BUF).unwrap();
        scanner.full_scan(&devices, &Filter::default());
        assert_eq!(scanner.holders().len(), 1);
        assert_eq!(scanner.holders()[0].comm(), "cam-app");
        std::fs::remove_dir_all(root).unwrap();
    }
}
