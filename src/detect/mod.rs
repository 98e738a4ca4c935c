//! Who holds a camera right now: the ground truth read from `/proc/*/fd` ([`scan`]), the device patterns that say
//! what a camera is ([`pattern`], [`DeviceSet`]), the user's process filters ([`Filter`]), and inotify wake-ups that
//! tell the daemon when to look again ([`watch`]). Events are never trusted as state, only as a reason to re-read
//! `/proc` (see `shared/reference/detection.md`, pitfall 6).

pub mod pattern;
pub mod scan;
pub mod watch;

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::sys;

pub use pattern::{Pattern, PatternError};
pub use scan::{Holder, NotDumpable, ScanStats, Scanner};
pub use watch::{Wake, Watcher};

/// Longest process name the kernel keeps in `/proc/PID/comm` (`TASK_COMM_LEN` - 1).
pub const COMM_MAX: usize = 15;

/// Which holders the user wants counted, by process name as `/proc/PID/comm` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Holders that never count (virtual-camera producers, IR unlock helpers, ...).
    pub ignore_processes: Vec<String>,
    /// Holders that count only while they stream (their `/proc/PID/maps` maps the device), such as `pipewire`,
    /// which holds cameras while idle but is the only holder for portal apps. `"*"` means every process.
    pub require_streaming_for: Vec<String>,
}

impl Filter {
    /// Whether `comm` is in `ignore_processes`.
    pub fn ignores(&self, comm: &[u8]) -> bool {
        self.ignore_processes.iter().any(|name| comm_is(comm, name))
    }

    /// Whether `comm` must be streaming to count.
    pub fn requires_streaming(&self, comm: &[u8]) -> bool {
        self.require_streaming_for.iter().any(|name| name == "*" || comm_is(comm, name))
    }
}

/// Whether the kernel's `comm` is the process name `name`. The kernel cuts names to [`COMM_MAX`] bytes, so a longer
/// configured name (`gnome-remote-desktop-daemon`) matches its first 15 bytes.
fn comm_is(comm: &[u8], name: &str) -> bool {
    let name = name.as_bytes();
    comm == name || (name.len() > COMM_MAX && comm == &name[..COMM_MAX])
}

/// What one holder means for "camera in use".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Counts,
    /// The process is in `ignore_processes`.
    Ignored,
    /// The process is in `require_streaming_for` and does not map the device.
    NotStreaming,
    /// The node is the metadata node of a UVC camera (sysfs `index` is not 0): it carries no video.
    MetadataNode,
}

impl Verdict {
    /// Why, in the words the `scan` command prints.
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Counts => "counted",
            Verdict::Ignored => "ignored (ignore-processes)",
            Verdict::NotStreaming => "not streaming (require-streaming-for)",
            Verdict::MetadataNode => "UVC metadata node",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Where sysfs is mounted unless a test says otherwise.
pub const DEFAULT_SYSFS_ROOT: &str = "/sys";

/// The set of device nodes that count as cameras: link targets matching a pattern, plus the nodes that symbolic
/// links matching a pattern point to (`/dev/v4l/by-id/*` names link to `/dev/videoN`, and `/proc` shows the
/// latter). Symbolic links are resolved when the set is built and on [`DeviceSet::refresh`], which the daemon calls
/// when devices come and go.
#[derive(Clone, Debug)]
pub struct DeviceSet {
    patterns: Vec<Pattern>,
    /// Canonical paths of existing nodes reached through a pattern by way of a symbolic link.
    resolved: Vec<Vec<u8>>,
    sysfs_root: CString,
}

/// What the kernel appends to the link target of an open file whose name was removed. A camera that was unplugged
/// while an app held it is gone; its stale descriptor is not a meeting.
const DELETED_SUFFIX: &[u8] = b" (deleted)";

impl DeviceSet {
    pub fn new(patterns: Vec<Pattern>) -> DeviceSet {
        DeviceSet::with_sysfs_root(patterns, Path::new(DEFAULT_SYSFS_ROOT))
    }

    /// Like [`DeviceSet::new`], reading `class/video4linux/*/index` under `sysfs_root` instead of `/sys`.
    pub fn with_sysfs_root(patterns: Vec<Pattern>, sysfs_root: &Path) -> DeviceSet {
        // A root with a NUL cannot be opened; an empty one makes every lookup fail, so nothing is a metadata node.
        let sysfs_root = CString::new(sysfs_root.as_os_str().as_bytes()).unwrap_or_default();
        let mut set = DeviceSet { patterns, resolved: Vec::new(), sysfs_root };
        set.refresh();
        set
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Re-resolves the symbolic links the patterns lead to.
    pub fn refresh(&mut self) {
        self.resolved.clear();
        for pattern in &self.patterns {
            for path in pattern.expand() {
                let Ok(canonical) = std::fs::canonicalize(&path) else { continue };
                let bytes = canonical.as_os_str().as_bytes();
                if canonical != path && !self.resolved.iter().any(|r| r == bytes) {
                    log::debug!("device pattern {pattern}: {} is {}", path.display(), canonical.display());
                    self.resolved.push(bytes.to_vec());
                }
            }
        }
    }

    /// How many distinct device nodes the patterns match now (a node reached by several names counts once),
    /// for the start line. Allocates; not for the scan path.
    pub fn node_count(&self) -> usize {
        let mut nodes: Vec<std::path::PathBuf> = Vec::new();
        for path in self.patterns.iter().flat_map(Pattern::expand) {
            let node = std::fs::canonicalize(&path).unwrap_or(path);
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
        nodes.len()
    }

    /// Canonical nodes found behind symbolic links at the last refresh.
    pub fn resolved(&self) -> impl Iterator<Item = &[u8]> {
        self.resolved.iter().map(Vec::as_slice)
    }

    /// Whether a `/proc/PID/fd` link target is one of the cameras. Allocation-free; anything that is not an
    /// absolute path (`socket:[..]`, `anon_inode:..`) or is a removed file never matches.
    pub fn matches(&self, target: &[u8]) -> bool {
        if target.first() != Some(&b'/') || target.ends_with(DELETED_SUFFIX) {
            return false;
        }
        self.patterns.iter().any(|p| p.matches(target)) || self.resolved.iter().any(|r| r == target)
    }

    /// Whether `node` (a matched `/dev/videoN`) is a UVC metadata node: its sysfs `index` is not 0. Names that
    /// are not `videoN`, and nodes without a readable sysfs entry (a test file, a node in a container), are not.
    /// Allocation-free.
    pub fn is_metadata_node(&self, node: &[u8]) -> bool {
        let name = node.rsplit(|&b| b == b'/').next().unwrap_or(node);
        let Some(number) = name.strip_prefix(b"video") else { return false };
        if number.is_empty() || !number.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let mut path = sys::StackPath::<512>::new();
        path.push(self.sysfs_root.as_bytes()).push(b"/class/video4linux/").push(name).push(b"/index");
        let Some(path) = path.as_cstr() else { return false };
        let Ok(fd) = sys::open_file_at(None, path) else { return false };
        let mut buf = [0u8; 16];
        let Ok(n) = sys::read_full(std::os::fd::AsFd::as_fd(&fd), &mut buf) else { return false };
        let index = buf[..n].trim_ascii();
        !index.is_empty() && index != b"0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> DeviceSet {
        DeviceSet::new(patterns.iter().map(|p| Pattern::new(p).unwrap()).collect())
    }

    #[test]
    fn matches_targets_not_other_links() {
        let s = set(&["/dev/video*"]);
        let cases: &[(&[u8], bool)] = &[
            (b"/dev/video0", true),
            (b"/dev/video0 (deleted)", false),
            (b"socket:[1234]", false),
            (b"anon_inode:[eventfd]", false),
            (b"/dev/null", false),
            (b"", false),
        ];
        for &(target, want) in cases {
            assert_eq!(s.matches(target), want, "{:?}", String::from_utf8_lossy(target));
        }
    }

    #[test]
    fn filter_names_table() {
        let f = Filter {
            ignore_processes: vec!["obs".into(), "gnome-remote-desktop-daemon".into()],
            require_streaming_for: vec!["pipewire".into()],
        };
        assert!(f.ignores(b"obs"));
        assert!(!f.ignores(b"obs-ffmpeg"));
        assert!(!f.ignores(b"ob"));
        assert!(f.ignores(b"gnome-remote-de"), "comm keeps 15 bytes of long names");
        assert!(f.requires_streaming(b"pipewire"));
        assert!(!f.requires_streaming(b"firefox"));
        let all = Filter { require_streaming_for: vec!["*".into()], ..Filter::default() };
        assert!(all.requires_streaming(b"firefox"));
    }

    #[test]
    fn metadata_nodes_from_sysfs_index() {
        let root = std::env::temp_dir().join(format!("mmss-sysfs-{}", std::process::id()));
        for (node, index) in [("video0", "0\n"), ("video1", "1\n")] {
            let dir = root.join("class/video4linux").join(node);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("index"), index).unwrap();
        }
        let s = DeviceSet::with_sysfs_root(vec![Pattern::new("/dev/video*").unwrap()], &root);
        assert!(!s.is_metadata_node(b"/dev/video0"));
        assert!(s.is_metadata_node(b"/dev/video1"));
        assert!(!s.is_metadata_node(b"/dev/video2"), "no sysfs entry");
        assert!(!s.is_metadata_node(b"/dev/videoX"));
        assert!(!s.is_metadata_node(b"/dev/my-cam"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
