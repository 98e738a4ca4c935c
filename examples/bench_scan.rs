//! What a full `/proc` scan costs, against the alternatives, on a loaded system built on the spot: P child processes
//! holding F descriptors each, a few of them on a fake camera file. Times our `Scanner::full_scan`, a naive
//! `std::fs` scan, `fuser` and `lsof` in the same run and prints medians, minimums, ratios and our heap allocations.
//!
//! `cargo run --release --example bench_scan -- --procs 1000 --fds 30 --rounds 15`

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use argh::FromArgs;
use mm_status_sync::detect::{DeviceSet, Filter, Pattern, Scanner};
use mm_status_sync::sys::CountingAllocator;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Benchmark full /proc scans for camera holders.
#[derive(FromArgs)]
struct Args {
    /// child processes to start (default 1000)
    #[argh(option, default = "1000")]
    procs: usize,
    /// descriptors each child holds, stdio included (default 30, at least 4)
    #[argh(option, default = "30")]
    fds: usize,
    /// children among them that hold the fake camera (default 1)
    #[argh(option, default = "1")]
    holders: usize,
    /// timed rounds per scanner (default 15)
    #[argh(option, default = "15")]
    rounds: usize,
}

/// The children, killed and reaped on drop. Each child's stdin is a pipe from us and it runs `cat`, so if this
/// process dies without unwinding (the release profile aborts on panic), every child sees end of file and exits.
struct Children {
    kids: Vec<Child>,
}

impl Drop for Children {
    fn drop(&mut self) {
        for kid in &mut self.kids {
            let _ = kid.kill();
        }
        for kid in &mut self.kids {
            let _ = kid.wait();
        }
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn main() {
    let args: Args = argh::from_env();
    if let Err(e) = run(&args) {
        eprintln!("bench_scan: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.fds < 4 || args.holders > args.procs || args.rounds == 0 {
        return Err("need --fds >= 4, --holders <= --procs and --rounds >= 1".into());
    }
    let scratch = Scratch(std::env::temp_dir().join(format!("mmss-bench-{}", std::process::id())));
    fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let dir = scratch.0.canonicalize().map_err(|e| e.to_string())?;
    let camera = dir.join("video0");
    let library = dir.join("libfake-shared-object.so.1");
    for path in [&camera, &library] {
        fs::write(path, b"").map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    }

    let started = Instant::now();
    let children = spawn_children(args, &camera, &library)?;
    let holder_pids: HashSet<u32> = children.kids[..args.holders].iter().map(Child::id).collect();
    println!(
        "{} children x {} descriptors ({} on the camera) ready in {:.1} s",
        args.procs,
        args.fds,
        args.holders,
        started.elapsed().as_secs_f64()
    );

    let devices = DeviceSet::new(vec![Pattern::new(&format!("{}/video*", dir.display())).map_err(|e| e.to_string())?]);
    let filter = Filter::default();
    let mut scanner = Scanner::new().map_err(|e| e.to_string())?;
    let warm = scanner.full_scan(&devices, &filter);
    println!("one scan sees {} processes, {} descriptors, {} skipped", warm.processes, warm.fds, warm.skipped);
    check("ours", &holder_pids, scanner.holders().iter().map(|h| h.pid).collect())?;
    check("naive", &holder_pids, naive_scan(&devices))?;

    let have_fuser = installed("fuser");
    let have_lsof = installed("lsof");
    if have_fuser {
        check("fuser", &holder_pids, run_tool("fuser", &[], &camera)?)?;
    }
    if have_lsof {
        check("lsof", &holder_pids, run_tool("lsof", &["-t", "-w"], &camera)?)?;
    }

    let mut ours = Vec::new();
    let mut ours_allocs = 0;
    let mut naive = Vec::new();
    let mut naive_allocs = 0;
    let mut fuser = Vec::new();
    let mut lsof = Vec::new();
    for _ in 0..args.rounds {
        let (elapsed, allocs) = timed(|| {
            scanner.full_scan(&devices, &filter);
        });
        ours.push(elapsed);
        ours_allocs += allocs;
        let (elapsed, allocs) = timed(|| {
            naive_scan(&devices);
        });
        naive.push(elapsed);
        naive_allocs += allocs;
        if have_fuser {
            fuser.push(timed(|| drop(run_tool("fuser", &[], &camera))).0);
        }
        if have_lsof {
            lsof.push(timed(|| drop(run_tool("lsof", &["-t", "-w"], &camera))).0);
        }
    }

    let reference = median(&mut ours);
    println!();
    println!("{:<42} {:>10} {:>10} {:>9} {:>14}", "scanner", "median", "min", "vs ours", "allocs/scan");
    let row = |name: &str, times: &mut Vec<Duration>, allocs: Option<usize>| {
        let med = median(times);
        let min = times.iter().min().copied().unwrap_or_default();
        let allocs = allocs.map_or_else(|| "-".to_owned(), |a| (a / args.rounds).to_string());
        println!(
            "{name:<42} {:>8.1}ms {:>8.1}ms {:>8.2}x {allocs:>14}",
            ms(med),
            ms(min),
            med.as_secs_f64() / reference.as_secs_f64()
        );
    };
    row("ours: getdents64 + readlinkat, no alloc", &mut ours, Some(ours_allocs));
    row("naive: std::fs read_dir + read_link", &mut naive, Some(naive_allocs));
    if have_fuser {
        row("fuser <device> (incl. process start)", &mut fuser, None);
    } else {
        println!("fuser: not installed, skipped");
    }
    if have_lsof {
        row("lsof -t -w <device> (incl. process start)", &mut lsof, None);
    } else {
        println!("lsof: not installed, skipped");
    }
    drop(children);
    Ok(())
}

/// Starts the children: each is `bash` that opens its descriptors and then becomes `cat` reading our pipe.
fn spawn_children(args: &Args, camera: &Path, library: &Path) -> Result<Children, String> {
    // stdin is the pipe, stdout and stderr /dev/null; 3 is the camera or the library; the rest alternate. Every
    // other inherited descriptor is closed first: bash mishandles `exec N<file` for N >= 10 when stray descriptors
    // from the parent's environment sit in that range.
    let mut script = format!(
        "ulimit -Sn {} 2>/dev/null; for f in /proc/$$/fd/*; do n=${{f##*/}}; if [ \"$n\" -gt 2 ]; then eval \"exec $n<&-\"; \
         fi; done; exec 3<\"$1\"",
        args.fds + 16
    );
    for fd in 4..args.fds {
        let source = if fd % 2 == 0 { "/dev/null" } else { "\"$2\"" };
        script.push_str(&format!(" {fd}<{source}"));
    }
    script.push_str("; exec cat");
    let mut children = Children { kids: Vec::with_capacity(args.procs) };
    for i in 0..args.procs {
        let first = if i < args.holders { camera } else { library };
        let kid = Command::new("bash")
            .args(["-c", &script, "bash"])
            .arg(first)
            .arg(library)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start child {i}: {e}"))?;
        children.kids.push(kid);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for kid in &children.kids {
        let comm = format!("/proc/{}/comm", kid.id());
        while fs::read_to_string(&comm).map_err(|e| format!("child {} died: {e}", kid.id()))? != "cat\n" {
            if Instant::now() > deadline {
                return Err(format!("child {} did not start in time", kid.id()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let held = fs::read_dir(format!("/proc/{}/fd", kid.id())).map_err(|e| e.to_string())?.count();
        if held != args.fds {
            return Err(format!("child {} holds {held} descriptors instead of {}", kid.id(), args.fds));
        }
    }
    Ok(children)
}

/// The straightforward scan with the standard library, allocating paths and directory iterators per entry.
fn naive_scan(devices: &DeviceSet) -> HashSet<u32> {
    let me = std::process::id();
    let mut holders = HashSet::new();
    let Ok(procs) = fs::read_dir("/proc") else { return holders };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                if devices.matches(target.as_os_str().as_bytes()) {
                    holders.insert(pid);
                }
            }
        }
    }
    holders
}

fn installed(tool: &str) -> bool {
    Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Runs `tool args... device` and returns the pids it printed.
fn run_tool(tool: &str, args: &[&str], device: &Path) -> Result<HashSet<u32>, String> {
    let out = Command::new(tool)
        .args(args)
        .arg(device)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect())
}

fn check(name: &str, want: &HashSet<u32>, got: HashSet<u32>) -> Result<(), String> {
    if &got == want { Ok(()) } else { Err(format!("{name} found holders {got:?}, expected {want:?}")) }
}

fn timed(f: impl FnOnce()) -> (Duration, usize) {
    let started = Instant::now();
    let ((), allocs) = CountingAllocator::count(f);
    (started.elapsed(), allocs)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
