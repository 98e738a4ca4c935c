//! Proof that a warmed-up scan does not touch the heap: a counting global allocator watches `full_scan` and
//! `recheck` while a real child holds a matching file (so the holder path, `comm` and verdict code all run).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mm_status_sync::detect::{DeviceSet, Filter, Pattern, Scanner, Verdict};
use mm_status_sync::sys::CountingAllocator;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    CountingAllocator::count(f).1
}

struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn warmed_up_full_scan_and_recheck_do_not_allocate() {
    let dir = std::env::temp_dir().canonicalize().unwrap().join(format!("mmss-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let camera = dir.join("video0");
    std::fs::write(&camera, [0u8; 16]).unwrap();
    let kid = Kid(Command::new("sh")
        .args(["-c", "exec 3<\"$1\"; exec sleep 30", "sh"])
        .arg(&camera)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap());
    let pid = kid.0.id();
    let comm = format!("/proc/{pid}/comm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&comm).unwrap_or_default() != "sleep\n" {
        assert!(Instant::now() < deadline, "child never became sleep");
        std::thread::sleep(Duration::from_millis(2));
    }

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
    std::fs::remove_dir_all(&dir).unwrap();
}
