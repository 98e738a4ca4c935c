//! Device patterns such as `/dev/video*` or `/dev/v4l/by-id/*`: the user says which nodes are cameras, and the scan
//! compares every `/proc` link target against them, so matching works on raw bytes and never allocates.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An absolute path in which `*` stands for any run of characters other than `/`, in any component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
}

/// Why a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternError {
    Empty,
    NotAbsolute {
        pattern: String,
    },
    ContainsNul {
        pattern: String,
    },
    /// A `.`/`..` or empty component, or a trailing `/`: the kernel reports canonical paths, so such a pattern
    /// could never match.
    NotNormalized {
        pattern: String,
    },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Empty => write!(f, "device pattern is empty"),
            PatternError::NotAbsolute { pattern } => {
                write!(f, "device pattern {pattern:?} is not an absolute path (it must start with /)")
            }
            PatternError::ContainsNul { pattern } => write!(f, "device pattern {pattern:?} contains a NUL byte"),
            PatternError::NotNormalized { pattern } => write!(
                f,
                "device pattern {pattern:?} is not a normalized path (no `.`, `..`, `//` or trailing /; the kernel \
                 reports canonical paths)"
            ),
        }
    }
}

impl std::error::Error for PatternError {}

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern, PatternError> {
        let owned = || text.to_owned();
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if !text.starts_with('/') {
            return Err(PatternError::NotAbsolute { pattern: owned() });
        }
        if text.contains('\0') {
            return Err(PatternError::ContainsNul { pattern: owned() });
        }
        if text != "/" && text[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(PatternError::NotNormalized { pattern: owned() });
        }
        Ok(Pattern { text: text.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (as the kernel reports it, e.g. a `/proc/PID/fd` link target) matches. `*` never crosses a
    /// `/`, so both sides must have the same number of components.
    pub(crate) fn matches(&self, path: &[u8]) -> bool {
        let mut want = self.text.as_bytes().split(|&b| b == b'/');
        let mut have = path.split(|&b| b == b'/');
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some(w), Some(h)) if component_matches(w, h) => {}
                _ => return false,
            }
        }
    }

    /// The pattern's components after the leading `/`, e.g. `["dev", "video*"]`.
    pub(crate) fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.text.as_bytes()[1..].split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// The paths that exist now and match, found by listing only the directories the pattern leads through.
    /// Symbolic links are followed on the way, and a final component that is a dangling link is left out.
    pub(crate) fn expand(&self) -> Vec<PathBuf> {
        let mut level = vec![PathBuf::from("/")];
        for component in self.components() {
            level = expand_component(&level, component);
            if level.is_empty() {
                break;
            }
        }
        level.retain(|p| p.metadata().is_ok());
        level
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The children of `dirs` whose names match `component`, in a stable order.
pub(crate) fn expand_component(dirs: &[PathBuf], component: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        if !component.contains(&b'*') {
            let child = dir.join(Path::new(std::ffi::OsStr::from_bytes(component)));
            if child.symlink_metadata().is_ok() {
                out.push(child);
            }
            continue;
        }
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let start = out.len();
        out.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|name| component_matches(component, name.as_bytes()))),
        );
        out[start..].sort();
    }
    out
}

/// Glob match of one path component where `*` matches any run of bytes (the caller has already split on `/`).
/// Classic single-backtrack wildcard matching: linear in practice, no recursion, no allocation.
pub(crate) fn component_matches(glob: &[u8], name: &[u8]) -> bool {
    let (mut g, mut n) = (0, 0);
    // Where to resume after the last `*`: the glob index after it and the name index it has swallowed up to.
    let mut resume: Option<(usize, usize)> = None;
    while n < name.len() {
        if g < glob.len() && glob[g] == b'*' {
            g += 1;
            resume = Some((g, n));
        } else if g < glob.len() && glob[g] == name[n] {
            g += 1;
            n += 1;
        } else if let Some((rg, rn)) = resume {
            g = rg;
            n = rn + 1;
            resume = Some((rg, rn + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_table() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("/dev/video*", b"/dev/video0", true),
            ("/dev/video*", b"/dev/video12", true),
            ("/dev/video*", b"/dev/video", true),
            ("/dev/video*", b"/dev/vide", false),
            ("/dev/video*", b"/dev/v4l/video0", false),
            ("/dev/video*", b"/dev/video0/x", false),
            ("/dev/video*", b"/dev/videoX/", false),
            ("/dev/video*", b"dev/video0", false),
            ("/dev/video*", b"", false),
            ("/dev/video0", b"/dev/video0", true),
            ("/dev/video0", b"/dev/video01", false),
            ("/dev/video0", b"/dev/video", false),
            ("/dev/*/by-id/*", b"/dev/v4l/by-id/usb-cam-video-index0", true),
            ("/dev/*/by-id/*", b"/dev/v4l/by-path/x", false),
            ("/dev/v4l/by-id/*-index0", b"/dev/v4l/by-id/usb-Logi-index0", true),
            ("/dev/v4l/by-id/*-index0", b"/dev/v4l/by-id/usb-Logi-index1", false),
            ("/dev/*video*", b"/dev/my-video-cam", true),
            ("/dev/a*b*c", b"/dev/aXbYbZc", true),
            ("/dev/a*b*c", b"/dev/aXbYbZ", false),
            ("/dev/**", b"/dev/anything", true),
            ("/dev/*", b"/dev/", true),
            ("/*/video0", b"/dev/video0", true),
            ("/*/video0", b"/dev/sub/video0", false),
            ("/tmp/v*", b"/tmp/v\xff\xfe", true),
            ("/tmp/v*x", b"/tmp/v\xffx", true),
            ("/", b"/", true),
            ("/", b"/dev", false),
        ];
        for &(pattern, path, want) in cases {
            let p = Pattern::new(pattern).unwrap();
            assert_eq!(p.matches(path), want, "{pattern} vs {:?}", String::from_utf8_lossy(path));
        }
    }

    #[test]
    fn validation_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/dev/video*", None),
            ("/dev/v4l/by-id/*", None),
            ("/", None),
            ("", Some("device pattern is empty")),
            ("dev/video*", Some("not an absolute path")),
            ("video0", Some("not an absolute path")),
            ("/dev/vid\0eo", Some("contains a NUL byte")),
            ("/dev//video0", Some("not a normalized path")),
            ("/dev/../video0", Some("not a normalized path")),
            ("/dev/./video0", Some("not a normalized path")),
            ("/dev/", Some("not a normalized path")),
        ];
        for &(text, want_error) in cases {
            match (Pattern::new(text), want_error) {
                (Ok(p), None) => assert_eq!(p.as_str(), text),
                (Err(e), Some(want)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{text:?}: {msg}");
                    assert!(!msg.ends_with('.'), "{msg}");
                }
                (got, want) => panic!("{text:?}: got {got:?}, wanted error {want:?}"),
            }
        }
    }

    #[test]
    fn expand_lists_existing_matches_through_symlinks() {
        let root = std::env::temp_dir().join(format!("mmss-pattern-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("real")).unwrap();
        for name in ["video0", "video1", "other"] {
            std::fs::write(root.join("real").join(name), b"").unwrap();
        }
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("real/missing"), root.join("real/video9")).unwrap();
        let p = Pattern::new(&format!("{}/*/video*", root.display())).unwrap();
        let got = p.expand();
        let want: Vec<PathBuf> =
            ["link/video0", "link/video1", "real/video0", "real/video1"].iter().map(|s| root.join(s)).collect();
        assert_eq!(got, want, "dangling real/video9 is left out");
        let literal = Pattern::new(&format!("{}/real/video0", root.display())).unwrap();
        assert_eq!(literal.expand(), [root.join("real/video0")]);
        let missing = Pattern::new(&format!("{}/nope/video*", root.display())).unwrap();
        assert!(missing.expand().is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
