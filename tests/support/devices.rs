//! Real device nodes and real holders for them: character nodes made with mknod(1) (which needs root, so tests
//! ask `is_root` first and say when they skip), ALSA-style sound nodes, and small C programs that hold a node the
//! way some applications do (from a thread after the main thread exited, or after making themselves
//! non-dumpable), built with the C compiler every build of this crate already needs (ring compiles C).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::child::Reaped;

/// Whether the tests run as root (CI does): mknod and dropping to another uid need it.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").unwrap().contains("\nUid:\t0\t")
}

/// For a test that needs root: when not root, says so (`SKIPPED: needs root to <what>`) and returns true, so the
/// test returns at once, never passing quietly.
pub fn skipped_unless_root(what: &str) -> bool {
    let skipped = !is_root();
    if skipped {
        eprintln!("SKIPPED: needs root to {what}");
    }
    skipped
}

/// `mknod -m MODE PATH c 1 MINOR`, its directory made first: a character device node like `/dev/null` (minor 3),
/// standing in for a camera or a microphone. Returns the path.
pub fn mknod(path: &Path, mode: &str, minor: u32) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let ok = Command::new("mknod")
        .args(["-m", mode])
        .arg(path)
        .args(["c", "1", &minor.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mknod {}", path.display());
    path.to_path_buf()
}

/// ALSA's names for one card's nodes, made in `dir` as real character devices (mode 0666).
pub struct SoundNodes {
    /// `pcmC0D0c`, a capture node: a microphone.
    pub capture: PathBuf,
    /// `pcmC0D0p`, a playback node: never a microphone.
    pub playback: PathBuf,
}

impl SoundNodes {
    pub fn new(dir: &Path) -> SoundNodes {
        SoundNodes {
            capture: mknod(&dir.join("pcmC0D0c"), "0666", 3),
            playback: mknod(&dir.join("pcmC0D0p"), "0666", 3),
        }
    }
}

/// Holds the node named by its first argument from a second thread while the main thread has exited
/// (`pthread_exit` in `main`): `/proc/PID/fd` then lists nothing, and only `/proc/PID/task/TID/fd` shows the
/// descriptor. With a second argument it also maps the node, as a streaming client does.
const THREAD_HOLDER: &str = "#include <fcntl.h>\n#include <pthread.h>\n#include <sys/mman.h>\n#include <unistd.h>\n\
    static void *hold(void *arg) { (void)arg; sleep(3600); return 0; }\n\
    int main(int argc, char **argv) { int fd; if (argc < 2 || (fd = open(argv[1], O_RDONLY)) < 0) return 1;\n\
    if (argc > 2 && mmap(0, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED) return 1;\n\
    pthread_t t; pthread_create(&t, 0, hold, 0); pthread_exit(0); }\n";

/// Opens the node named by its first argument, makes itself non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`, as hardened
/// applications do), says `ready` and sleeps.
const HARDENED_HOLDER: &str = "#include <fcntl.h>\n#include <sys/prctl.h>\n#include <unistd.h>\n\
    int main(int argc, char **argv) { if (argc < 2 || open(argv[1], O_RDONLY) < 0) return 1;\n\
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return 1; if (write(1, \"ready\\n\", 6) != 6) return 1;\n\
    sleep(3600); return 0; }\n";

/// Builds `THREAD_HOLDER` in `dir`; returns the program's path.
pub fn thread_holder(dir: &Path) -> PathBuf {
    build_c(dir, "holder", THREAD_HOLDER)
}

/// Builds `HARDENED_HOLDER` in `dir`; returns the program's path.
pub fn hardened_holder(dir: &Path) -> PathBuf {
    build_c(dir, "hardened", HARDENED_HOLDER)
}

/// Compiles `source` into `dir/name` with `$CC` (or `cc`).
fn build_c(dir: &Path, name: &str, source: &str) -> PathBuf {
    let source_path = dir.join(format!("{name}.c"));
    std::fs::write(&source_path, source).unwrap();
    let program = dir.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc).arg("-o").arg(&program).arg(&source_path).arg("-pthread").status().unwrap();
    assert!(built.success(), "{cc} could not build {name}");
    program
}

/// Waits for the state a thread holder is there for: its main thread gone (a zombie leader), so the process's own
/// fd directory is empty to root and unreadable (EACCES) to its unprivileged owner.
pub fn wait_main_thread_exited(holder: &Reaped) {
    let status = format!("/proc/{}/status", holder.pid());
    super::wait_for(&format!("the main thread of {status} to exit"), || {
        std::fs::read_to_string(&status).unwrap_or_default().contains("\nState:\tZ")
    })
    .unwrap();
}
