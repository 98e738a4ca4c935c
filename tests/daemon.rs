//! The real binary as a user runs it: a dry run that notices a real process opening a fake camera through inotify
//! (the safety tick is an hour away), SIGHUP reloads that change behaviour, and bad input that exits 2.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use support::child::hold_open;
use support::devices::{SoundNodes, mknod, skipped_unless_root};
use support::{BIN, Reaped, TempDir};

/// A temp dir with `video0`, the fake camera.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = TempDir::new(&format!("daemon-{name}"));
        std::fs::write(dir.join("video0"), b"").unwrap();
        Fixture { dir }
    }
    fn device(&self) -> PathBuf {
        self.dir.join("video0")
    }
    fn pattern(&self) -> String {
        format!("{}/video*", self.dir.display())
    }
}

/// A child process holding `device` open, killed on drop.
fn open(device: &Path) -> Reaped {
    hold_open(device, |_| {})
}

/// The daemon with its stderr lines delivered to the test as they come.
struct Daemon {
    child: Reaped,
    lines: Receiver<(Instant, String)>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_command(Command::new(BIN), args, envs)
    }

    /// The daemon as user and group 65534 (`nobody`), with no capabilities: a user service as far as the kernel
    /// can tell.
    fn start_unprivileged(args: &[&str]) -> Daemon {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", BIN]);
        Daemon::start_command(cmd, args, &[])
    }

    fn start_command(mut cmd: Command, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut child = cmd
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("MM_STATUS_SYNC_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Daemon { child: Reaped(child), lines, seen: Vec::new() }
    }

    /// Waits for a line containing `needle`; returns when it was printed. `limit` only says when to give up and
    /// show what was seen; it is never less than a minute, so a slow machine (or an emulated daemon) is not a
    /// failure: timings are printed, not asserted.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> Instant {
        let limit = limit.max(Duration::from_secs(60));
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return at;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {limit:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits for the `n`-th line containing `needle` (counting those seen before); returns when it was printed.
    fn wait_for_nth(&mut self, needle: &str, n: usize, limit: Duration) -> Instant {
        assert!(self.count(needle) < n, "{needle:?} was seen {n} times already: {:#?}", self.seen);
        loop {
            let at = self.wait_for(needle, limit);
            if self.count(needle) >= n {
                return at;
            }
        }
    }

    /// Lines containing `needle` seen so far.
    fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    fn signal(&self, sig: &str) {
        self.child.signal(sig);
    }
}

fn dry_run_args(fx: &Fixture, start: &str, end: &str) -> Vec<String> {
    ["--dry-run", "--log", "stderr", "--interval", "3600", "--start-delay", start, "--end-delay", end, "--device"]
        .iter()
        .map(|s| s.to_string())
        .chain([fx.pattern()])
        .collect()
}

#[test]
fn dry_run_starts_and_ends_a_meeting_from_inotify_not_the_tick() {
    let fx = Fixture::new("inotify");
    let args = dry_run_args(&fx, "2", "3");
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(["--log-level", "debug"]);
    let mut d = Daemon::start(&all, &[]);
    // The camera is opened after the startup scan, so that inotify (not that scan) has to notice it.
    d.wait_for("full scan (Startup", Duration::from_secs(10));

    let opened = Instant::now();
    let holder = open(&fx.device());
    d.wait_for("camera in use by ", Duration::from_secs(5));
    let started = d.wait_for("meeting started", Duration::from_secs(10));
    let took = started - opened;
    // Not before start-delay (the debounce); how soon after it is a timing, printed. The tick (interval 3600)
    // cannot have started it: inotify did.
    assert!(took >= Duration::from_secs(2), "started after {took:?}, before start-delay");
    eprintln!("open -> meeting started: {took:?} (start-delay 2 s)");
    d.wait_for("dry-run: would set custom status :calendar: \"[In a meeting]\"", Duration::from_secs(5));
    d.wait_for("dry-run: would set availability dnd until", Duration::from_secs(5));

    let closed = Instant::now();
    drop(holder);
    d.wait_for("camera free", Duration::from_secs(5));
    let ended = d.wait_for("meeting ended", Duration::from_secs(10));
    let took = ended - closed;
    assert!(took >= Duration::from_secs(3), "ended after {took:?}, before end-delay");
    eprintln!("close -> meeting ended: {took:?} (end-delay 3 s)");
    d.wait_for("dry-run: would clear custom status", Duration::from_secs(5));
    d.wait_for("RESTORE: Status restored (Avail: online) and backup deleted.", Duration::from_secs(5));
}

#[test]
fn a_brief_probe_is_not_a_meeting() {
    let fx = Fixture::new("probe");
    // The probe lasts half a second; the start-delay leaves a busy machine (or an emulated daemon) seconds to see
    // it close before the delay is out.
    let start_delay = Duration::from_secs(5);
    let args = dry_run_args(&fx, &start_delay.as_secs().to_string(), "1");
    let mut d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    d.wait_for("Starting Mattermost Status Sync Daemon", Duration::from_secs(10));
    let probe = open(&fx.device());
    let seen = d.wait_for("camera in use", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    drop(probe);
    d.wait_for("camera free", Duration::from_secs(5));
    // Past the moment a meeting would have started had the probe counted (a lower bound: sleeping longer only
    // gives a wrong start more time to show), then everything logged until SIGTERM is read.
    std::thread::sleep((seen + start_delay + Duration::from_secs(1)).saturating_duration_since(Instant::now()));
    d.signal("TERM");
    d.wait_for("stopped after", Duration::from_secs(10));
    assert!(!d.seen.iter().any(|l| l.contains("meeting started")), "{:#?}", d.seen);
}

#[test]
fn sighup_applies_a_valid_config_and_keeps_the_old_one_when_invalid() {
    let fx = Fixture::new("reload");
    let conf = fx.dir.join("config.env");
    std::fs::write(&conf, "MM_STATUS_SYNC_MEETING_MESSAGE=\" [first]\"\n").unwrap();
    let args = dry_run_args(&fx, "0", "0");
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    let conf_s = conf.to_str().unwrap().to_owned();
    all.extend(["--config", &conf_s]);
    let mut d = Daemon::start(&all, &[]);
    d.wait_for("Starting Mattermost Status Sync Daemon", Duration::from_secs(10));

    let h = open(&fx.device());
    d.wait_for("would set custom status :calendar: \"[first]\"", Duration::from_secs(5));
    drop(h);
    d.wait_for("RESTORE: Status restored", Duration::from_secs(5));

    std::fs::write(&conf, "MM_STATUS_SYNC_MEETING_MESSAGE=\" [second]\"\nMM_STATUS_SYNC_MEETING_EMOJI=phone\n")
        .unwrap();
    d.signal("HUP");
    d.wait_for("configuration reloaded", Duration::from_secs(5));
    let h = open(&fx.device());
    d.wait_for("would set custom status :phone: \"[second]\"", Duration::from_secs(5));
    drop(h);
    d.wait_for("RESTORE: Status restored", Duration::from_secs(5));

    std::fs::write(&conf, "MM_STATUS_SYNC_MEETING_STATUS=busy\n").unwrap();
    d.signal("HUP");
    let line = d.wait_for("reload rejected", Duration::from_secs(5));
    let _ = line;
    let last = d.seen.last().unwrap().clone();
    assert!(
        last.contains("invalid meeting-status \"busy\"") && last.contains("keeping the current configuration"),
        "{last}"
    );
    let h = open(&fx.device());
    d.wait_for("would set custom status :phone: \"[second]\"", Duration::from_secs(5));
    d.wait_for("would set availability dnd", Duration::from_secs(5));
    drop(h);
    d.signal("TERM");
    d.wait_for("stopped after", Duration::from_secs(10));
    assert_eq!(d.child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn invalid_configuration_exits_2_with_one_line_naming_the_key() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--start-delay", "-3", "scan"], &[], "invalid start-delay \"-3\" (from flag): expected whole seconds"),
        (&["scan"], &[("MM_STATUS_SYNC_MEETING_STATUS", "busy")], "invalid meeting-status \"busy\" (from environment)"),
        (&["--dry-run", "--lease", "12"], &[], "invalid lease \"12\" (from flag)"),
        (&["--url", "http://mm.example.com", "--dry-run"], &[], "invalid url"),
        (&[], &[], "missing url"),
        (&["config"], &[("MM_STATUS_SYNC_LOG", "journal")], "invalid log \"journal\" (from environment)"),
        (&["frobnicate"], &[], "unknown command \"frobnicate\""),
    ];
    for (args, envs, want) in cases {
        let out = Command::new(BIN)
            .args(*args)
            .envs(envs.iter().copied())
            .env_remove("MM_STATUS_SYNC_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
    // The token is never a flag.
    let out = Command::new(BIN).args(["--token", "abc", "config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn scan_reports_holders_and_exits_0_only_when_one_counts() {
    let fx = Fixture::new("scan");
    let scan = |extra: &[&str]| {
        let out = Command::new(BIN).args(["scan", "--device", &fx.pattern()]).args(extra).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(scan(&[]).0, Some(1));
    let h = open(&fx.device());
    // The shell opens the node, then becomes `sleep`: the name the assertions below look for.
    support::wait_for("the holder to become sleep", || h.comm() == "sleep").unwrap();
    let (code, out) = scan(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("pid {:<8} sleep", h.pid())) && out.contains("counted"), "{out}");
    let (code, out) = scan(&["--ignore-processes", "sleep,sh"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("ignored (ignore-processes)"), "{out}");
    let (code, out) = scan(&["--require-streaming-for", "*"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not streaming (require-streaming-for)"), "{out}");
}

#[test]
fn config_prints_a_file_that_reads_back_and_lists_keys() {
    let out = Command::new(BIN).args(["config", "--keys"]).output().unwrap();
    let keys = String::from_utf8(out.stdout).unwrap();
    assert!(keys.lines().any(|k| k == "token") && keys.lines().any(|k| k == "meeting-message"), "{keys}");
    let out = Command::new(BIN)
        .args(["config", "--start-delay", "7"])
        .env("MM_STATUS_SYNC_TOKEN", "very-secret-token")
        .env("MM_STATUS_SYNC_URL", "https://mm.example.com")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!text.contains("very-secret-token"), "{text}");
    assert!(text.contains("# from: flag\nMM_STATUS_SYNC_START_DELAY=\"7\""), "{text}");
    let fx = Fixture::new("config");
    let file = fx.dir.join("effective.env");
    std::fs::write(&file, &text).unwrap();
    let again = Command::new(BIN)
        .args(["config", "--config", file.to_str().unwrap()])
        .env("MM_STATUS_SYNC_TOKEN", "very-secret-token")
        .output()
        .unwrap();
    let again = String::from_utf8(again.stdout).unwrap();
    assert!(again.contains(&format!("# from: file {}:", file.display())), "{again}");
    assert!(again.contains("MM_STATUS_SYNC_START_DELAY=\"7\""), "{again}");
}

/// Woken by inotify, not by polling: with the safety tick an hour away, an idle daemon does its startup scan and
/// no other, however busy the rest of the system is, and a meeting costs a handful of scans, not one per second.
#[test]
fn an_idle_daemon_does_no_full_scans_and_a_meeting_only_a_few() {
    let fx = Fixture::new("idle");
    let elsewhere = fx.dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let args = dry_run_args(&fx, "0", "0");
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(["--log-level", "debug"]);
    let mut d = Daemon::start(&all, &[]);
    d.wait_for("Starting Mattermost Status Sync Daemon", Duration::from_secs(10));
    // Three seconds of other processes opening and closing other files, and of new processes coming and going.
    let until = Instant::now() + Duration::from_secs(3);
    let mut churned = 0;
    while Instant::now() < until {
        let file = elsewhere.join(format!("f{}", churned % 8));
        std::fs::write(&file, b"x").unwrap();
        let status = Command::new("sh").arg("-c").arg("exec 3<\"$1\"; :").arg("sh").arg(&file).status().unwrap();
        assert!(status.success());
        churned += 1;
    }
    d.signal("TERM");
    d.wait_for("stopped after", Duration::from_secs(10));
    let scans = |seen: &[String]| seen.iter().filter(|l| l.contains("full scan (")).count();
    assert_eq!(
        scans(&d.seen),
        1,
        "{churned} other processes ran; the only full scan is the startup one: {:#?}",
        d.seen
    );
    assert!(d.seen.last().unwrap().contains("stopped after 1 full scans"), "{:#?}", d.seen);
    eprintln!("idle for 3 s while {churned} other processes ran: 1 full scan (startup)");

    let mut d = Daemon::start(&all, &[]);
    d.wait_for("Starting Mattermost Status Sync Daemon", Duration::from_secs(10));
    let h = open(&fx.device());
    d.wait_for("would set availability dnd", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    drop(h);
    d.wait_for("RESTORE: Status restored", Duration::from_secs(5));
    d.signal("TERM");
    d.wait_for("stopped after", Duration::from_secs(10));
    let meeting = scans(&d.seen) - 1;
    assert!(meeting <= 3, "a meeting of 2 s took {meeting} full scans besides the startup one: {:#?}", d.seen);
    eprintln!("a 2 s meeting: {meeting} full scans besides the startup one");
}

/// A process holding `device` open as user 65534.
fn hold_as_nobody(device: &Path) -> Reaped {
    Reaped::spawn(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                "exec 3<\"$1\"; exec sleep 600",
                "sh",
            ])
            .arg(device),
    )
}

/// A camera unplugged and plugged back in under a user service: the kernel creates the node 0600 root, udev opens
/// it up a moment later. The daemon (uid 65534) cannot watch the node in between; the chmod, seen on the node's
/// directory, makes it try again, so the next call is noticed through inotify and not at the safety tick an hour
/// away. Needs root (mknod, and dropping to another uid).
#[test]
fn a_replugged_camera_is_watched_again_once_udev_opens_it_up() {
    if skipped_unless_root("mknod and to run the daemon as another user") {
        return;
    }
    let fx = Fixture::new("replug");
    // The daemon and the holders run as 65534: they must reach the node.
    std::fs::set_permissions(&fx.dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let node = fx.dir.join("video0");
    std::fs::remove_file(&node).unwrap();
    mknod(&node, "0666", 3);
    let args = dry_run_args(&fx, "0", "0");
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(["--log-level", "debug"]);
    let mut d = Daemon::start_unprivileged(&all);
    d.wait_for("Starting Mattermost Status Sync Daemon", Duration::from_secs(10));
    d.wait_for("full scan (Startup", Duration::from_secs(10));

    // The first call on the original node, seen as usual.
    let h = hold_as_nobody(&node);
    d.wait_for("meeting started", Duration::from_secs(10));
    drop(h);
    d.wait_for("meeting ended", Duration::from_secs(10));

    // Unplugged, plugged back in as root's 0600 node: the daemon tries and is refused.
    let refused = format!("not watching {}", node.display());
    std::fs::remove_file(&node).unwrap();
    mknod(&node, "0600", 3);
    d.wait_for(&refused, Duration::from_secs(10));
    // udev opens it up; the user's next call starts at once.
    std::thread::sleep(Duration::from_millis(50));
    let chmod = Instant::now();
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let h = hold_as_nobody(&node);
    let started = d.wait_for_nth("meeting started", 2, Duration::from_secs(20));
    eprintln!("replug: meeting started {:?} after the chmod (start-delay 0)", started - chmod);
    assert_eq!(d.count(&format!("watching {} again", node.display())), 1, "{:#?}", d.seen);
    drop(h);
    d.wait_for_nth("meeting ended", 2, Duration::from_secs(10));
}

/// A python process that opens `path` and maps it, as a streaming V4L2 client (or PipeWire) maps its buffers; a
/// line on its stdin makes it unmap and keep the descriptor, as PipeWire does when a stream stops.
struct Streamer {
    child: Reaped,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Streamer {
    fn start(path: &Path) -> Streamer {
        let script = "import mmap,sys\nf=open(sys.argv[1],'r+b')\nm=mmap.mmap(f.fileno(),4096)\n\
                      print('mapped',flush=True)\nsys.stdin.readline()\nm.close()\nprint('unmapped',flush=True)\n\
                      sys.stdin.readline()";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "mapped");
        Streamer { child: Reaped(child), stdin, stdout }
    }

    fn comm(&self) -> String {
        self.child.comm()
    }

    /// Unmaps, keeping the device open; returns once done.
    fn stop_streaming(&mut self) {
        use std::io::Write;
        self.stdin.write_all(b"\n").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "unmapped");
    }
}

/// A holder in `require-streaming-for` that stops streaming but keeps the device open (PipeWire after the call)
/// ends the meeting on the 2 s re-check of its memory map, not at the safety tick an hour away.
#[test]
fn a_streaming_gated_holder_that_stops_streaming_ends_the_meeting() {
    let fx = Fixture::new("stream-stop");
    std::fs::write(fx.device(), vec![0u8; 4096]).unwrap();
    let mut streamer = Streamer::start(&fx.device());
    let args = dry_run_args(&fx, "0", "0");
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    let comm = streamer.comm();
    all.extend(["--require-streaming-for", &comm]);
    let mut d = Daemon::start(&all, &[]);
    d.wait_for("meeting started", Duration::from_secs(10));
    let stopped = Instant::now();
    streamer.stop_streaming();
    let ended = d.wait_for("meeting ended", Duration::from_secs(20));
    eprintln!("end of streaming: meeting ended {:?} after the unmap (end-delay 0)", ended - stopped);
    // The descriptor is still open: only the memory map told.
    assert!(std::fs::read_dir(format!("/proc/{}/fd", streamer.child.pid())).unwrap().count() > 3);
}

/// The start line counts the device nodes (not the inotify watches, which include their directories), and says
/// when there is none yet.
#[test]
fn the_start_line_counts_device_nodes_and_says_when_it_waits_for_one() {
    let fx = Fixture::new("nodes");
    std::fs::write(fx.dir.join("video1"), b"").unwrap();
    std::fs::write(fx.dir.join("notes"), b"").unwrap();
    let args = dry_run_args(&fx, "0", "0");
    let mut d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    d.wait_for("Starting Mattermost Status Sync Daemon", Duration::from_secs(10));
    assert!(
        d.seen.last().unwrap().contains(&format!("(watching {}; 2 device nodes; dry run", fx.pattern())),
        "{}",
        d.seen.last().unwrap()
    );
    drop(d);

    let empty = fx.dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let pattern = format!("{}/video*", empty.display());
    let mut d = Daemon::start(&["--dry-run", "--log", "stderr", "--interval", "3600", "--device", &pattern], &[]);
    d.wait_for("Starting Mattermost Status Sync Daemon", Duration::from_secs(10));
    let want = format!("(watching {pattern}; no device node yet, waiting for the first one to appear; dry run");
    assert!(d.seen.last().unwrap().contains(&want), "{}", d.seen.last().unwrap());
}

/// A fixture with sound nodes besides the camera, and a microphone pattern that matches the playback node too: it
/// must not count anyway. Needs root for mknod.
fn sound_nodes(fx: &Fixture) -> (PathBuf, PathBuf, String) {
    let SoundNodes { capture, playback } = SoundNodes::new(&fx.dir);
    (capture, playback, format!("{}/pcmC*", fx.dir.display()))
}

/// A microphone alone starts and ends a meeting, seen through inotify (the tick is an hour away); a playback node
/// under the same pattern never does; a camera and a microphone overlapping make one meeting, which ends only when
/// both are free.
#[test]
fn microphones_start_and_end_meetings_with_cameras_or_alone() {
    if skipped_unless_root("mknod the sound nodes") {
        return;
    }
    let fx = Fixture::new("mic");
    let (capture, playback, mics) = sound_nodes(&fx);
    let args = dry_run_args(&fx, "0", "0");
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(["--microphones", &mics, "--log-level", "debug"]);
    let mut d = Daemon::start(&all, &[]);
    let start = d.wait_for("Starting Mattermost Status Sync Daemon", Duration::from_secs(10));
    let _ = start;
    assert!(d.seen.last().unwrap().contains(&format!("; microphones {mics}; 2 device nodes")), "{:#?}", d.seen);
    d.wait_for("full scan (Startup", Duration::from_secs(10));

    // Playback: the daemon looks (a full scan on the open) and finds nothing that counts.
    let player = open(&playback);
    d.wait_for("full scan (Opened", Duration::from_secs(10));
    // A wrong "in use by" would come after the scan's line, in the same pass: the reload is logged after it.
    d.signal("HUP");
    d.wait_for("configuration reloaded", Duration::from_secs(10));
    assert_eq!(d.count("in use by"), 0, "{:#?}", d.seen);

    // Recording: a microphone alone starts the meeting, and its end ends it.
    let opened = Instant::now();
    let recorder = open(&capture);
    // Named by pid, not by name: the scan can run while the holder is still the shell that opened the node,
    // before it became `sleep`.
    let line = format!("(pid {}) on {}", recorder.pid(), capture.display());
    d.wait_for(&line, Duration::from_secs(10));
    assert!(d.seen.last().unwrap().contains("microphone in use by "), "{:#?}", d.seen);
    let started = d.wait_for("meeting started", Duration::from_secs(10));
    assert!(d.seen.last().unwrap().contains("pcmC0D0c") && !d.seen.last().unwrap().contains("pcmC0D0p"));
    d.wait_for("would set availability dnd", Duration::from_secs(10));
    let closed = Instant::now();
    drop(recorder);
    d.wait_for("microphone free", Duration::from_secs(10));
    let ended = d.wait_for("meeting ended", Duration::from_secs(10));
    eprintln!(
        "microphone: meeting started {:?} after the open, ended {:?} after the close (start-delay 0, end-delay 0)",
        started - opened,
        ended - closed
    );

    // Camera, then microphone, camera off, microphone off: one meeting.
    let camera = open(&fx.device());
    d.wait_for(&format!("(pid {}) on {}", camera.pid(), fx.device().display()), Duration::from_secs(10));
    assert!(d.seen.last().unwrap().contains("camera in use by "), "{:#?}", d.seen);
    d.wait_for_nth("meeting started", 2, Duration::from_secs(10));
    let recorder = open(&capture);
    d.wait_for(&format!("(pid {}) on {}", recorder.pid(), capture.display()), Duration::from_secs(10));
    assert!(d.seen.last().unwrap().contains("microphone in use by "), "{:#?}", d.seen);
    drop(camera);
    d.wait_for("camera free", Duration::from_secs(10));
    // A wrong end would be logged after "camera free", in the same pass: the reload, taken after that pass, is
    // logged after it.
    d.signal("HUP");
    d.wait_for("configuration reloaded", Duration::from_secs(10));
    assert_eq!(d.count("meeting ended"), 1, "the microphone keeps the meeting going: {:#?}", d.seen);
    drop(recorder);
    d.wait_for_nth("microphone free", 2, Duration::from_secs(10));
    d.wait_for_nth("meeting ended", 2, Duration::from_secs(10));
    assert_eq!(d.count("meeting started"), 2, "{:#?}", d.seen);
    drop(player);
}

/// `scan` names the kind of device, and exits 0 only when a microphone (or camera) counts.
#[test]
fn scan_says_camera_or_microphone_and_exits_0_only_when_one_counts() {
    if skipped_unless_root("mknod the sound nodes") {
        return;
    }
    let fx = Fixture::new("micscan");
    let (capture, playback, mics) = sound_nodes(&fx);
    let scan = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["scan", "--device", &fx.pattern(), "--microphones", &mics])
            .args(extra)
            .env_remove("MM_STATUS_SYNC_CONFIG")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let player = open(&playback);
    let player_line = |out: &str| out.lines().find(|l| l.contains(&player.pid().to_string())).map(str::to_owned);
    let wait_listed = |pid: u32| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !scan(&[]).1.contains(&format!("pid {pid:<8}")) {
            assert!(Instant::now() < deadline, "{pid} never held its node");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_listed(player.pid());
    let (code, out) = scan(&[]);
    assert_eq!(code, Some(1), "{out}");
    let line = player_line(&out).unwrap();
    assert!(line.contains("microphone") && line.contains("not a capture node (playback, control or timer)"), "{out}");

    let recorder = open(&capture);
    wait_listed(recorder.pid());
    let (code, out) = scan(&[]);
    assert_eq!(code, Some(0), "{out}");
    let line = out.lines().find(|l| l.contains(&format!("pid {:<8}", recorder.pid()))).unwrap();
    assert!(
        line.contains("sleep")
            && line.contains(" microphone ")
            && line.contains("pcmC0D0c")
            && line.ends_with("counted"),
        "{out}"
    );
    let (code, out) = scan(&["--ignore-processes", "sleep"]);
    assert_eq!(code, Some(1), "{out}");
    // Without microphone patterns, sound nodes are nobody's business.
    let out = Command::new(BIN).args(["scan", "--device", &fx.pattern()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no process holds a device"));

    let camera = open(&fx.device());
    wait_listed(camera.pid());
    let (_, out) = scan(&[]);
    let line = out.lines().find(|l| l.contains(&format!("pid {:<8}", camera.pid()))).unwrap();
    assert!(line.contains(" camera ") && line.ends_with("counted"), "{out}");
}

/// A holder that does not count (an ignored virtual-camera producer here) must not hide the apps that do: an app
/// opening the camera next to it is found, and when one of two apps closes, the other keeps the meeting going.
#[test]
fn a_holder_that_does_not_count_hides_no_one() {
    let fx = Fixture::new("ignored-beside");
    let producer = Reaped::spawn(
        Command::new("sh")
            .args(["-c", "exec 3<\"$1\"; exec tail -f /dev/null", "sh"])
            .arg(fx.device())
            .stdin(Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{}/comm", producer.pid())).unwrap_or_default() != "tail\n" {
        assert!(Instant::now() < deadline, "the producer never became tail");
        std::thread::sleep(Duration::from_millis(5));
    }
    let args = dry_run_args(&fx, "0", "0");
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(["--ignore-processes", "tail", "--log-level", "debug"]);
    let mut d = Daemon::start(&all, &[]);
    d.wait_for("full scan (Startup", Duration::from_secs(10));

    let first = open(&fx.device());
    d.wait_for(&format!("(pid {}) on {}", first.pid(), fx.device().display()), Duration::from_secs(20));
    assert!(d.seen.last().unwrap().contains("camera in use by "), "{:#?}", d.seen);
    d.wait_for("meeting started", Duration::from_secs(10));
    // A second app joins, then the first leaves: still in the meeting, and the second is the one in use.
    let second = open(&fx.device());
    // The second app holds the camera before the first leaves (its shell opens the node, then becomes sleep).
    support::wait_for("the second app to hold the camera", || second.comm() == "sleep").unwrap();
    drop(first);
    // On a busy machine the second app's open and the first one's close can come in one read of inotify, as
    // one wake with both set: wait for the close, whatever else came with it.
    d.wait_for("closed: true", Duration::from_secs(10));
    // The loop handles that event to the end before it takes the signal.
    d.signal("HUP");
    d.wait_for("configuration reloaded", Duration::from_secs(10));
    assert_eq!(d.count("meeting ended"), 0, "the second app still holds the camera: {:#?}", d.seen);
    drop(second);
    d.wait_for("meeting ended", Duration::from_secs(10));
    drop(producer);
}

/// SIGHUP cannot move the backup (state-dir): refused with the old configuration kept, during a meeting too.
#[test]
fn sighup_keeps_the_state_dir() {
    let fx = Fixture::new("reload-fixed");
    let conf = fx.dir.join("config.env");
    let state = |name: &str| fx.dir.join(name).to_str().unwrap().to_owned();
    let write = |state_dir: &str| std::fs::write(&conf, format!("MM_STATUS_SYNC_STATE_DIR={state_dir}\n")).unwrap();
    write(&state("a"));
    let args = dry_run_args(&fx, "0", "0");
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    let conf_s = conf.to_str().unwrap().to_owned();
    all.extend(["--config", &conf_s]);
    let mut d = Daemon::start(&all, &[]);
    d.wait_for("Starting Mattermost Status Sync Daemon", Duration::from_secs(10));

    write(&state("b"));
    d.signal("HUP");
    d.wait_for("reload rejected", Duration::from_secs(10));
    assert!(d.seen.last().unwrap().contains("state-dir cannot change while running"), "{:#?}", d.seen);
    let h = open(&fx.device());
    d.wait_for("would set availability dnd", Duration::from_secs(10));
    d.signal("HUP");
    d.wait_for("reload rejected", Duration::from_secs(10));
    drop(h);
    d.wait_for("RESTORE: Status restored", Duration::from_secs(10));
    write(&state("a"));
    d.signal("HUP");
    d.wait_for("configuration reloaded", Duration::from_secs(10));
    d.signal("TERM");
    d.wait_for("stopped after", Duration::from_secs(10));
}
