//! The detection layer against the real kernel: real child processes holding (or mapping) files that stand in for
//! camera nodes, found through the real `/proc`, and real inotify events; plus fake proc trees for the cases a real
//! system cannot produce on demand.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mm_status_sync::detect::{DeviceClass, DeviceSet, Filter, Pattern, Scanner, Verdict, Wake, Watcher};
use mm_status_sync::sys;
use support::child::hold_open;
use support::devices::{
    SoundNodes, hardened_holder, mknod, skipped_unless_root, thread_holder, wait_main_thread_exited,
};
use support::{BIN, Reaped, TempDir};

/// What the scanner tests make in their temp dir.
trait Scratch {
    /// Creates a 4096-byte file (big enough to map) and returns its path.
    fn file(&self, name: impl AsRef<Path>) -> PathBuf;
    fn pattern(&self, glob: &str) -> Pattern;
}

impl Scratch for TempDir {
    fn file(&self, name: impl AsRef<Path>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        path
    }

    fn pattern(&self, glob: &str) -> Pattern {
        Pattern::new(&format!("{}/{glob}", self.display())).unwrap()
    }
}

/// A `sleep` process holding `path` open on descriptor 3 (opened by the shell before it becomes `sleep`).
fn hold(path: &Path) -> Reaped {
    let kid = hold_open(path, |_| {});
    support::wait_for(&format!("child {} to become sleep", kid.pid()), || kid.comm() == "sleep").unwrap();
    kid
}

/// A python process that opens `path` and maps it, as a streaming V4L2 client maps its buffers.
fn map(path: &Path) -> Reaped {
    let script = "import mmap,sys,time\nf=open(sys.argv[1],'r+b')\nm=mmap.mmap(f.fileno(),4096)\nprint('ready',flush=True)\ntime.sleep(30)";
    let mut kid = Reaped(
        Command::new("python3")
            .args(["-c", script])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(kid.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    kid
}

fn devices(patterns: &[Pattern]) -> DeviceSet {
    DeviceSet::new(patterns.to_vec())
}

fn scan(devices: &DeviceSet, filter: &Filter) -> Scanner {
    let mut scanner = Scanner::new().unwrap();
    scanner.full_scan(devices, filter);
    scanner
}

#[test]
fn full_scan_finds_the_child_holding_a_matching_node_and_not_the_other() {
    let dir = TempDir::new("find");
    let camera = dir.file("video0");
    let other = dir.file("notes.txt");
    let holder = hold(&camera);
    let bystander = hold(&other);
    let devices = devices(&[dir.pattern("video*")]);
    let mut scanner = Scanner::new().unwrap();
    let stats = scanner.full_scan(&devices, &Filter::default());
    assert!(stats.processes >= 2 && stats.fds >= 2, "{stats:?}");
    let holders = scanner.holders();
    assert_eq!(holders.len(), 1, "{holders:?}");
    let h = &holders[0];
    assert_eq!(h.pid, holder.pid());
    assert_eq!(h.comm(), "sleep");
    assert_eq!(h.device(), camera.as_os_str().as_bytes());
    assert_eq!(h.verdict, Verdict::Counts);
    assert_eq!(h.streaming, None, "nobody asked for streaming evidence");
    assert!(scanner.in_use());
    assert!(!holders.iter().any(|h| h.pid == bystander.pid()));
}

#[test]
fn no_holder_no_use() {
    let dir = TempDir::new("none");
    dir.file("video0");
    let scanner = scan(&devices(&[dir.pattern("video*")]), &Filter::default());
    assert!(scanner.holders().is_empty(), "{:?}", scanner.holders());
    assert!(!scanner.in_use());
}

#[test]
fn ignored_process_does_not_count() {
    let dir = TempDir::new("ignore");
    let camera = dir.file("video0");
    let holder = hold(&camera);
    let filter = Filter { ignore_processes: vec!["sleep".into()], ..Filter::default() };
    let scanner = scan(&devices(&[dir.pattern("video*")]), &filter);
    assert_eq!(scanner.holders().len(), 1);
    assert_eq!(scanner.holders()[0].pid, holder.pid());
    assert_eq!(scanner.holders()[0].verdict, Verdict::Ignored);
    assert_eq!(scanner.holders()[0].verdict.reason(), "ignored (ignore-processes)");
    assert!(!scanner.in_use());
}

#[test]
fn require_streaming_tells_an_open_from_a_mapping() {
    let dir = TempDir::new("stream");
    let opened = dir.file("video0");
    let mapped = dir.file("video1");
    let opener = hold(&opened);
    let mapper = map(&mapped);
    let mapper_comm = mapper.comm();
    let devices = devices(&[dir.pattern("video*")]);

    let by_name = Filter { require_streaming_for: vec!["sleep".into(), mapper_comm.clone()], ..Filter::default() };
    let every = Filter { require_streaming_for: vec!["*".into()], ..Filter::default() };
    for filter in [&by_name, &every] {
        let scanner = scan(&devices, filter);
        let of = |pid| scanner.holders().iter().find(|h| h.pid == pid).unwrap_or_else(|| panic!("{pid} not found"));
        assert_eq!(of(opener.pid()).verdict, Verdict::NotStreaming);
        assert_eq!(of(opener.pid()).streaming, Some(false));
        assert_eq!(of(mapper.pid()).verdict, Verdict::Counts);
        assert_eq!(of(mapper.pid()).streaming, Some(true));
        assert_eq!(of(mapper.pid()).comm(), mapper_comm);
        assert!(scanner.in_use());
    }

    // Without the mapper, only a non-streaming holder remains.
    drop(mapper);
    let scanner = scan(&devices, &every);
    assert_eq!(scanner.holders().len(), 1);
    assert!(!scanner.in_use());
    // And a filter for someone else leaves the plain holder counted.
    let other = Filter { require_streaming_for: vec!["pipewire".into()], ..Filter::default() };
    assert!(scan(&devices, &other).in_use());
}

#[test]
fn recheck_drops_a_killed_holder_and_keeps_the_others() {
    let dir = TempDir::new("recheck");
    let mut first = hold(&dir.file("video0"));
    let second = hold(&dir.file("video1"));
    let devices = devices(&[dir.pattern("video*")]);
    let filter = Filter::default();
    let mut scanner = scan(&devices, &filter);
    let mut pids: Vec<u32> = scanner.holders().iter().map(|h| h.pid).collect();
    pids.sort();
    let mut want = vec![first.pid(), second.pid()];
    want.sort();
    assert_eq!(pids, want);

    first.kill();
    let stats = scanner.recheck(&devices, &filter);
    assert_eq!((stats.processes, stats.skipped), (1, 1), "{stats:?}");
    assert_eq!(scanner.holders().len(), 1);
    assert_eq!(scanner.holders()[0].pid, second.pid());
    assert!(scanner.in_use());

    drop(second);
    scanner.recheck(&devices, &filter);
    assert!(scanner.holders().is_empty());
    assert!(!scanner.in_use());
}

#[test]
fn scans_survive_processes_vanishing_underneath() {
    let dir = TempDir::new("churn");
    let holder = hold(&dir.file("video0"));
    let devices = devices(&[dir.pattern("video*")]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawned = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let churn = {
        let (stop, spawned) = (stop.clone(), spawned.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Short-lived processes that come and go (and linger as zombies a moment) while the scans run.
                let kids: Vec<Child> = (0..8).filter_map(|_| Command::new("true").spawn().ok()).collect();
                for mut kid in kids {
                    let _ = kid.wait();
                    spawned.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // The churn is under way before the scans start: on a busy machine its thread may otherwise first run after
    // the forty scans are over, and the test would have scanned a quiet system.
    support::wait_for("the churn to start", || spawned.load(Ordering::Relaxed) > 0).unwrap();
    let mut scanner = Scanner::new().unwrap();
    for round in 0..40 {
        scanner.full_scan(&devices, &Filter::default());
        assert_eq!(scanner.holders().len(), 1, "round {round}");
        assert_eq!(scanner.holders()[0].pid, holder.pid());
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
}

/// A fake proc tree: one readable holder, one process that vanished (no `fd`), names that are not processes.
#[test]
fn fake_proc_tree_skips_what_it_cannot_read() {
    let dir = TempDir::new("fakeproc");
    let camera = dir.file("video0");
    let proc_root = dir.join("proc");
    for (pid, target) in [("100", Some(&camera)), ("101", None), ("102", Some(&dir.join("notes")))] {
        std::fs::create_dir_all(proc_root.join(pid)).unwrap();
        std::fs::write(proc_root.join(pid).join("comm"), format!("app{pid}\n")).unwrap();
        if let Some(target) = target {
            std::fs::create_dir(proc_root.join(pid).join("fd")).unwrap();
            std::os::unix::fs::symlink("socket:[1234]", proc_root.join(pid).join("fd/0")).unwrap();
            std::os::unix::fs::symlink(target, proc_root.join(pid).join("fd/3")).unwrap();
            std::os::unix::fs::symlink(target, proc_root.join(pid).join("fd/4")).unwrap();
        }
    }
    std::fs::create_dir_all(proc_root.join("self/fd")).unwrap();
    std::fs::create_dir_all(proc_root.join("sys")).unwrap();
    std::fs::write(proc_root.join("uptime"), "1 1\n").unwrap();

    let mut scanner = Scanner::with_proc_root(&proc_root).unwrap();
    let devices = devices(&[dir.pattern("video*")]);
    let stats = scanner.full_scan(&devices, &Filter::default());
    assert_eq!((stats.processes, stats.fds, stats.skipped), (2, 6, 1), "{stats:?}");
    let holders = scanner.holders();
    assert_eq!(holders.len(), 1, "two descriptors on one device make one holder: {holders:?}");
    assert_eq!((holders[0].pid, holders[0].comm()), (100, "app100"));

    // The holder's process disappears between scans: recheck skips it and forgets it.
    std::fs::remove_dir_all(proc_root.join("100")).unwrap();
    let stats = scanner.recheck(&devices, &Filter::default());
    assert_eq!((stats.processes, stats.skipped), (0, 1));
    assert!(scanner.holders().is_empty());
}

#[test]
fn a_missing_proc_root_is_a_clear_error() {
    let err = Scanner::with_proc_root("/nonexistent/proc").err().unwrap();
    assert!(err.to_string().contains("/nonexistent/proc"), "{err}");
}

#[test]
fn by_id_symlink_patterns_resolve_to_the_node_proc_shows() {
    let dir = TempDir::new("byid");
    let camera = dir.file("video0");
    let unlinked = dir.file("video1");
    std::fs::create_dir(dir.join("by-id")).unwrap();
    std::os::unix::fs::symlink("../video0", dir.join("by-id/usb-cam-video-index0")).unwrap();
    let mut devices = devices(&[dir.pattern("by-id/*")]);
    assert_eq!(devices.resolved().collect::<Vec<_>>(), [camera.as_os_str().as_bytes()]);

    // Opened through the link or directly, /proc shows the node.
    let through_link = hold(&dir.join("by-id/usb-cam-video-index0"));
    let direct = hold(&camera);
    let other = hold(&unlinked);
    let filter = Filter::default();
    let mut scanner = Scanner::new().unwrap();
    scanner.full_scan(&devices, &filter);
    let mut pids: Vec<u32> = scanner.holders().iter().map(|h| h.pid).collect();
    pids.sort();
    let mut want = vec![through_link.pid(), direct.pid()];
    want.sort();
    assert_eq!(pids, want);
    assert!(scanner.holders().iter().all(|h| h.device() == camera.as_os_str().as_bytes()));

    // A camera plugged in later is picked up by refresh.
    std::os::unix::fs::symlink("../video1", dir.join("by-id/usb-other-video-index0")).unwrap();
    scanner.full_scan(&devices, &filter);
    assert!(!scanner.holders().iter().any(|h| h.pid == other.pid()));
    devices.refresh();
    scanner.full_scan(&devices, &filter);
    assert!(scanner.holders().iter().any(|h| h.pid == other.pid()));
}

#[test]
fn uvc_metadata_nodes_never_count() {
    let dir = TempDir::new("meta");
    let capture = dir.file("video0");
    let metadata = dir.file("video1");
    for (node, index) in [("video0", "0\n"), ("video1", "1\n")] {
        let attr = dir.join("sys/class/video4linux").join(node);
        std::fs::create_dir_all(&attr).unwrap();
        std::fs::write(attr.join("index"), index).unwrap();
    }
    let devices = DeviceSet::with_sysfs_root(vec![dir.pattern("video*")], &dir.join("sys"));
    let meta_holder = hold(&metadata);
    let scanner = scan(&devices, &Filter::default());
    assert_eq!(scanner.holders().len(), 1);
    assert_eq!(scanner.holders()[0].pid, meta_holder.pid());
    assert_eq!(scanner.holders()[0].verdict, Verdict::MetadataNode);
    assert!(!scanner.in_use());

    let capture_holder = hold(&capture);
    let scanner = scan(&devices, &Filter::default());
    let h = scanner.holders().iter().find(|h| h.pid == capture_holder.pid()).unwrap();
    assert_eq!(h.verdict, Verdict::Counts);
    assert!(scanner.in_use());
}

#[test]
fn non_utf8_names_match_as_bytes_and_never_spuriously() {
    use std::ffi::OsStr;
    let dir = TempDir::new("bytes");
    let camera = dir.file(OsStr::from_bytes(b"video\xff"));
    let other = dir.file(OsStr::from_bytes(b"vide\xff0"));
    let holder = hold(&camera);
    let bystander = hold(&other);
    let scanner = scan(&devices(&[dir.pattern("video*")]), &Filter::default());
    assert_eq!(scanner.holders().len(), 1, "{:?}", scanner.holders());
    assert_eq!(scanner.holders()[0].pid, holder.pid());
    assert!(scanner.holders()[0].device().ends_with(b"/video\xff"));
    assert!(scanner.holders()[0].device_lossy().ends_with("/video\u{fffd}"));
    assert_ne!(scanner.holders()[0].pid, bystander.pid());
}

/// Polls the watcher until `done` says the accumulated wake-ups are enough, or fails after a few seconds.
fn wait_for(watcher: &mut Watcher, what: &str, done: impl Fn(&Wake) -> bool) -> Wake {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut total = Wake::default();
    while !done(&total) {
        let left = deadline.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("no {what}: {total:?}"));
        let mut ready = [false];
        sys::poll_readable(&[watcher.fd()], &mut ready, Some(left)).unwrap();
        let wake = watcher.read_events().unwrap();
        total.opened |= wake.opened;
        total.closed |= wake.closed;
        total.topology |= wake.topology;
    }
    total
}

/// Nothing arrives within a short while.
fn quiet(watcher: &mut Watcher) -> Wake {
    let mut ready = [false];
    sys::poll_readable(&[watcher.fd()], &mut ready, Some(Duration::from_millis(200))).unwrap();
    watcher.read_events().unwrap()
}

#[test]
fn watcher_reports_open_close_and_topology() {
    let dir = TempDir::new("watch");
    let camera = dir.file("video0");
    dir.file("notes.txt");
    let patterns = [dir.pattern("video*")];
    let mut watcher = Watcher::new(&patterns).unwrap();
    assert_eq!(watcher.watched(), 2, "the node and its directory");
    assert_eq!(quiet(&mut watcher), Wake::default());

    let mut kid = hold(&camera);
    let wake = wait_for(&mut watcher, "open", |w| w.opened);
    assert!(!wake.topology, "{wake:?}");
    kid.kill();
    wait_for(&mut watcher, "close", |w| w.closed);

    // Unrelated names in the directory are not a topology change.
    dir.file("notes2.txt");
    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    assert!(!quiet(&mut watcher).topology);

    // A camera appears: topology; after rewatch its opens are seen.
    let second = dir.file("video1");
    wait_for(&mut watcher, "topology on create", |w| w.topology);
    watcher.rewatch(&patterns).unwrap();
    assert_eq!(watcher.watched(), 3);
    let _kid = hold(&second);
    wait_for(&mut watcher, "open of the new node", |w| w.opened);

    // A camera vanishes: topology.
    std::fs::remove_file(&camera).unwrap();
    wait_for(&mut watcher, "topology on delete", |w| w.topology);
    watcher.rewatch(&patterns).unwrap();
    assert_eq!(watcher.watched(), 2);
    assert!(!quiet(&mut watcher).topology);
}

/// Regression guard: removing watches on rewatch queues `IN_IGNORED`; taking that for a topology change would make
/// the daemon rewatch forever.
#[test]
fn rewatch_does_not_wake_itself() {
    let dir = TempDir::new("rewatch");
    dir.file("video0");
    dir.file("video1");
    let mut watcher = Watcher::new(&[dir.pattern("video*")]).unwrap();
    assert_eq!(watcher.watched(), 3);
    watcher.rewatch(&[dir.pattern("video0")]).unwrap();
    assert_eq!(watcher.watched(), 2);
    watcher.rewatch(&[]).unwrap();
    assert_eq!(watcher.watched(), 0);
    assert_eq!(quiet(&mut watcher), Wake::default());
}

#[test]
fn watcher_follows_by_id_links_and_waits_for_missing_directories() {
    let dir = TempDir::new("watchlinks");
    let camera = dir.file("video0");
    let patterns = [dir.pattern("v4l/by-id/*")];
    // Neither v4l nor by-id exists yet: the temp dir itself is watched for `v4l`.
    let mut watcher = Watcher::new(&patterns).unwrap();
    assert_eq!(watcher.watched(), 1);
    std::fs::create_dir(dir.join("v4l")).unwrap();
    wait_for(&mut watcher, "topology on parent creation", |w| w.topology);
    watcher.rewatch(&patterns).unwrap();
    std::fs::create_dir(dir.join("v4l/by-id")).unwrap();
    wait_for(&mut watcher, "topology on by-id creation", |w| w.topology);
    watcher.rewatch(&patterns).unwrap();
    std::os::unix::fs::symlink(&camera, dir.join("v4l/by-id/usb-cam-index0")).unwrap();
    wait_for(&mut watcher, "topology on link creation", |w| w.topology);
    watcher.rewatch(&patterns).unwrap();
    assert_eq!(watcher.watched(), 2, "by-id and the node behind the link");

    // Opening the node by its own name fires on the watched inode.
    let _kid = hold(&camera);
    wait_for(&mut watcher, "open through the node", |w| w.opened);
}

/// Run by `less_privileged_readers_skip_what_they_cannot_read` as a child under another uid: scans for the pattern
/// in the environment and prints what it found. A no-op in a normal test run.
#[test]
fn scan_as_child_entry() {
    let Ok(pattern) = std::env::var("MMSS_DETECT_CHILD_PATTERN") else { return };
    let devices = devices(&[Pattern::new(&pattern).unwrap()]);
    let mut scanner = Scanner::new().unwrap();
    let stats = scanner.full_scan(&devices, &Filter::default());
    let pids: Vec<String> = scanner.holders().iter().map(|h| h.pid.to_string()).collect();
    println!("RESULT {} {} {}", stats.processes, stats.skipped, pids.join(","));
}

/// The kernel's rules from the reference, seen by a scanner running as `nobody`: without privileges, root's
/// processes are skipped; with CAP_DAC_READ_SEARCH alone the descriptors can be listed but not read, and are skipped
/// too; with CAP_SYS_PTRACE as well, root's holder is found. Needs root to drop to another uid.
#[test]
fn less_privileged_readers_skip_what_they_cannot_read() {
    if skipped_unless_root("start a scanner under another uid") {
        return;
    }
    let dir = TempDir::new("privs");
    let holder = hold(&dir.file("video0"));
    let pattern = dir.pattern("video*");
    let run = |caps: &str| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        if !caps.is_empty() {
            cmd.arg(format!("--inh-caps={caps}")).arg(format!("--ambient-caps={caps}"));
        }
        let out = cmd
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "scan_as_child_entry", "--nocapture", "--test-threads=1"])
            .env("MMSS_DETECT_CHILD_PATTERN", pattern.as_str())
            .output()
            .expect("setpriv runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find_map(|l| l.split_once("RESULT ").map(|(_, r)| r)).unwrap_or_else(|| {
            panic!("child with caps {caps:?} printed no result: {stdout} {}", String::from_utf8_lossy(&out.stderr))
        });
        let mut fields = line.split(' ');
        let mut number = || fields.next().unwrap().parse::<usize>().unwrap_or(0);
        let (processes, skipped) = (number(), number());
        let pids: Vec<u32> = fields.next().unwrap_or("").split(',').filter_map(|p| p.parse().ok()).collect();
        (processes, skipped, pids)
    };
    for caps in ["", "+dac_read_search"] {
        let (processes, skipped, pids) = run(caps);
        assert!(skipped > 0, "caps {caps:?}: nothing skipped ({processes} read)");
        assert!(pids.is_empty(), "caps {caps:?}: saw {pids:?}");
    }
    let (_, _, pids) = run("+dac_read_search,+sys_ptrace");
    assert_eq!(pids, [holder.pid()]);
}

/// A process whose main thread has exited while another thread keeps the camera open (`pthread_exit` in `main`):
/// `/proc/PID/fd` then lists nothing, and only `/proc/PID/task/TID/fd` shows the descriptor. Built with the C
/// compiler every build of this crate already needs (ring compiles C).
#[test]
fn a_camera_held_by_a_thread_after_the_main_thread_exited_is_found() {
    let dir = TempDir::new("thread");
    let camera = dir.file("video0");
    let program = thread_holder(&dir);
    // One opens the camera, the other opens and maps it (streams); both then end their main thread.
    let start = |stream: bool| {
        let mut cmd = Command::new(&program);
        cmd.arg(&camera).stdin(Stdio::null());
        if stream {
            cmd.arg("map");
        }
        let kid = Reaped::spawn(&mut cmd);
        wait_main_thread_exited(&kid);
        kid
    };
    let holder = start(false);
    let streamer = start(true);
    let devices = devices(&[dir.pattern("video*")]);
    let mut scanner = scan(&devices, &Filter::default());
    let found: Vec<_> = scanner.holders().iter().filter(|h| h.pid == holder.pid()).cloned().collect();
    assert_eq!(found.len(), 1, "{:?}", scanner.holders());
    assert_eq!(found[0].device(), camera.as_os_str().as_bytes());
    assert_eq!(found[0].verdict, Verdict::Counts);
    // The cheap recheck after an inotify event sees it too.
    scanner.recheck(&devices, &Filter::default());
    assert!(scanner.holders().iter().any(|h| h.pid == holder.pid()), "{:?}", scanner.holders());

    // Streaming evidence comes from a living thread's memory map: the main thread's is empty once it is gone.
    let every = Filter { require_streaming_for: vec!["*".into()], ..Filter::default() };
    let scanner = scan(&devices, &every);
    let of = |pid| scanner.holders().iter().find(|h| h.pid == pid).unwrap_or_else(|| panic!("{pid} not found"));
    assert_eq!((of(holder.pid()).verdict, of(holder.pid()).streaming), (Verdict::NotStreaming, Some(false)));
    assert_eq!((of(streamer.pid()).verdict, of(streamer.pid()).streaming), (Verdict::Counts, Some(true)));
}

/// A process of the scanner's own user that made itself non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`, as hardened apps
/// do) cannot be read without CAP_SYS_PTRACE. An unprivileged `scan` and the daemon's debug line count it apart from
/// other users' processes and name it, so the user knows to run the system service. Needs root to drop to uid 65534.
#[test]
fn an_unprivileged_scanner_finds_its_own_camera_held_by_a_thread_after_the_main_thread_exited() {
    if skipped_unless_root("run a scanner and a holder as another uid (setpriv)") {
        return;
    }
    let dir = TempDir::new("thread-unprivileged");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let camera = dir.file("video0");
    let program = thread_holder(&dir);
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let holder =
        Reaped(Command::new("setpriv").args(nobody).arg(&program).arg(&camera).stdin(Stdio::null()).spawn().unwrap());
    // The state under test: the main thread gone, so to its unprivileged owner /proc/PID/fd is denied (EACCES).
    wait_main_thread_exited(&holder);
    let bin = BIN;
    let pattern = dir.pattern("video*");
    let out = Command::new("setpriv").args(nobody).args([bin, "scan", "--device", pattern.as_str()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the user's own holder counts: {stdout}{stderr}");
    assert!(stdout.contains(&format!("{}", holder.pid())), "{stdout}");
    assert!(!stderr.contains("non-dumpable"), "a process whose main thread exited is not a non-dumpable one: {stderr}");
}

#[test]
fn own_non_dumpable_processes_are_named_apart_from_other_users() {
    if skipped_unless_root("run a scanner and a holder under another uid") {
        return;
    }
    let dir = TempDir::new("dumpable");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let camera = dir.file("video0");
    let program = hardened_holder(&dir);
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let mut hardened = Reaped(
        Command::new("setpriv")
            .args(nobody)
            .arg(&program)
            .arg(&camera)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(hardened.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // Another user's holder (root's), to be counted apart.
    let _root_holder = hold(&camera);
    let pattern = dir.pattern("video*");
    let bin = BIN;

    let out = Command::new("setpriv").args(nobody).args([bin, "scan", "--device", pattern.as_str()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "nobody can see a holder: {stdout}{stderr}");
    let named = format!(
        "1 of your own processes could not be read because they made themselves non-dumpable: hardened (pid {})",
        hardened.pid()
    );
    assert!(stderr.contains(&named), "{stderr}");
    assert!(stderr.contains("run the system service, which has it"), "{stderr}");
    assert!(stderr.contains("processes of other users could not be read"), "{stderr}");

    // The daemon's debug line says the same.
    let mut daemon = Reaped(
        Command::new("setpriv")
            .args(nobody)
            .args([bin, "--dry-run", "--log", "stderr", "--log-level", "debug", "--interval", "3600"])
            .args(["--device", pattern.as_str()])
            .env_remove("MM_STATUS_SYNC_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let scan_line = BufReader::new(daemon.0.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("full scan (Startup"))
        .expect("a startup scan line");
    assert!(
        scan_line.contains(&format!("1 of your own not dumpable: hardened (pid {})", hardened.pid())),
        "{scan_line}"
    );
    assert!(scan_line.contains(" of other users"), "{scan_line}");
    daemon.kill();
    hardened.kill();
}

/// Real ALSA-style device nodes (`mknod`, character device 1:3 like /dev/null): only the capture node counts as a
/// microphone, even under a pattern that matches the playback node too; ignore-processes applies, and
/// require-streaming-for does not (sound servers hold capture nodes only while recording). Needs root for mknod.
#[test]
fn only_capture_nodes_are_microphones() {
    if skipped_unless_root("mknod the sound nodes") {
        return;
    }
    let dir = TempDir::new("mic");
    let SoundNodes { capture, playback } = SoundNodes::new(&dir);
    let control = mknod(&dir.join("controlC0"), "0666", 3);
    let camera = dir.file("video0");
    let recorder = hold(&capture);
    let player = hold(&playback);
    let mixer = hold(&control);
    let caller = hold(&camera);
    let devices = DeviceSet::new(vec![dir.pattern("video*")]).with_microphones(vec![dir.pattern("pcmC*D*")]);
    let every = Filter { require_streaming_for: vec!["*".into()], ..Filter::default() };
    let scanner = scan(&devices, &Filter::default());
    let of = |scanner: &Scanner, pid| {
        scanner.holders().iter().find(|h| h.pid == pid).cloned().unwrap_or_else(|| panic!("{pid} not found"))
    };
    let h = of(&scanner, recorder.pid());
    assert_eq!(
        (h.class, h.verdict, h.device()),
        (DeviceClass::Microphone, Verdict::Counts, capture.as_os_str().as_bytes())
    );
    let h = of(&scanner, player.pid());
    assert_eq!((h.class, h.verdict), (DeviceClass::Microphone, Verdict::NotCapture));
    assert!(!scanner.holders().iter().any(|h| h.pid == mixer.pid()), "controlC0 is not matched by pcmC*D*");
    assert_eq!(of(&scanner, caller.pid()).class, DeviceClass::Camera);
    assert!(scanner.in_use_by(DeviceClass::Microphone) && scanner.in_use_by(DeviceClass::Camera));

    // The streaming gate is for cameras: a recorder counts without mapping anything.
    let scanner = scan(&devices, &every);
    assert_eq!(of(&scanner, recorder.pid()).verdict, Verdict::Counts);
    assert_eq!(of(&scanner, caller.pid()).verdict, Verdict::NotStreaming);
    // ignore-processes applies to microphones too.
    let ignoring = Filter { ignore_processes: vec!["sleep".into()], ..Filter::default() };
    let scanner = scan(&devices, &ignoring);
    assert_eq!(of(&scanner, recorder.pid()).verdict, Verdict::Ignored);
    assert!(!scanner.in_use());

    // Playback alone is no microphone in use; without microphone patterns nothing of it is seen at all.
    drop(recorder);
    drop(caller);
    let scanner = scan(&devices, &Filter::default());
    assert!(!scanner.in_use(), "{:?}", scanner.holders());
    let cameras_only = DeviceSet::new(vec![dir.pattern("video*")]);
    let _recorder = hold(&capture);
    let scanner = scan(&cameras_only, &Filter::default());
    assert!(scanner.holders().is_empty(), "{:?}", scanner.holders());
}

/// A holder that reaches a watched node through another root (a chroot or a container with `/dev` bind-mounted;
/// `/proc` then shows `/somewhere/dev/video0`) is found by device number, but only where the link target's last
/// component is named like a watched node, so other descriptors cost nothing extra. Needs root for mknod.
#[test]
fn a_node_reached_through_another_root_is_matched_by_device_number() {
    if skipped_unless_root("mknod") {
        return;
    }
    let dir = TempDir::new("otherroot");
    // The mode mknod(1) gives without -m under the usual umask.
    let mknod = |path: &Path, minor: u32| mknod(path, "0644", minor);
    mknod(&dir.join("video0"), 3);
    mknod(&dir.join("pcmC0D0c"), 7);
    let chroot = dir.join("chroot/dev");
    let same_camera = hold(&mknod(&chroot.join("video0"), 3));
    let same_microphone = hold(&mknod(&chroot.join("snd/pcmC0D0c"), 7));
    let other_number = hold(&mknod(&chroot.join("video1"), 5));
    let other_name = hold(&mknod(&chroot.join("camera"), 3));
    let devices = DeviceSet::new(vec![dir.pattern("video*")]).with_microphones(vec![dir.pattern("pcmC*D*c")]);
    let scanner = scan(&devices, &Filter::default());
    let find = |pid| scanner.holders().iter().find(|h| h.pid == pid).cloned();
    let camera = find(same_camera.pid()).unwrap_or_else(|| panic!("not found: {:?}", scanner.holders()));
    assert_eq!(camera.device(), chroot.join("video0").as_os_str().as_bytes());
    assert_eq!((camera.class, camera.verdict), (DeviceClass::Camera, Verdict::Counts));
    let microphone = find(same_microphone.pid()).unwrap_or_else(|| panic!("not found: {:?}", scanner.holders()));
    assert_eq!((microphone.class, microphone.verdict), (DeviceClass::Microphone, Verdict::Counts));
    assert!(find(other_number.pid()).is_none(), "another device under a camera's name");
    assert!(find(other_name.pid()).is_none(), "the same device under a name no pattern has");
}
