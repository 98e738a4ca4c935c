//! Proof that a warmed-up scan does not touch the heap: a counting global allocator watches `full_scan` and
//! `recheck` while a real child holds a matching file (so the holder path, `comm` and verdict code all run); and
//! that attribute events on a node the watcher may not watch yet cost no heap either.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use mm_status_sync::detect::{DeviceSet, Filter, Pattern, Scanner, Verdict, Watcher};
use mm_status_sync::sys::CountingAllocator;
use support::child::hold_open;
use support::devices::is_root;
use support::{Reaped, TempDir, wait_for};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    CountingAllocator::count(f).1
}

#[test]
fn warmed_up_full_scan_and_recheck_do_not_allocate() {
    let dir = TempDir::new("alloc");
    let camera = dir.join("video0");
    std::fs::write(&camera, [0u8; 16]).unwrap();
    let kid = hold_open(&camera, |_| {});
    let pid = kid.pid();
    wait_for("the child to become sleep", || kid.comm() == "sleep").unwrap();

    let devices = DeviceSet::new(vec![Pattern::new(&format!("{}/video*", dir.display())).unwrap()]);
    // Streaming evidence is asked for, so the maps reader runs too.
    let filter = Filter { ignore_processes: vec!["obs".into()], require_streaming_for: vec!["*".into()] };
    let mut scanner = Scanner::new().unwrap();
    scanner.full_scan(&devices, &filter);
    scanner.recheck(&devices, &filter);

    let mut seen = Vec::with_capacity(3);
    let full = allocations_in(|| {
        for _ in 0..3 {
            let stats = scanner.full_scan(&devices, &filter);
            seen.push((stats.fds, scanner.holders().len()));
        }
    });
    let recheck = allocations_in(|| {
        for _ in 0..3 {
            scanner.recheck(&devices, &filter);
        }
    });
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|&(fds, holders)| fds > 0 && holders == 1), "{seen:?}");
    let holder = &scanner.holders()[0];
    assert_eq!((holder.pid, holder.comm(), holder.verdict), (pid, "sleep", Verdict::NotStreaming));
    assert_eq!(full, 0, "allocations in 3 warmed-up full scans");
    assert_eq!(recheck, 0, "allocations in 3 warmed-up rechecks");

    // The counter works: a scanner built from scratch allocates its buffers.
    assert!(allocations_in(|| drop(Scanner::new().unwrap())) > 0);
}

/// Run by `refused_watch_retries_do_not_allocate` as uid 65534: watches the pattern in the environment (its one
/// node is root's and 0600, so the watch is refused), then, for each line on stdin, drains the events and retries,
/// counting allocations, and prints what happened. A no-op in a normal test run.
#[test]
fn refused_watch_child_entry() {
    use std::io::BufRead;
    let Ok(pattern) = std::env::var("MMSS_ALLOC_CHILD_PATTERN") else { return };
    let mut watcher = Watcher::new(&[Pattern::new(&pattern).unwrap()]).unwrap();
    println!("READY failed={}", watcher.failed());
    let stdin = std::io::stdin();
    for _ in stdin.lock().lines().map_while(Result::ok) {
        // Let the events arrive (the parent has made them already; inotify queues them at once).
        let mut ready = [false];
        mm_status_sync::sys::poll_readable(&[watcher.fd()], &mut ready, Some(Duration::from_secs(5))).unwrap();
        let ((retry, watched), allocations) = CountingAllocator::count(|| {
            let wake = watcher.read_events().unwrap();
            (wake.retry, if wake.retry { watcher.retry_failed() } else { 0 })
        });
        println!("ROUND retry={retry} watched={watched} allocations={allocations}");
    }
}

/// A replugged camera is root's and 0600 until udev opens it up: an unprivileged watcher is refused, and every
/// attribute change of the node (here 200 mode changes) makes it try again, without allocating; once the node
/// is opened up, the retry succeeds. Needs root to create the node and drop to uid 65534.
#[test]
fn refused_watch_retries_do_not_allocate() {
    use std::io::{BufRead, BufReader, Write};
    if !is_root() {
        eprintln!("SKIPPED: not root: cannot make a node another user may not watch");
        return;
    }
    let dir = TempDir::new("alloc-watch");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let node = dir.join("video0");
    std::fs::write(&node, b"").unwrap();
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut child = Reaped(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "refused_watch_child_entry", "--nocapture", "--test-threads=1"])
            .env("MMSS_ALLOC_CHILD_PATTERN", format!("{}/video*", dir.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut next = |prefix: &str| {
        lines
            .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| panic!("no {prefix} line"))
    };
    assert_eq!(next("READY "), "failed=1");
    // Permission changes that still leave the node closed to others, as udev's first rules may make.
    for i in 0..200 {
        let mode = if i % 2 == 0 { 0o400 } else { 0o600 };
        std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    writeln!(stdin, "go").unwrap();
    assert_eq!(next("ROUND "), "retry=true watched=0 allocations=0");
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    writeln!(stdin, "go").unwrap();
    let round = next("ROUND ");
    assert!(round.starts_with("retry=true watched=1 "), "{round}");
    drop(stdin);
}
