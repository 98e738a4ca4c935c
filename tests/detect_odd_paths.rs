//! `/proc` link targets that are unusual but real: a device path of the longest length the kernel reports, a
//! descriptor on a file deeper than PATH_MAX (whose link the kernel refuses to read), and names that are not UTF-8.
//! The scanner (the library and `mm-status-sync scan`) must find the real holders among them and match nothing
//! else. Device patterns are UTF-8 (configuration values are text), so a non-UTF-8 name can only be matched by `*`.

mod support;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mm_status_sync::detect::{DeviceSet, Filter, Pattern, Scanner, Verdict};
use support::{BIN, Reaped, TempDir};

/// The longest path `readlink` on `/proc/PID/fd/N` returns: the kernel builds it in one page with its NUL.
const LONGEST_LINK: usize = 4095;
/// Linux's PATH_MAX, with its NUL.
const PATH_MAX: usize = 4096;
/// Linux's longest file name.
const NAME_MAX: usize = 255;
/// A directory name nearly as long as most file systems allow.
const LONG_NAME: usize = 250;

/// A python process that opens, in this order: a file `depth` directories of [`LONG_NAME`] bytes below `root`
/// (created relative to each other, so the whole path may exceed PATH_MAX), then each of `paths`; it says
/// `ready` once all are open and then sleeps.
fn hold_all(root: &Path, depth: usize, paths: &[&Path]) -> Reaped {
    let script = "import os,sys,time\n\
                  os.chdir(sys.argv[1])\n\
                  for _ in range(int(sys.argv[2])):\n    os.makedirs(sys.argv[3], exist_ok=True)\n    os.chdir(sys.argv[3])\n\
                  fds=[os.open('video-deep', os.O_RDONLY|os.O_CREAT, 0o600)]\n\
                  fds+=[os.open(os.fsencode(p), os.O_RDONLY) for p in sys.argv[4:]]\n\
                  print('ready', flush=True)\n\
                  time.sleep(60)";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]).arg(root).arg(depth.to_string()).arg("d".repeat(LONG_NAME));
    cmd.args(paths).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut kid = Reaped(cmd.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(kid.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the holder could not open its files");
    kid
}

/// A directory below `root` made of [`LONG_NAME`]-byte components, and in it a file name padded so that the whole
/// path is exactly [`LONGEST_LINK`] bytes.
fn longest_device_path(root: &Path) -> PathBuf {
    let mut dir = root.to_path_buf();
    // Until what is left after a `/` fits one file name; the last component shortened if need be so that the
    // file name keeps at least `video` and ten digits, whatever the length of `root` (TMPDIR).
    while LONGEST_LINK - dir.as_os_str().len() - 1 > NAME_MAX {
        let left = LONGEST_LINK - dir.as_os_str().len() - 1;
        dir.push("e".repeat(LONG_NAME.min(left - 1 - "video".len() - 10)));
    }
    std::fs::create_dir_all(&dir).unwrap();
    let pad = LONGEST_LINK - dir.as_os_str().len() - 1 - "video".len();
    let path = dir.join(format!("video{}", "0".repeat(pad)));
    assert_eq!(path.as_os_str().len(), LONGEST_LINK);
    std::fs::write(&path, b"").unwrap();
    path
}

fn holders_of(scanner: &Scanner, pid: u32) -> Vec<Vec<u8>> {
    scanner.holders().iter().filter(|h| h.pid == pid).map(|h| h.device().to_vec()).collect()
}

#[test]
fn a_device_path_of_the_longest_reported_length_is_found() {
    let dir = TempDir::new("longest");
    let camera = longest_device_path(dir.path());
    let pattern = Pattern::new(&format!("{}/video*", camera.parent().unwrap().display())).unwrap();
    let devices = DeviceSet::new(vec![pattern]);
    let holder = hold_all(dir.path(), 1, &[&camera]);
    let mut scanner = Scanner::new().unwrap();
    scanner.full_scan(&devices, &Filter::default());
    assert_eq!(holders_of(&scanner, holder.pid()), vec![camera.as_os_str().as_bytes().to_vec()]);
    assert_eq!(scanner.holders().len(), 1, "only our holder holds it");
    assert_eq!(scanner.holders()[0].verdict, Verdict::Counts);
}

#[test]
fn descriptors_deeper_than_path_max_and_non_utf8_names_do_not_confuse_the_scan() {
    let dir = TempDir::new("deep");
    // The kernel cannot put a path over PATH_MAX into a link target: readlink fails for it (ENAMETOOLONG) and
    // the scanner must go on to the process's next descriptor.
    let depth = 20;
    assert!(depth * (LONG_NAME + 1) > PATH_MAX);
    let not_utf8 = dir.join(OsStr::from_bytes(b"video\xff\xfe"));
    std::fs::write(&not_utf8, b"").unwrap();
    let long_not_utf8 = dir.join(OsStr::from_bytes(&[b'\xe9'; 255]));
    std::fs::write(&long_not_utf8, b"").unwrap();
    let camera = dir.join("video0");
    std::fs::write(&camera, b"").unwrap();

    // One process holds the deep file, two odd names and then the camera; another only the odd ones.
    let busy = hold_all(dir.path(), depth, &[&long_not_utf8, &not_utf8, &camera]);
    let bystander = hold_all(&dir.join("d".repeat(LONG_NAME)), 3, &[&long_not_utf8]);
    let deep_prefix = dir.join("d".repeat(LONG_NAME));

    // `video*` names the camera and the non-UTF-8 node (a `*` matches any bytes), never the deep file.
    let devices = DeviceSet::new(vec![Pattern::new(&format!("{}/video*", dir.display())).unwrap()]);
    let mut scanner = Scanner::new().unwrap();
    let stats = scanner.full_scan(&devices, &Filter::default());
    let mut held = holders_of(&scanner, busy.pid());
    held.sort();
    assert_eq!(held, vec![camera.as_os_str().as_bytes().to_vec(), not_utf8.as_os_str().as_bytes().to_vec()]);
    assert!(holders_of(&scanner, bystander.pid()).is_empty());
    assert!(scanner.holders().iter().all(|h| !h.device().starts_with(deep_prefix.as_os_str().as_bytes())));
    assert!(stats.fds >= 8, "{stats:?}");

    // A pattern naming the deep file itself matches nothing: its link cannot be read, so a device path over
    // PATH_MAX is out of reach (camera nodes live in /dev, far from that), and the scan goes on regardless.
    let deep_file = format!("{}{}/video-deep", dir.display(), format!("/{}", "d".repeat(LONG_NAME)).repeat(depth));
    let deep =
        DeviceSet::new(vec![Pattern::new(&deep_file).unwrap(), Pattern::new(&camera.to_string_lossy()).unwrap()]);
    let mut scanner = Scanner::new().unwrap();
    scanner.full_scan(&deep, &Filter::default());
    assert_eq!(holders_of(&scanner, busy.pid()), vec![camera.as_os_str().as_bytes().to_vec()]);

    // The same through the binary: the non-UTF-8 node is shown with replacement characters, exit 0.
    let out = Command::new(BIN)
        .args(["scan", "--devices", &format!("{}/video*", dir.display())])
        .env_clear()
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with(&format!("pid {} ", busy.pid()))).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines.iter().any(|l| l.contains("/video\u{fffd}\u{fffd}")), "{stdout}");
    assert!(lines.iter().any(|l| l.contains("/video0")), "{stdout}");
    assert!(!stdout.contains(&format!("pid {} ", bystander.pid())), "{stdout}");

    // Only the bystander left: nobody holds a device, exit 1.
    drop(busy);
    let out = Command::new(BIN)
        .args(["scan", "--devices", &format!("{}/video*", dir.display())])
        .env_clear()
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("no process holds a device"), "{stdout}");
    drop(bystander);
}
