//! Who holds a camera or a microphone right now: the ground truth read from `/proc/*/fd` ([`Scanner`]), the device
//! patterns that say what a camera or a microphone is ([`Pattern`], [`DeviceSet`]), the user's process filters
//! ([`Filter`]), and inotify wake-ups that tell the daemon when to look again ([`Watcher`]). Events are never trusted
//! as state, only as a reason to re-read `/proc`: inotify coalesces and drops events (`IN_Q_OVERFLOW`), says nothing
//! of processes that inherit or pass a descriptor, and nothing at all when a stream starts on an open node.

pub(crate) mod pattern;
pub(crate) mod scan;
pub(crate) mod watch;

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use pattern::component_matches;

use crate::sys;

pub use pattern::{Pattern, PatternError};
pub use scan::{Holder, ScanStats, Scanner};
pub use watch::{Wake, Watcher};

/// Longest process name the kernel keeps in `/proc/PID/comm` (`TASK_COMM_LEN` - 1).
pub(crate) const COMM_MAX: usize = 15;

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
    pub(crate) fn ignores(&self, comm: &[u8]) -> bool {
        self.ignore_processes.iter().any(|name| comm_is(comm, name))
    }

    /// Whether `comm` must be streaming to count.
    pub(crate) fn requires_streaming(&self, comm: &[u8]) -> bool {
        self.require_streaming_for.iter().any(|name| name == "*" || comm_is(comm, name))
    }
}

/// Whether the kernel's `comm` is the process name `name`. The kernel cuts names to [`COMM_MAX`] bytes, so a longer
/// configured name (`gnome-remote-desktop-daemon`) matches its first 15 bytes.
fn comm_is(comm: &[u8], name: &str) -> bool {
    let name = name.as_bytes();
    comm == name || (name.len() > COMM_MAX && comm == &name[..COMM_MAX])
}

/// The two kinds of device that make a meeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceClass {
    Camera,
    Microphone,
}

impl DeviceClass {
    /// `camera` or `microphone`, as log lines and `scan` say it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DeviceClass::Camera => "camera",
            DeviceClass::Microphone => "microphone",
        }
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one holder means for "camera (or microphone) in use".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Counts,
    /// The process is in `ignore_processes`.
    Ignored,
    /// The process is in `require_streaming_for` and does not map the device.
    NotStreaming,
    /// The node is the metadata node of a UVC camera (sysfs `index` is not 0): it carries no video.
    MetadataNode,
    /// A microphone pattern matched a node that records nothing: a playback PCM node (`pcmC0D0p`), a control node,
    /// a timer. Only capture PCM nodes (`pcmC0D0c`) are microphones.
    NotCapture,
}

impl Verdict {
    /// Why, in the words the `scan` command prints.
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Counts => "counted",
            Verdict::Ignored => "ignored (ignore-processes)",
            Verdict::NotStreaming => "not streaming (require-streaming-for)",
            Verdict::MetadataNode => "UVC metadata node",
            Verdict::NotCapture => "not a capture node (playback, control or timer)",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Whether `node` is an ALSA capture PCM node: its name is `pcmC<card>D<device>c` (`p` is playback; `controlC0`,
/// `timer`, `seq` and the rest are not PCM nodes). Only these are microphones. Allocation-free.
pub(crate) fn is_capture_node(node: &[u8]) -> bool {
    let name = node.rsplit(|&b| b == b'/').next().unwrap_or(node);
    let digits = |s: &[u8]| -> Option<usize> {
        let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
        (n > 0).then_some(n)
    };
    let Some(rest) = name.strip_prefix(b"pcmC") else { return false };
    let Some(card) = digits(rest) else { return false };
    let Some(rest) = rest[card..].strip_prefix(b"D") else { return false };
    let Some(device) = digits(rest) else { return false };
    &rest[device..] == b"c"
}

/// Where sysfs is mounted unless a test says otherwise.
pub(crate) const DEFAULT_SYSFS_ROOT: &str = "/sys";

/// The set of device nodes that count as cameras or microphones: link targets matching a pattern, plus the nodes
/// that symbolic links matching a pattern point to (`/dev/v4l/by-id/*` names link to `/dev/videoN`, and `/proc`
/// shows the latter). Symbolic links are resolved when the set is built and on [`DeviceSet::refresh`], which the
/// daemon calls when devices come and go.
#[derive(Clone, Debug)]
pub struct DeviceSet {
    patterns: Vec<Pattern>,
    /// Microphone patterns; empty when microphones are not watched (then they cost nothing).
    microphones: Vec<Pattern>,
    /// Canonical paths of existing nodes reached through a pattern by way of a symbolic link.
    resolved: Vec<(Vec<u8>, DeviceClass)>,
    /// Device numbers of the character devices the patterns match now, for holders that reach one of them through
    /// another root (a chroot or container with `/dev` bind-mounted shows `/somewhere/dev/video0`).
    numbers: Vec<(u64, DeviceClass)>,
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
        let mut set =
            DeviceSet { patterns, microphones: Vec::new(), resolved: Vec::new(), numbers: Vec::new(), sysfs_root };
        set.refresh();
        set
    }

    /// The same set, with `microphones` as the microphone patterns.
    pub fn with_microphones(mut self, microphones: Vec<Pattern>) -> DeviceSet {
        self.microphones = microphones;
        self.refresh();
        self
    }

    /// The microphone patterns.
    pub(crate) fn microphone_patterns(&self) -> &[Pattern] {
        &self.microphones
    }

    /// Every pattern to watch with inotify, cameras and microphones.
    pub(crate) fn watch_patterns(&self) -> Vec<Pattern> {
        self.patterns.iter().chain(&self.microphones).cloned().collect()
    }

    fn classes(&self) -> impl Iterator<Item = (&Pattern, DeviceClass)> {
        let cameras = self.patterns.iter().map(|p| (p, DeviceClass::Camera));
        cameras.chain(self.microphones.iter().map(|p| (p, DeviceClass::Microphone)))
    }

    /// Re-resolves the symbolic links the patterns lead to.
    pub fn refresh(&mut self) {
        let mut resolved: Vec<(Vec<u8>, DeviceClass)> = Vec::new();
        let mut numbers: Vec<(u64, DeviceClass)> = Vec::new();
        for (pattern, class) in self.classes() {
            for path in pattern.expand() {
                if let Ok(meta) = std::fs::metadata(&path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_char_device() && !numbers.iter().any(|&(n, _)| n == meta.rdev()) {
                        numbers.push((meta.rdev(), class));
                    }
                }
                let Ok(canonical) = std::fs::canonicalize(&path) else { continue };
                let bytes = canonical.as_os_str().as_bytes();
                if canonical != path && !resolved.iter().any(|(r, _)| r == bytes) {
                    log::debug!("device pattern {pattern}: {} is {}", path.display(), canonical.display());
                    resolved.push((bytes.to_vec(), class));
                }
            }
        }
        self.resolved = resolved;
        self.numbers = numbers;
    }

    /// For a link target that matches no pattern: whether its last component is a name some pattern's last
    /// component matches (`/srv/chroot/dev/video0` for `/dev/video*`), the only targets worth the `stat` that
    /// [`DeviceSet::class_of_number`] needs. Allocation-free.
    pub(crate) fn names_a_device(&self, target: &[u8]) -> bool {
        if self.numbers.is_empty() || target.first() != Some(&b'/') || target.ends_with(DELETED_SUFFIX) {
            return false;
        }
        let name = target.rsplit(|&b| b == b'/').next().unwrap_or(target);
        self.classes().any(|(p, _)| p.components().last().is_some_and(|glob| component_matches(glob, name)))
    }

    /// Which kind of device the character device number `rdev` is, if a pattern matches a node with that number.
    pub(crate) fn class_of_number(&self, rdev: u64) -> Option<DeviceClass> {
        self.numbers.iter().find(|&&(n, _)| n == rdev).map(|&(_, class)| class)
    }

    /// How many distinct device nodes the patterns match now (a node reached by several names counts once; of the
    /// microphone patterns' nodes, only capture nodes), for the start line. Allocates; not for the scan path.
    pub(crate) fn node_count(&self) -> usize {
        let mut nodes: Vec<std::path::PathBuf> = Vec::new();
        for (pattern, class) in self.classes() {
            for path in pattern.expand() {
                let node = std::fs::canonicalize(&path).unwrap_or(path);
                let counts = class == DeviceClass::Camera || is_capture_node(node.as_os_str().as_bytes());
                if counts && !nodes.contains(&node) {
                    nodes.push(node);
                }
            }
        }
        nodes.len()
    }

    /// Canonical nodes found behind symbolic links at the last refresh.
    pub fn resolved(&self) -> impl Iterator<Item = &[u8]> {
        self.resolved.iter().map(|(r, _)| r.as_slice())
    }

    /// Whether a `/proc/PID/fd` link target is one of the cameras or microphones. Allocation-free.
    pub fn matches(&self, target: &[u8]) -> bool {
        self.class_of(target).is_some()
    }

    /// Which kind of device a `/proc/PID/fd` link target is, if it is one; a node matched as a camera is a camera.
    /// Allocation-free; anything that is not an absolute path (`socket:[..]`, `anon_inode:..`) or is a removed
    /// file never matches.
    pub(crate) fn class_of(&self, target: &[u8]) -> Option<DeviceClass> {
        if target.first() != Some(&b'/') || target.ends_with(DELETED_SUFFIX) {
            return None;
        }
        if let Some((_, class)) = self.classes().find(|(p, _)| p.matches(target)) {
            return Some(class);
        }
        self.resolved.iter().find(|(r, _)| r == target).map(|&(_, class)| class)
    }

    /// Whether `node` (a matched `/dev/videoN`) is a UVC metadata node: its sysfs `index` is not 0. Names that
    /// are not `videoN`, and nodes without a readable sysfs entry (a test file, a node in a container), are not.
    /// Allocation-free.
    pub(crate) fn is_metadata_node(&self, node: &[u8]) -> bool {
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
    fn capture_nodes_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"/dev/snd/pcmC0D0c", true),
            (b"/dev/snd/pcmC12D3c", true),
            (b"pcmC0D0c", true),
            (b"/dev/snd/pcmC0D0p", false),
            (b"/dev/snd/controlC0", false),
            (b"/dev/snd/timer", false),
            (b"/dev/snd/seq", false),
            (b"/dev/snd/hwC0D0", false),
            (b"/dev/snd/pcmC0D0cc", false),
            (b"/dev/snd/pcmCD0c", false),
            (b"/dev/snd/pcmC0Dc", false),
            (b"/dev/snd/pcmC0D0c/x", false),
            (b"/dev/snd/pcmc", false),
        ];
        for &(node, want) in cases {
            assert_eq!(is_capture_node(node), want, "{:?}", String::from_utf8_lossy(node));
        }
    }

    #[test]
    fn microphone_patterns_classify_targets() {
        let s = set(&["/dev/video*"]).with_microphones(vec![Pattern::new("/dev/snd/pcmC*").unwrap()]);
        assert_eq!(s.class_of(b"/dev/video0"), Some(DeviceClass::Camera));
        assert_eq!(s.class_of(b"/dev/snd/pcmC0D0c"), Some(DeviceClass::Microphone));
        assert_eq!(s.class_of(b"/dev/snd/pcmC0D0p"), Some(DeviceClass::Microphone), "judged later: not capture");
        assert_eq!(s.class_of(b"/dev/snd/controlC0"), None);
        assert_eq!(s.class_of(b"/dev/snd/pcmC0D0c (deleted)"), None);
        assert_eq!(set(&["/dev/video*"]).class_of(b"/dev/snd/pcmC0D0c"), None, "off by default");
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
