//! Wake-ups from inotify: a camera node was opened or closed, or cameras came or went. Events are only a reason for
//! the daemon to look at `/proc` again; they are never counted into state, because counts drift (events lost before
//! the watches exist, watches rebuilt, one close per open file description rather than per process).
//!
//! A node the daemon may not watch yet (a replugged camera is created 0600 root and opened up by udev a moment
//! later) is kept in a list of failed watches and tried again when its directory reports an attribute change of a
//! matching name (`IN_ATTRIB`: chmod, chown, ACL) and at every full scan.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::pattern::{Pattern, component_matches, expand_component};
use crate::sys;

/// Events on a camera node itself.
const NODE_MASK: u32 = sys::IN_OPEN | sys::IN_CLOSE_WRITE | sys::IN_CLOSE_NOWRITE;
/// Events on a directory that mean cameras appeared or vanished.
const TOPOLOGY_MASK: u32 = sys::IN_CREATE | sys::IN_DELETE | sys::IN_MOVED_FROM | sys::IN_MOVED_TO;
/// Events on a directory where cameras appear and vanish: the topology, and attribute changes of its children
/// (a chmod or an ACL change of a node shows up on its directory too), which may make a failed watch possible.
const DIR_MASK: u32 = TOPOLOGY_MASK | sys::IN_ATTRIB;

/// What happened since the last read, folded into three flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wake {
    /// A watched node was opened.
    pub opened: bool,
    /// A watched node was closed.
    pub closed: bool,
    /// Nodes matching the patterns may have appeared or vanished, or events were lost: refresh the device set,
    /// [`Watcher::rewatch`], and do a full scan.
    pub topology: bool,
    /// A node whose watch failed had its permissions changed: [`Watcher::retry_failed`].
    pub retry: bool,
}

impl Wake {
    pub(crate) fn any(&self) -> bool {
        self.opened || self.closed || self.topology || self.retry
    }
}

/// One inotify watch: the same inode can be a camera node and a directory to watch for new names.
#[derive(Debug)]
struct Watch {
    wd: i32,
    mask: u32,
    /// Names whose creation, removal or renaming inside this directory is a topology change.
    child_globs: Vec<Vec<u8>>,
}

/// A watch the kernel refused because we may not read the path yet.
#[derive(Debug)]
struct Failed {
    path: CString,
    mask: u32,
    child_globs: Vec<Vec<u8>>,
}

/// Watches the nodes matching the device patterns and the directories they live in.
pub struct Watcher {
    inotify: OwnedFd,
    /// The live watches. A watch we remove ourselves leaves this list at once, so the `IN_IGNORED` the kernel then
    /// queues for it finds nothing and is not taken for a topology change (which would make the daemon rewatch
    /// again, forever).
    watches: Vec<Watch>,
    /// Paths whose watch was refused (permission denied), tried again by [`Watcher::retry_failed`]; emptied by
    /// [`Watcher::rewatch`], which tries everything afresh.
    failed: Vec<Failed>,
    buf: Box<[u8]>,
}

/// Room for many events per read (each is 16 bytes plus a padded name).
const EVENT_BUF: usize = 16 * 1024;

impl Watcher {
    pub fn new(patterns: &[Pattern]) -> io::Result<Watcher> {
        let inotify =
            sys::inotify_init().map_err(|e| io::Error::new(e.kind(), format!("cannot create inotify: {e}")))?;
        let mut watcher =
            Watcher { inotify, watches: Vec::new(), failed: Vec::new(), buf: vec![0; EVENT_BUF].into_boxed_slice() };
        watcher.rewatch(patterns)?;
        Ok(watcher)
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }

    /// How many inodes are watched (nodes and directories; a node reached by several names counts once).
    pub fn watched(&self) -> usize {
        self.watches.len()
    }

    /// How many paths could not be watched for lack of permission (waiting for [`Watcher::retry_failed`]).
    pub fn failed(&self) -> usize {
        self.failed.len()
    }

    /// Tries every refused watch again; returns how many are in place now. Each one that is logs one info line.
    /// Allocation-free unless one succeeds (room for it is reserved when it fails), so that attribute events on a
    /// busy `/dev` cost no heap while a node stays unreadable.
    pub fn retry_failed(&mut self) -> usize {
        let mut watched = 0;
        let mut i = 0;
        while i < self.failed.len() {
            let Ok(wd) = sys::inotify_add_watch(self.inotify.as_fd(), &self.failed[i].path, self.failed[i].mask) else {
                i += 1;
                continue;
            };
            let failed = self.failed.swap_remove(i);
            log::info!("watching {} again", String::from_utf8_lossy(failed.path.as_bytes()));
            match self.watches.iter_mut().find(|w| w.wd == wd) {
                // The inode is watched under another name already; the kernel just replaced its mask.
                Some(w) => {
                    w.child_globs.extend(failed.child_globs);
                    w.mask |= failed.mask;
                    let _ = sys::inotify_add_watch(self.inotify.as_fd(), &failed.path, w.mask);
                }
                None => self.watches.push(Watch { wd, mask: failed.mask, child_globs: failed.child_globs }),
            }
            watched += 1;
        }
        watched
    }

    /// Re-expands the patterns and brings the watches in line: new nodes and directories are added, those no
    /// longer matched removed. Reports the first watch the kernel refused for a reason other than the path being
    /// gone or unreadable (e.g. the `max_user_watches` limit); all the others are in place even then.
    pub fn rewatch(&mut self, patterns: &[Pattern]) -> io::Result<()> {
        let mut first_error = None;
        let mut next: Vec<Watch> = Vec::new();
        self.failed.clear();
        for (path, mask, child_globs) in wanted_watches(patterns) {
            let Ok(cpath) = CString::new(path.as_os_str().as_bytes()) else { continue };
            let wd = match sys::inotify_add_watch(self.inotify.as_fd(), &cpath, mask) {
                Ok(wd) => wd,
                Err(e) if sys::is_denied(&e) => {
                    // Typically a node just plugged in, before udev opens it up: its directory's IN_ATTRIB, or
                    // the next full scan, says when to try again.
                    log::debug!("not watching {} yet: {e}", path.display());
                    self.failed.push(Failed { path: cpath, mask, child_globs });
                    continue;
                }
                Err(e) if sys::is_gone(&e) => {
                    log::debug!("not watching {}: {e}", path.display());
                    continue;
                }
                Err(e) => {
                    // Keep going: the other watches still work, and the caller learns about this one.
                    let e = io::Error::new(e.kind(), format!("cannot watch {}: {e}", path.display()));
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            log::debug!("watching {} (wd {wd}, mask {mask:#x})", path.display());
            match next.iter_mut().find(|w| w.wd == wd) {
                // A second path to one inode that stat did not see as one (it changed in between): the kernel just
                // replaced the mask, so give it both roles' events again.
                Some(w) => {
                    w.child_globs.extend(child_globs);
                    w.mask |= mask;
                    if let Err(e) = sys::inotify_add_watch(self.inotify.as_fd(), &cpath, w.mask) {
                        log::debug!("cannot widen the watch on {}: {e}", path.display());
                    }
                }
                None => next.push(Watch { wd, mask, child_globs }),
            }
        }
        for old in &self.watches {
            if !next.iter().any(|w| w.wd == old.wd) {
                log::debug!("unwatching wd {}", old.wd);
                // An error means the kernel already dropped it (its IN_IGNORED is queued): nothing left to do.
                let _ = sys::inotify_rm_watch(self.inotify.as_fd(), old.wd);
            }
        }
        // A failed watch that succeeds later joins the list without growing it.
        next.reserve(self.failed.len());
        self.watches = next;
        first_error.map_or(Ok(()), Err)
    }

    /// Drains every pending event without blocking.
    pub fn read_events(&mut self) -> io::Result<Wake> {
        let mut wake = Wake::default();
        loop {
            let filled = match sys::read(self.inotify.as_fd(), &mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(io::Error::new(e.kind(), format!("cannot read inotify events: {e}"))),
            };
            if filled == 0 {
                break;
            }
            for event in sys::inotify_events(&self.buf[..filled]) {
                classify(&mut self.watches, !self.failed.is_empty(), &event, &mut wake);
            }
        }
        Ok(wake)
    }
}

fn classify(watches: &mut Vec<Watch>, some_failed: bool, event: &sys::InotifyEvent<'_>, wake: &mut Wake) {
    if event.mask & sys::IN_Q_OVERFLOW != 0 {
        log::debug!("inotify queue overflowed");
        wake.topology = true;
        return;
    }
    if event.mask & sys::IN_IGNORED != 0 {
        if let Some(i) = watches.iter().position(|w| w.wd == event.wd) {
            log::debug!("watch {} went away", event.wd);
            watches.swap_remove(i);
            wake.topology = true;
        }
        return;
    }
    let Some(watch) = watches.iter().find(|w| w.wd == event.wd) else { return };
    if event.mask & sys::IN_OPEN != 0 {
        wake.opened = true;
    }
    if event.mask & (sys::IN_CLOSE_WRITE | sys::IN_CLOSE_NOWRITE) != 0 {
        wake.closed = true;
    }
    if event.mask & TOPOLOGY_MASK != 0 && watch.child_globs.iter().any(|g| component_matches(g, event.name)) {
        log::debug!("{:?} appeared or vanished (mask {:#x})", String::from_utf8_lossy(event.name), event.mask);
        wake.topology = true;
    }
    // Only worth a retry while some watch is missing; otherwise chmods and ACL changes in `/dev` cost nothing.
    if some_failed
        && event.mask & sys::IN_ATTRIB != 0
        && watch.child_globs.iter().any(|g| component_matches(g, event.name))
    {
        wake.retry = true;
    }
}

/// Every path to watch, one per inode, with its mask and (for directories) the child names that matter.
///
/// Nodes: what the patterns match now. Directories: the parents of the patterns' last components; when a parent
/// does not exist yet (`/dev/v4l/by-id` before the first camera), its deepest existing ancestor on the pattern's
/// path is watched for the next missing component instead, so that the creation is noticed.
fn wanted_watches(patterns: &[Pattern]) -> Vec<(PathBuf, u32, Vec<Vec<u8>>)> {
    let mut wanted: Vec<(PathBuf, u32, Vec<Vec<u8>>)> = Vec::new();
    let mut by_inode: HashMap<(u64, u64), usize> = HashMap::new();
    let mut add = |path: PathBuf, mask: u32, glob: Option<&[u8]>| {
        let Ok(meta) = std::fs::metadata(&path) else { return };
        let index = *by_inode.entry((meta.dev(), meta.ino())).or_insert_with(|| {
            wanted.push((path, 0, Vec::new()));
            wanted.len() - 1
        });
        let entry = &mut wanted[index];
        entry.1 |= mask;
        if let Some(glob) = glob {
            if !entry.2.iter().any(|g| g == glob) {
                entry.2.push(glob.to_vec());
            }
        }
    };
    for pattern in patterns {
        for node in pattern.expand() {
            add(node, NODE_MASK, None);
        }
        let components: Vec<&[u8]> = pattern.components().collect();
        let Some((last, parents)) = components.split_last() else { continue };
        let mut level = vec![PathBuf::from("/")];
        let mut missing = None;
        for (i, component) in parents.iter().enumerate() {
            let next = expand_component(&level, component);
            let next: Vec<PathBuf> = next.into_iter().filter(|p| p.is_dir()).collect();
            if next.is_empty() {
                missing = Some(i);
                break;
            }
            level = next;
        }
        let glob = match missing {
            Some(i) => {
                log::debug!(
                    "device pattern {pattern}: {} does not exist yet, watching {} for it",
                    Path::new(std::ffi::OsStr::from_bytes(parents[i])).display(),
                    level.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                );
                parents[i]
            }
            None => last,
        };
        for dir in level {
            add(dir, DIR_MASK, Some(glob));
        }
    }
    wanted
}
