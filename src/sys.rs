//! The crate's only door to raw Linux system calls, so that every `unsafe` block lives in one short file that can be
//! audited at once. Everything here is a thin, safe wrapper: callers hand in their own buffers, and nothing in this
//! module allocates, which is what lets a full `/proc` scan run without touching the heap.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub(crate) use libc::{
    IN_ATTRIB, IN_CLOSE_NOWRITE, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_IGNORED, IN_MOVED_FROM, IN_MOVED_TO, IN_OPEN,
    IN_Q_OVERFLOW,
};

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// Opens a directory for reading its entries. `path` is resolved relative to `dir` unless it is absolute; `None`
/// means the current directory.
pub(crate) fn open_dir_at(dir: Option<BorrowedFd<'_>>, path: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, path, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
}

/// Opens a file read-only (for `/proc/PID/comm`, `/proc/PID/maps`, sysfs attributes), relative to `dir` like
/// [`open_dir_at`].
pub(crate) fn open_file_at(dir: Option<BorrowedFd<'_>>, path: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, path, libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY)
}

fn open_at(dir: Option<BorrowedFd<'_>>, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let dir_fd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    loop {
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call, and `dir_fd` is either
        // AT_FDCWD or a descriptor kept open by the borrow.
        let fd = unsafe { libc::openat(dir_fd, path.as_ptr(), flags) };
        if fd >= 0 {
            // SAFETY: openat just returned this descriptor to us and nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads the next batch of entries of the directory `dir` into `buf` with `getdents64`, returning how many bytes
/// were filled; 0 means the end of the directory. Walk the bytes with [`dirents`]. `buf` must hold at least one
/// entry (a few hundred bytes), or the kernel answers `EINVAL`.
pub(crate) fn getdents(dir: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which we borrow mutably for the call;
        // `dir` stays open for the call.
        let ret = unsafe {
            libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr().cast::<libc::c_void>(), buf.len())
        };
        match check(ret) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Moves a directory descriptor back to its first entry, so a long-lived descriptor can be listed again.
pub(crate) fn rewind_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: lseek only takes integers; `dir` stays open for the call.
    let ret = unsafe { libc::lseek(dir.as_raw_fd(), 0, libc::SEEK_SET) };
    check(ret as libc::c_long).map(|_| ())
}

/// One entry of a `getdents64` buffer, borrowed from it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dirent<'a> {
    name: &'a CStr,
}

impl<'a> Dirent<'a> {
    /// The entry's name, without its NUL.
    pub(crate) fn name(&self) -> &'a [u8] {
        self.name.to_bytes()
    }

    /// The entry's name as the kernel wrote it, NUL included, ready to pass back to `*at` calls without a copy.
    pub(crate) fn name_cstr(&self) -> &'a CStr {
        self.name
    }
}

/// Iterates the `linux_dirent64` records of the first `len` bytes that [`getdents`] filled.
pub(crate) fn dirents(filled: &[u8]) -> Dirents<'_> {
    Dirents { rest: filled }
}

/// Iterator returned by [`dirents`]. Stops at the first malformed record instead of reading past it.
pub(crate) struct Dirents<'a> {
    rest: &'a [u8],
}

/// Offsets inside `struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }`.
const DIRENT_RECLEN: usize = 16;
const DIRENT_NAME: usize = 19;

impl<'a> Iterator for Dirents<'a> {
    type Item = Dirent<'a>;

    fn next(&mut self) -> Option<Dirent<'a>> {
        let header = self.rest.get(..DIRENT_NAME)?;
        let reclen = u16::from_ne_bytes([header[DIRENT_RECLEN], header[DIRENT_RECLEN + 1]]) as usize;
        let record = self.rest.get(..reclen).filter(|_| reclen > DIRENT_NAME)?;
        let name = CStr::from_bytes_until_nul(&record[DIRENT_NAME..]).ok()?;
        self.rest = &self.rest[reclen..];
        Some(Dirent { name })
    }
}

/// Reads the target of the symbolic link `name` in `dir` into `buf` and returns its length. A result equal to
/// `buf.len()` means the target may have been cut short: the caller must treat it as unknown.
pub(crate) fn readlink_at(dir: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `name` is NUL-terminated, the kernel writes at most `buf.len()` bytes into the mutably borrowed `buf`,
    // and `dir` stays open for the call.
    let ret =
        unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast::<libc::c_char>(), buf.len()) };
    check(ret as libc::c_long).map(|n| n as usize)
}

/// The device number of the character device `name` in `dir` refers to (following a symbolic link, such as a
/// `/proc/PID/fd/N` entry), or `None` when it is something else.
pub(crate) fn char_device_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<u64>> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated, `st` is writable memory of the right size for the kernel to fill, and `dir`
    // stays open for the call.
    let ret = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), 0) };
    check(ret as libc::c_long)?;
    // SAFETY: fstatat succeeded, so it filled in the whole struct.
    let st = unsafe { st.assume_init() };
    Ok((st.st_mode & libc::S_IFMT == libc::S_IFCHR).then_some(st.st_rdev))
}

/// The user owning `name` in `dir` (not following a symbolic link). For `/proc/PID` that is the process's
/// effective uid.
pub(crate) fn owner_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<u32> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated, `st` is writable memory of the right size for the kernel to fill, and `dir`
    // stays open for the call.
    let ret = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    check(ret as libc::c_long)?;
    // SAFETY: fstatat succeeded, so it filled in the whole struct.
    let st = unsafe { st.assume_init() };
    Ok(st.st_uid)
}

/// Reads from `fd` into `buf`, retrying on `EINTR`. Returns 0 at end of file. A non-blocking descriptor with nothing
/// to read gives an error of kind [`io::ErrorKind::WouldBlock`].
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into the mutably borrowed `buf`; `fd` stays open.
        let ret = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast::<libc::c_void>(), buf.len()) };
        match check(ret as libc::c_long) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads from `fd` until `buf` is full or the end of the file; returns how many bytes were read. Small procfs and
/// sysfs files arrive in one read, but nothing promises it.
pub(crate) fn read_full(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read(fd, &mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Creates a non-blocking, close-on-exec inotify instance.
pub(crate) fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: inotify_init1 only takes flags.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    check(fd as libc::c_long)?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds (or replaces the mask of) a watch on `path`, following symbolic links; returns the watch descriptor, which
/// is the same for every path that leads to the same inode.
pub(crate) fn inotify_add_watch(inotify: BorrowedFd<'_>, path: &CStr, mask: u32) -> io::Result<i32> {
    // SAFETY: `path` is NUL-terminated for the duration of the call; `inotify` stays open.
    let wd = unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), mask) };
    check(wd as libc::c_long).map(|wd| wd as i32)
}

/// Removes a watch. The kernel then queues an `IN_IGNORED` event for it.
pub(crate) fn inotify_rm_watch(inotify: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    // SAFETY: inotify_rm_watch only takes integers; `inotify` stays open.
    let ret = unsafe { libc::inotify_rm_watch(inotify.as_raw_fd(), wd) };
    check(ret as libc::c_long).map(|_| ())
}

/// One event of an inotify read buffer, borrowed from it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InotifyEvent<'a> {
    pub(crate) wd: i32,
    pub(crate) mask: u32,
    /// The name of the entry inside a watched directory, without its NUL padding; empty for events on the watched
    /// inode itself.
    pub(crate) name: &'a [u8],
}

/// Iterates the `struct inotify_event` records of bytes read from an inotify descriptor with [`read`].
pub(crate) fn inotify_events(filled: &[u8]) -> InotifyEvents<'_> {
    InotifyEvents { rest: filled }
}

/// Iterator returned by [`inotify_events`]. Stops at the first malformed record instead of reading past it.
pub(crate) struct InotifyEvents<'a> {
    rest: &'a [u8],
}

/// `struct inotify_event { int wd; uint32_t mask; uint32_t cookie; uint32_t len; char name[]; }`
const INOTIFY_HEADER: usize = 16;

impl<'a> Iterator for InotifyEvents<'a> {
    type Item = InotifyEvent<'a>;

    fn next(&mut self) -> Option<InotifyEvent<'a>> {
        let h = self.rest.get(..INOTIFY_HEADER)?;
        let word = |i: usize| [h[i], h[i + 1], h[i + 2], h[i + 3]];
        let len = u32::from_ne_bytes(word(12)) as usize;
        let padded = self.rest.get(INOTIFY_HEADER..INOTIFY_HEADER + len)?;
        let name_len = padded.iter().position(|&b| b == 0).unwrap_or(len);
        self.rest = &self.rest[INOTIFY_HEADER + len..];
        Some(InotifyEvent {
            wd: i32::from_ne_bytes(word(0)),
            mask: u32::from_ne_bytes(word(4)),
            name: &padded[..name_len],
        })
    }
}

/// Most descriptors [`poll_readable`] watches at once; it builds its `pollfd` array on the stack.
pub(crate) const POLL_MAX_FDS: usize = 16;

/// Waits until at least one of `fds` is readable (or hung up, or in error, so the caller reads and sees why), or
/// until `timeout` passes (`None`: wait forever). On return `ready[i]` says whether `fds[i]` is ready. A signal
/// that interrupts the wait is not an error: it returns with nothing ready, so the caller can look at its flags.
pub fn poll_readable(fds: &[RawFd], ready: &mut [bool], timeout: Option<Duration>) -> io::Result<()> {
    if fds.len() != ready.len() || fds.len() > POLL_MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "poll_readable: bad descriptor count"));
    }
    let mut pollfds = [libc::pollfd { fd: -1, events: 0, revents: 0 }; POLL_MAX_FDS];
    for (slot, &fd) in pollfds.iter_mut().zip(fds) {
        *slot = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    }
    ready.fill(false);
    let timeout_ms = match timeout {
        None => -1,
        // Round up: a timeout of 0.4 ms must not become a busy loop of zero-millisecond polls.
        Some(d) => d.as_nanos().div_ceil(1_000_000).min(libc::c_int::MAX as u128) as libc::c_int,
    };
    // SAFETY: `pollfds` is a live stack array and we pass a count no larger than its length.
    let ret = unsafe { libc::poll(pollfds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(err) };
    }
    for (flag, pfd) in ready.iter_mut().zip(&pollfds[..fds.len()]) {
        if pfd.revents & libc::POLLNVAL != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        *flag = pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    }
    Ok(())
}

/// A NUL-terminated path assembled in a fixed stack buffer, for `*at` calls that must not allocate, such as
/// `"<pid>/fd"` relative to a `/proc` descriptor.
pub(crate) struct StackPath<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Default for StackPath<N> {
    fn default() -> Self {
        StackPath { buf: [0; N], len: 0, overflowed: false }
    }
}

impl<const N: usize> StackPath<N> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends bytes. A NUL byte or running out of room poisons the path: [`StackPath::as_cstr`] then says `None`.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> &mut Self {
        // Keep one byte for the terminating NUL.
        if self.overflowed || bytes.contains(&0) || self.len + bytes.len() >= N {
            self.overflowed = true;
        } else {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        self
    }

    /// Appends a number in decimal.
    pub(crate) fn push_u32(&mut self, mut n: u32) -> &mut Self {
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[start..])
    }

    /// The path with its NUL, or `None` if it did not fit or contained a NUL.
    pub(crate) fn as_cstr(&mut self) -> Option<&CStr> {
        if self.overflowed {
            return None;
        }
        self.buf[self.len] = 0;
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).ok()
    }
}

/// Whether an error means "this process is gone", as opposed to "not allowed" or a real failure.
pub(crate) fn is_gone(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH))
}

/// Whether an error means "not allowed to look".
pub(crate) fn is_denied(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

/// The effective user id of this process, which the kernel compares with a process's ids before letting us read
/// its descriptors.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid takes nothing, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

/// CLOCK_MONOTONIC now, which systemd's `MONOTONIC_USEC=` wants (std's `Instant` does not expose its value).
pub(crate) fn monotonic_now() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A global allocator that forwards to the system allocator and counts the allocations made on threads inside
/// [`CountingAllocator::count`], so tests and benchmarks can prove that a code path does not touch the heap. Install
/// it with `#[global_allocator] static A: CountingAllocator = CountingAllocator;`; without that, counts are 0.
/// It lives here because implementing `GlobalAlloc` takes `unsafe`.
pub struct CountingAllocator;

static COUNTED_ALLOCATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    // `const` and without a destructor: usable from inside the allocator without allocating.
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl CountingAllocator {
    /// Runs `f` and returns its result with the number of allocations (including reallocations) it made on this
    /// thread.
    pub fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
        use std::sync::atomic::Ordering;
        let before = COUNTED_ALLOCATIONS.load(Ordering::Relaxed);
        let was = COUNTING.with(|c| c.replace(true));
        let result = f();
        COUNTING.with(|c| c.set(was));
        (result, COUNTED_ALLOCATIONS.load(Ordering::Relaxed) - before)
    }

    fn note() {
        if COUNTING.with(std::cell::Cell::get) {
            COUNTED_ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the contract; counting only
// touches an atomic and a const thread-local, never the memory handed out.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::note();
        // SAFETY: the caller's guarantees for `layout` are passed on unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::note();
        // SAFETY: the caller's guarantees for `layout` are passed on unchanged.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        Self::note();
        // SAFETY: `ptr` came from this allocator, hence from `System`; the other guarantees are passed on.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, hence from `System`, with this `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn stack_path_builds_pid_paths() {
        let mut p = StackPath::<32>::new();
        assert_eq!(p.push_u32(0).push(b"/fd").as_cstr().unwrap().to_bytes(), b"0/fd");
        let mut p = StackPath::<32>::new();
        assert_eq!(p.push_u32(4294967295).push(b"/comm").as_cstr().unwrap().to_bytes(), b"4294967295/comm");
    }

    #[test]
    fn stack_path_refuses_overflow_and_nul() {
        let mut p = StackPath::<4>::new();
        assert!(p.push(b"abcd").as_cstr().is_none(), "4 bytes + NUL do not fit in 4");
        assert!(p.push(b"a").as_cstr().is_none(), "an overflowed path stays refused");
        assert_eq!(StackPath::<4>::new().push(b"abc").as_cstr().unwrap().to_bytes(), b"abc");
        assert!(StackPath::<4>::new().push(b"a\0").as_cstr().is_none());
    }

    #[test]
    fn getdents_lists_a_directory_and_rewinds() {
        let dir = std::env::temp_dir().join(format!("mmss-sys-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let fd = open_dir_at(None, &path).unwrap();
        let mut buf = [0u8; 1024];
        let mut names = Vec::new();
        for _round in 0..2 {
            names.clear();
            loop {
                let n = getdents(fd.as_fd(), &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                for e in dirents(&buf[..n]) {
                    names.push(e.name().to_vec());
                }
            }
            names.sort();
            assert_eq!(names, [b".".to_vec(), b"..".to_vec(), b"file".to_vec(), b"sub".to_vec()]);
            rewind_dir(fd.as_fd()).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn poll_reports_timeout_and_readiness() {
        let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut ready = [true];
        poll_readable(&[reader.as_raw_fd()], &mut ready, Some(Duration::from_millis(1))).unwrap();
        assert_eq!(ready, [false]);
        std::io::Write::write_all(&mut writer, b"x").unwrap();
        poll_readable(&[reader.as_raw_fd()], &mut ready, None).unwrap();
        assert_eq!(ready, [true]);
    }
}
