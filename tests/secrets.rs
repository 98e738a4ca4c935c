//! The secrets audit: the token never shows in a log line at any level, an error, `config` or `check`
//! output, the state file, argv, or a hook's environment; the state file is 0600; a token file others can read is
//! warned about; plain http is refused unless the address is a loopback one. The real binary against the fake
//! server, with a random token searched for whole, in halves, as `Bearer <token>` and in base64.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use support::daemon_run::{Daemon, Scene};
use support::{BIN, EchoStyle, Fault, FaultScope, in_meeting, wait_for};

// ---------------------------------------------------------------------------------------------------------------
// The token and the forms it could leak in

/// 26 random lowercase letters and digits, the shape of a real Mattermost token (and unlike anything else the
/// daemon prints, so a hit is a leak).
fn random_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed) << 48 | 1;
    (0..26)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            b"abcdefghijklmnopqrstuvwxyz0123456789"[(x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % 36] as char
        })
        .collect()
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 without padding.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    bytes
        .chunks(3)
        .flat_map(|c| {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            (0..=c.len()).map(move |i| alphabet[(n >> (18 - 6 * i) & 63) as usize] as char)
        })
        .collect()
}

/// Every form the token could leak in: itself, each half (a line cut in the middle), `Bearer <token>`, and the
/// part of its base64 that any base64 text holding the token contains, for each of the three alignments, in the
/// standard and the URL-safe alphabet.
fn token_forms(token: &str) -> Vec<String> {
    let half = token.len() / 2;
    let mut forms =
        vec![token.to_owned(), token[..half].to_owned(), token[half..].to_owned(), format!("Bearer {token}")];
    for skip in 0..3 {
        let aligned = &token.as_bytes()[skip..skip + (token.len() - skip) / 3 * 3];
        forms.push(base64(aligned, STD));
        forms.push(base64(aligned, URL));
    }
    forms
}

/// The first form of the token found in `text`.
fn find_token(token: &str, text: &str) -> Option<String> {
    token_forms(token).into_iter().find(|form| text.contains(form.as_str()))
}

#[track_caller]
fn assert_no_token(token: &str, what: &str, text: &str) {
    if let Some(form) = find_token(token, text) {
        panic!("{what} holds the token as {form:?}:\n{text}");
    }
}

#[test]
fn token_forms_find_the_token_however_it_is_written() {
    let token = random_token();
    assert_eq!(token.len(), 26);
    assert!(token.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert_ne!(token, random_token());
    assert_eq!(base64(b"Bearer abc", STD), "QmVhcmVyIGFiYw==".trim_end_matches('='));
    let leaks = [
        format!("x {token} y"),
        format!("Authorization: Bearer {token}"),
        base64(token.as_bytes(), STD),
        format!("cut at 960 bytes: {}...", &token[..14]),
        base64(format!("Authorization: Bearer {token}").as_bytes(), STD),
        base64(format!(":{token}").as_bytes(), STD),
        base64(format!("ab{token}").as_bytes(), STD),
    ];
    for leak in leaks {
        assert!(find_token(&token, &leak).is_some(), "{leak:?} not recognised as holding {token}");
    }
    assert_eq!(find_token(&token, "API ERROR: GET /api/v4/users/me: 401 Bearer <redacted>"), None);
    assert_eq!(find_token(&token, &random_token()), None, "another token is not this one");
}

// ---------------------------------------------------------------------------------------------------------------
// The environment of one test: a fake server knowing our token, a device file, a state directory

/// Where the daemon gets the token from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenVia {
    /// `--token-file` (mode 0600).
    File,
    /// `MM_STATUS_SYNC_TOKEN` in the daemon's environment.
    Environment,
    /// `MM_STATUS_SYNC_TOKEN=` in the `--config` file.
    ConfigFile,
}

const ALL_VIAS: [TokenVia; 3] = [TokenVia::File, TokenVia::Environment, TokenVia::ConfigFile];

/// A scene whose fake server knows a random token, and the ways of giving the daemon that token.
struct Env {
    scene: Scene,
    token: String,
}

impl std::ops::Deref for Env {
    type Target = Scene;

    fn deref(&self) -> &Scene {
        &self.scene
    }
}

impl Env {
    fn new(name: &str) -> Env {
        let scene = Scene::new(&format!("secrets-{name}"));
        let token = random_token();
        scene.fake.set_token(&token);
        scene.fake.set_status("online", false, 0);
        Env { scene, token }
    }

    fn write_token_file(&self, mode: u32) -> PathBuf {
        let path = self.path("token");
        // Removed first: a read-only file left by an earlier call could not be written again without root.
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, format!("{}\n", self.token)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// The config file, with the token when `via` says so and `extra` lines.
    fn write_config(&self, via: TokenVia, extra: &str) -> PathBuf {
        let path = self.path("config.env");
        let token_line = if via == TokenVia::ConfigFile {
            format!("MM_STATUS_SYNC_TOKEN=\"{}\"\n", self.token)
        } else {
            String::new()
        };
        std::fs::write(&path, format!("# test configuration\n{token_line}{extra}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// The binary with `url`, our state directory and device, no token, and nothing from the test's own
    /// environment.
    fn base_command(&self, url: &str) -> Command {
        let mut cmd = self.bare_command(&[]);
        cmd.args(["--url", url]);
        cmd
    }

    /// The binary talking to our server with the token given as `via` says.
    fn command(&self, via: TokenVia, config_extra: &str) -> Command {
        self.command_url(via, &self.fake.url(), config_extra)
    }

    fn command_url(&self, via: TokenVia, url: &str, config_extra: &str) -> Command {
        let mut cmd = self.base_command(url);
        cmd.args(["--config", self.write_config(via, config_extra).to_str().unwrap()]);
        match via {
            TokenVia::File => {
                cmd.args(["--token-file", self.write_token_file(0o600).to_str().unwrap()]);
            }
            TokenVia::Environment => {
                cmd.env("MM_STATUS_SYNC_TOKEN", &self.token);
            }
            TokenVia::ConfigFile => {}
        }
        cmd
    }

    /// The daemon at debug level.
    fn daemon(&self, via: TokenVia, config_extra: &str, extra: &[&str]) -> Daemon {
        self.daemon_from(self.command(via, config_extra), extra)
    }

    fn daemon_from(&self, mut cmd: Command, extra: &[&str]) -> Daemon {
        cmd.args(["--log", "stderr", "--log-level", "debug", "--interval", "3600", "--start-delay", "0"])
            .args(["--end-delay", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        self.spawn(cmd).unwrap()
    }

    /// One whole meeting: the status is set, then put back and the backup deleted (the n-th time).
    fn meeting_cycle(&self, d: &Daemon, restores_so_far: &mut usize) {
        let camera = self.open_camera();
        self.wait_state("meeting set", in_meeting).unwrap();
        drop(camera);
        self.wait_state("restored", |s| s.status == "online" && s.custom_status.is_none()).unwrap();
        *restores_so_far += 1;
        d.wait_log_count("backup deleted", *restores_so_far).unwrap();
    }

    /// Runs the binary to its end with `args`; stdout and stderr together.
    fn run(&self, mut cmd: Command, args: &[&str]) -> (Option<i32>, String) {
        let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code(), text(&out))
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A NUL-separated /proc file as text, NULs as spaces.
fn proc_text(pid: u32, file: &str) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
    String::from_utf8_lossy(&bytes).replace('\0', " ")
}

// ---------------------------------------------------------------------------------------------------------------
// Log lines

/// Debug level across meetings, a reload, errors of every kind (the server's own 401 and 403, an HTML 500, a body
/// that is not JSON, and a proxy that reflects the request headers, `Authorization` included, in three shapes)
/// and SIGTERM: the log never holds the token, although the server did receive and echo it.
#[test]
fn the_log_at_debug_level_never_shows_the_token_through_meetings_reload_errors_and_sigterm() {
    let env = Env::new("log");
    let d = env.daemon(TokenVia::File, "", &[]);
    let mut restores = 0;
    env.meeting_cycle(&d, &mut restores);

    // A reload that changes the message; the token file is read again.
    env.write_config(TokenVia::File, "MM_STATUS_SYNC_MEETING_MESSAGE=\" [On a call]\"\n");
    d.signal("HUP");
    d.wait_log_count("configuration reloaded", 1).unwrap();
    let camera = env.open_camera();
    env.wait_state("new message", |s| s.custom_status.as_ref().is_some_and(|c| c.text == "[On a call]")).unwrap();
    drop(camera);
    env.wait_state("restored", |s| s.status == "online" && s.custom_status.is_none()).unwrap();
    restores += 1;
    d.wait_log_count("backup deleted", restores).unwrap();
    env.write_config(TokenVia::File, "");
    d.signal("HUP");
    d.wait_log_count("configuration reloaded", 2).unwrap();

    // The token is wrong for the server (Mattermost's own 401 path); auth errors back off 300 s, so a reload
    // (which retries at once) ends each of them.
    let mut reloads = 2;
    let mut auth_error = |env: &Env, marker: &str, arm: &dyn Fn(), disarm: &dyn Fn()| {
        arm();
        let camera = env.open_camera();
        d.wait_log_count(marker, 1).unwrap();
        disarm();
        d.signal("HUP");
        reloads += 1;
        d.wait_log_count("configuration reloaded", reloads).unwrap();
        env.wait_state("meeting set after the reload", in_meeting).unwrap();
        drop(camera);
        env.wait_state("restored", |s| s.status == "online" && s.custom_status.is_none()).unwrap();
        restores += 1;
        d.wait_log_count("backup deleted", restores).unwrap();
    };
    let other_token = random_token();
    auth_error(&env, "401 api.context.session_expired.app_error", &|| env.fake.set_token(&other_token), &|| {
        env.fake.set_token(&env.token)
    });
    auth_error(
        &env,
        "403 api.context.permissions.app_error",
        &|| env.fake.set_fault(Fault::app_error(403), FaultScope::all().times(1)),
        &|| env.fake.clear_faults(),
    );

    // Errors retried after 2 s by themselves: at the start of a meeting, then at its end.
    let echo = |code, style| Fault::EchoRequestHeaders { code, style };
    let retried: [(Fault, &str); 5] = [
        (Fault::html(500), "500 internal server error"),
        (Fault::MalformedJson, "unexpected response"),
        (
            echo(400, EchoStyle::AuthorizationLine),
            "400 bad request: bad request: unexpected header Authorization: Bearer <redacted>",
        ),
        (echo(400, EchoStyle::AppErrorMessage), "400 fake.proxy.headers_rejected: Request rejected by the proxy"),
        (echo(431, EchoStyle::HeaderLines), "431 request header fields too large"),
    ];
    for (fault, marker) in &retried {
        let before = d.count(marker);
        env.fake.set_fault(fault.clone(), FaultScope::all().times(1));
        let camera = env.open_camera();
        d.wait_log_count(marker, before + 1).unwrap();
        env.wait_state("meeting set after the retry", in_meeting).unwrap();
        env.fake.set_fault(fault.clone(), FaultScope::on("PUT", "/api/v4/users").times(1));
        drop(camera);
        d.wait_log_count(marker, before + 2).unwrap();
        env.wait_state("restored after the retry", |s| s.status == "online" && s.custom_status.is_none()).unwrap();
        restores += 1;
        d.wait_log_count("backup deleted", restores).unwrap();
    }

    // SIGTERM in a meeting puts the status back and says so.
    let sets = d.count("meeting status set");
    let _camera = env.open_camera();
    env.wait_state("meeting set", in_meeting).unwrap();
    d.wait_log_count("meeting status set", sets + 1).unwrap();
    let (code, log) = d.stop_with_log();
    assert_eq!(code, Some(0));
    let after = env.fake.state();
    assert!(after.status == "online" && after.custom_status.is_none(), "SIGTERM restored: {after:#?}");
    assert_eq!(log.matches("backup deleted").count(), restores + 1);

    assert_no_token(&env.token, "the debug log", &log);
    assert!(log.contains("DEBUG: "), "debug lines were logged:\n{log}");
    assert!(log.contains("stopping: putting the previous status back first"), "{log}");
    // Not vacuous: the daemon sent the token, and the echoing proxy sent it back each time.
    let calls = env.fake.calls();
    let bearer = format!("Bearer {}", env.token);
    assert!(calls.iter().all(|c| c.header("authorization") == Some(bearer.as_str())), "every call authenticated");
    let echoed = calls.iter().filter(|c| c.fault.as_deref().is_some_and(|f| f.starts_with("EchoRequestHeaders")));
    let echoed: Vec<_> = echoed.collect();
    assert_eq!(echoed.len(), 6, "two echoes of each shape");
    assert!(echoed.iter().all(|c| c.response_body.contains(&bearer)), "the server echoed the token");
    eprintln!(
        "debug log: {} lines ({} DEBUG, {} API ERROR), {} calls to the server, {} echoed the token back; none of {} \
         token forms found",
        log.lines().count(),
        log.matches("DEBUG: ").count(),
        log.matches("API ERROR").count(),
        calls.len(),
        echoed.len(),
        token_forms(&env.token).len()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// argv, environments and hooks

/// A hook command that records its own argv and environment, and the daemon's (its parent's) argv and
/// environment, read while the daemon runs.
fn recording_hook(dir: &Path, event: &str) -> String {
    let out = dir.join(format!("hook-{event}")).display().to_string();
    format!(
        "out='{out}'; printf '%s\\n' \"$0\" \"$@\" > \"$out.argv\"; tr '\\000' ' ' < /proc/$$/cmdline >> \"$out.argv\"; \
         env > \"$out.env\"; tr '\\000' '\\n' < /proc/$$/environ > \"$out.self-environ\"; echo $PPID > \"$out.ppid\"; \
         tr '\\000' ' ' < /proc/$PPID/cmdline > \"$out.daemon-cmdline\"; \
         tr '\\000' '\\n' < /proc/$PPID/environ > \"$out.daemon-environ\"; ls -l /proc/$$/fd > \"$out.fds\"; touch \"$out.done\""
    )
}

fn wait_file(path: &Path) {
    wait_for(&format!("{}", path.display()), || path.exists()).unwrap();
}

/// For each way of giving the token: the daemon's argv never holds it, its environment only when the user put it
/// there, and the on-meeting-start/end hooks see it neither in their argv nor their environment.
#[test]
fn argv_environments_and_hooks_never_see_the_token() {
    for via in ALL_VIAS {
        let env = Env::new(&format!("hooks-{via:?}"));
        let (start, end) = (recording_hook(&env.dir, "start"), recording_hook(&env.dir, "end"));
        let d = env.daemon(via, "", &["--on-meeting-start", &start, "--on-meeting-end", &end]);
        let own_cmdline = proc_text(d.pid(), "cmdline");
        let own_environ = proc_text(d.pid(), "environ");
        assert!(own_cmdline.contains("--on-meeting-start"), "{own_cmdline}");
        assert_no_token(&env.token, &format!("{via:?}: the daemon's argv"), &own_cmdline);
        let token_var = format!("MM_STATUS_SYNC_TOKEN={}", env.token);
        if via == TokenVia::Environment {
            assert!(own_environ.contains(&token_var), "the user's own choice: the daemon's environment has it");
        } else {
            assert_no_token(&env.token, &format!("{via:?}: the daemon's environment"), &own_environ);
        }

        // Descriptors this test itself holds open without close-on-exec (cargo's jobserver pipe) pass through the
        // daemon to its children like any inherited descriptor; they are not the daemon's.
        let ours: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|t| t.display().to_string())
            .collect();
        let camera = env.open_camera();
        env.wait_state("meeting set", in_meeting).unwrap();
        wait_file(&env.path("hook-start.done"));
        drop(camera);
        env.wait_state("restored", |s| s.status == "online" && s.custom_status.is_none()).unwrap();
        wait_file(&env.path("hook-end.done"));
        d.wait_log_count("backup deleted", 1).unwrap();

        for event in ["start", "end"] {
            let read = |suffix: &str| std::fs::read_to_string(env.path(&format!("hook-{event}.{suffix}"))).unwrap();
            let what = |suffix: &str| format!("{via:?}: the {event} hook's {suffix}");
            assert_eq!(read("ppid").trim(), d.pid().to_string(), "the hook's parent is the daemon");
            let argv = read("argv");
            assert!(argv.contains("/bin/sh -c out="), "{argv}");
            assert_no_token(&env.token, &what("argv"), &argv);
            let hook_env = read("env");
            assert!(hook_env.contains(&format!("MM_STATUS_SYNC_EVENT={event}")), "{hook_env}");
            assert!(!hook_env.contains("MM_STATUS_SYNC_TOKEN"), "{}: {hook_env}", what("env"));
            assert_no_token(&env.token, &what("env"), &hook_env);
            assert_no_token(&env.token, &what("self-environ"), &read("self-environ"));
            // No descriptor of the daemon (a connection to the server, the state file) reaches the hook.
            let fds = read("fds");
            let inherited: Vec<&str> = fds
                .lines()
                .filter(|l| l.contains("->") && !l.ends_with("/dev/null") && !l.contains(".fds")) // the listing's own output
                .filter(|l| !ours.iter().any(|t| l.ends_with(&format!("-> {t}"))))
                .collect();
            assert!(inherited.is_empty(), "{}: {fds}", what("descriptors"));
            let daemon_cmdline = read("daemon-cmdline");
            assert_eq!(daemon_cmdline, own_cmdline, "the hook read the daemon's argv");
            assert_no_token(&env.token, &what("view of the daemon's argv"), &daemon_cmdline);
            if via != TokenVia::Environment {
                assert_no_token(&env.token, &what("view of the daemon's environment"), &read("daemon-environ"));
            }
        }
        let (code, log) = d.stop_with_log();
        assert_eq!(code, Some(0));
        assert_no_token(&env.token, &format!("{via:?}: the debug log"), &log);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The state file

/// What a watcher of the state directory saw while the daemon wrote its backups.
#[derive(Default)]
struct Sightings {
    /// `(name, mode)` of every `state.json*` entry seen.
    entries: Vec<(String, u32)>,
    temp_files: usize,
    temp_contents: Vec<String>,
}

/// Polls the directory as fast as it can until `stop`: the temp file lives for microseconds, so seeing it is
/// luck; whatever is seen is checked.
fn watch_state_dir(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Sightings> {
    std::thread::spawn(move || {
        let mut seen = Sightings::default();
        while !stop.load(Ordering::Relaxed) {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
                if name.contains(".tmp-") {
                    seen.temp_files += 1;
                    if let Ok(content) = std::fs::read_to_string(entry.path()) {
                        seen.temp_contents.push(content);
                    }
                }
                if seen.entries.last().is_none_or(|(n, m)| *n != name || *m != meta.permissions().mode() & 0o7777) {
                    seen.entries.push((name, meta.permissions().mode() & 0o7777));
                }
            }
        }
        seen
    })
}

/// Under umask 000 (nothing taken away from the modes the daemon asks for): the state directory it creates is
/// 0700, the backup and every temp file seen are 0600, and none holds the token.
#[test]
fn the_state_file_and_its_temp_file_are_0600_and_hold_no_token() {
    let env = Env::new("state");
    let state_dir = env.path("state/created-by-the-daemon");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 000; exec \"$0\" \"$@\"", BIN]);
    cmd.env_remove("MM_STATUS_SYNC_CONFIG").env_remove("MM_STATUS_SYNC_TOKEN_FILE");
    cmd.env("MM_STATUS_SYNC_TOKEN", &env.token);
    cmd.args(["--url", &env.fake.url(), "--state-dir", state_dir.to_str().unwrap()]);
    cmd.args(["--device", &format!("{}/video*", env.dir.display())]);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_state_dir(state_dir.clone(), stop.clone());
    let d = env.daemon_from(cmd, &[]);
    let backup = state_dir.join("state.json");
    let mut restores = 0;
    for _ in 0..5 {
        let camera = env.open_camera();
        env.wait_state("meeting set", in_meeting).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&backup), 0o600, "the backup");
        assert_eq!(mode(&state_dir), 0o700, "the state directory");
        let content = std::fs::read_to_string(&backup).unwrap();
        assert!(content.contains("\"version\""), "{content}");
        assert_no_token(&env.token, "the backup", &content);
        drop(camera);
        env.wait_state("restored", |s| s.status == "online" && s.custom_status.is_none()).unwrap();
        restores += 1;
        d.wait_log_count("backup deleted", restores).unwrap();
    }
    let (code, log) = d.stop_with_log();
    assert_eq!(code, Some(0));
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    for (name, mode) in &seen.entries {
        assert_eq!(*mode, 0o600, "{name} was seen with mode {mode:o}");
    }
    assert!(seen.entries.iter().any(|(n, _)| n == "state.json"), "the watcher saw the backup");
    for content in &seen.temp_contents {
        assert_no_token(&env.token, "a temp file", content);
    }
    let left: Vec<_> = std::fs::read_dir(&state_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    // Only the device's instance id stays: its name among the user's devices, kept for good.
    assert_eq!(left, ["instance"], "nothing else left behind");
    let instance = std::fs::read_to_string(state_dir.join("instance")).unwrap();
    assert_no_token(&env.token, "the instance id", &instance);
    assert_eq!(instance.trim().len(), 26, "{instance}");
    eprintln!(
        "state dir watcher: {} distinct (name, mode) sightings, temp file seen {} times ({} read)",
        seen.entries.len(),
        seen.temp_files,
        seen.temp_contents.len()
    );
    assert_no_token(&env.token, "the debug log", &log);
}

// ---------------------------------------------------------------------------------------------------------------
// config, check, restore and bad input

/// `config`, `config --keys`, `check` (fine, wrong token, proxy echoing the token, no server), `restore` and an
/// invalid token, for each way of giving the token: no output shows it, while the output shows the token was
/// found.
#[test]
fn config_check_and_errors_never_print_the_token() {
    for via in ALL_VIAS {
        let env = Env::new(&format!("outputs-{via:?}"));
        let mut outputs = Vec::new();
        let mut run = |what: &str, cmd: Command, args: &[&str], code: i32| -> String {
            let (got, out) = env.run(cmd, args);
            assert_eq!(got, Some(code), "{via:?} {what}: {out}");
            outputs.push((what.to_owned(), out.clone()));
            out
        };

        let out = run("config", env.command(via, ""), &["config"], 0);
        match via {
            TokenVia::File => {
                assert!(out.contains("MM_STATUS_SYNC_TOKEN_FILE=") && out.contains("MM_STATUS_SYNC_TOKEN: not set"))
            }
            TokenVia::Environment => {
                assert!(out.contains("MM_STATUS_SYNC_TOKEN: set (from environment), not shown"), "{out}")
            }
            TokenVia::ConfigFile => assert!(out.contains("MM_STATUS_SYNC_TOKEN: set (from file "), "{out}"),
        }
        let out = run("config --keys", env.command(via, ""), &["config", "--keys"], 0);
        assert!(out.lines().any(|l| l == "token"), "{out}");

        let out = run("check", env.command(via, ""), &["check"], 0);
        assert!(out.contains(&format!("token user: {}", env.fake.username())) && out.contains("\nOK\n"), "{out}");

        let other = random_token();
        env.fake.set_token(&other);
        let out = run("check with a wrong token", env.command(via, ""), &["check"], 1);
        assert!(out.contains("FAIL: API ERROR: GET /api/v4/users/me: 401"), "{out}");
        env.fake.set_token(&env.token);

        for style in [EchoStyle::AuthorizationLine, EchoStyle::AppErrorMessage, EchoStyle::HeaderLines] {
            env.fake.set_fault(Fault::EchoRequestHeaders { code: 400, style }, FaultScope::all().times(1));
            let out = run(&format!("check, proxy echoing {style:?}"), env.command(via, ""), &["check"], 1);
            assert!(out.contains("FAIL: API ERROR: GET /api/v4/users/me: 400"), "{out}");
            if style == EchoStyle::AuthorizationLine {
                assert!(out.contains("unexpected header Authorization: Bearer <redacted>"), "quoted, scrubbed: {out}");
            }
            let echoed = env.fake.calls().last().unwrap().response_body.clone();
            assert!(echoed.contains(&env.token), "the proxy echoed the token: {echoed}");
        }
        let out = run("check once the proxy behaves", env.command(via, ""), &["check"], 0);
        assert!(out.contains("\nOK\n"), "{out}");

        let no_server = env.command_url(via, "http://127.0.0.1:9", "");
        let out = run("check without a server", no_server, &["check"], 1);
        assert!(out.contains("FAIL: API ERROR"), "{out}");

        let out = run("restore without a backup", env.command(via, ""), &["restore"], 0);
        assert!(out.contains("no backup"), "{out}");

        // A token with a space in it is refused without showing it.
        let bad = format!("{} {}", env.token, env.token);
        let mut cmd = env.base_command(&env.fake.url());
        match via {
            TokenVia::File => {
                std::fs::write(env.path("bad-token"), &bad).unwrap();
                std::fs::set_permissions(env.path("bad-token"), std::fs::Permissions::from_mode(0o600)).unwrap();
                cmd.args(["--token-file", env.path("bad-token").to_str().unwrap()]);
            }
            TokenVia::Environment => {
                cmd.env("MM_STATUS_SYNC_TOKEN", &bad);
            }
            TokenVia::ConfigFile => {
                std::fs::write(env.path("bad.env"), format!("MM_STATUS_SYNC_TOKEN=\"{bad}\"\n")).unwrap();
                cmd.args(["--config", env.path("bad.env").to_str().unwrap()]);
            }
        }
        let out = run("check with an invalid token", cmd, &["check"], 2);
        let blamed = if via == TokenVia::File { "invalid token-file \"" } else { "invalid token (value not shown)" };
        assert!(out.starts_with(&format!("mm-status-sync: {blamed}")) && out.lines().count() == 1, "{out}");

        // Another key's bad value: one line, naming that key only.
        let out =
            run("check with a bad meeting-status", env.command(via, ""), &["check", "--meeting-status", "busy"], 2);
        assert_eq!(out.lines().count(), 1, "{out}");

        for (what, out) in &outputs {
            assert_no_token(&env.token, &format!("{via:?}: {what}"), out);
        }
    }
}

/// `restore` after a kill -9 left a backup, against a proxy that echoes the token on the first restore call: it
/// retries, succeeds, and its log (stderr) never shows the token.
#[test]
fn restore_after_kill_9_never_prints_the_token() {
    let env = Env::new("restore");
    let d = env.daemon(TokenVia::Environment, "", &[]);
    let camera = env.open_camera();
    env.wait_state("meeting set", in_meeting).unwrap();
    d.wait_log_count("meeting status set", 1).unwrap();
    let log = d.kill9();
    drop(camera);
    assert!(env.path("state/state.json").exists(), "kill -9 left the backup");
    let echo = Fault::EchoRequestHeaders { code: 400, style: EchoStyle::AppErrorMessage };
    env.fake.set_fault(echo, FaultScope::on("PUT", "/api/v4/users").times(1));
    let (code, out) = env.run(env.command(TokenVia::Environment, ""), &["restore", "--log-level", "debug"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("400 fake.proxy.headers_rejected: Request rejected by the proxy"), "{out}");
    assert!(out.contains("backup deleted"), "{out}");
    assert!(!env.path("state/state.json").exists());
    let echoed = env.fake.calls().iter().filter(|c| c.fault.is_some()).count();
    assert_eq!(echoed, 1, "the proxy echoed once");
    assert_no_token(&env.token, "restore's output", &out);
    assert_no_token(&env.token, "the daemon's log", &log);
}

/// `--token` does not exist: refused with exit 2, pointing to token-file, without repeating the value.
#[test]
fn a_token_flag_is_refused_and_not_repeated() {
    let token = random_token();
    for args in
        [vec![format!("--token={token}"), "check".into()], vec!["check".into(), "--token".into(), token.clone()]]
    {
        let out = Command::new(BIN).args(&args).env_remove("MM_STATUS_SYNC_CONFIG").output().unwrap();
        let text = text(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("--token-file") && text.contains("MM_STATUS_SYNC_TOKEN"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_no_token(&token, "the refusal", &text);
    }
}

/// A token file others can read gets a warning naming it and what to do, from `check`, `config` and the daemon;
/// a private one gets none.
#[test]
fn a_token_file_others_can_read_is_warned_about() {
    let env = Env::new("token-mode");
    for mode in [0o644, 0o640, 0o604, 0o600, 0o400] {
        let mut cmd = env.command(TokenVia::File, "");
        let path = env.write_token_file(mode); // after command(), which writes it 0600
        let warning = format!("token file {} can be read by other users (mode {mode:o}); chmod 600 it", path.display());
        let wide = mode & 0o077 != 0;
        let (code, out) = env.run(cmd, &["check"]);
        assert_eq!(code, Some(0), "{out}");
        assert_eq!(out.contains(&format!("warning: {warning}\n")), wide, "mode {mode:o}: {out}");
        assert_eq!(out.contains("warning"), wide, "mode {mode:o}: {out}");

        cmd = env.command(TokenVia::File, "");
        env.write_token_file(mode);
        let (code, out) = env.run(cmd, &["config"]);
        assert_eq!(code, Some(0), "{out}");
        assert_eq!(out.contains(&format!("mm-status-sync: warning: {warning}\n")), wide, "mode {mode:o}: {out}");

        if mode == 0o640 || mode == 0o600 {
            cmd = env.command(TokenVia::File, "");
            env.write_token_file(mode);
            let d = env.daemon_from(cmd, &[]);
            let log = d.log();
            assert_eq!(log.contains(&format!("WARN: {warning}\n")), wide, "mode {mode:o}: {log}");
            assert_eq!(log.contains("WARN"), wide, "mode {mode:o}: {log}");
            assert_eq!(d.stop(), Some(0));
        }
    }

    // The token written into the config file makes it a token file too.
    for (mode, wide) in [(0o644, true), (0o600, false)] {
        let cmd = env.command(TokenVia::ConfigFile, "");
        let config = env.path("config.env");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, out) = env.run(cmd, &["check"]);
        assert_eq!(code, Some(0), "{out}");
        let warning = format!(
            "warning: config file {} holds the token and can be read by other users (mode {mode:o}); chmod 600 it",
            config.display()
        );
        assert_eq!(out.contains(&warning), wide, "config file mode {mode:o}: {out}");
        assert_eq!(out.contains("warning"), wide, "config file mode {mode:o}: {out}");
        assert_no_token(&env.token, "the warning", &out);
    }
}

/// Plain http to anything but a loopback address is refused before the token is sent anywhere: exit 2 and one
/// line naming the key, the value and what is allowed. `http://localhost` is refused too (the name may resolve
/// elsewhere); `http://127.0.0.1`, `http://[::1]` and `https://localhost` are accepted.
#[test]
fn plain_http_is_refused_unless_the_address_is_loopback() {
    let env = Env::new("url");
    let port = env.fake.addr().port();
    let refused = [
        ("http://example.com".to_owned(), "http:// is allowed only for 127.0.0.1 and [::1]"),
        ("http://mm.example.com:8065/".to_owned(), "http:// is allowed only for 127.0.0.1 and [::1]"),
        ("http://10.1.2.3".to_owned(), "http:// is allowed only for 127.0.0.1 and [::1]"),
        (format!("http://localhost:{port}"), "write http://127.0.0.1 instead of http://localhost"),
    ];
    for (url, why) in &refused {
        for command in ["run", "check", "config", "restore"] {
            let (code, out) = env.run(env.command_url(TokenVia::File, url, ""), &[command]);
            assert_eq!(code, Some(2), "{command} {url}: {out}");
            assert_eq!(out.lines().count(), 1, "{command} {url}: {out}");
            let line = format!("mm-status-sync: invalid url {url:?} (from flag): expected https://host[:port][/path]");
            assert!(out.starts_with(&line) && out.contains(why), "{command} {url}: {out}");
            assert_no_token(&env.token, "the refusal", &out);
        }
    }
    assert_eq!(env.fake.request_count(), 0, "nothing reached the server");

    let (code, out) = env.run(env.command(TokenVia::File, ""), &["check"]);
    assert_eq!(code, Some(0), "http://127.0.0.1:{port}: {out}");
    for url in [format!("http://[::1]:{port}"), format!("https://localhost:{port}"), "http://127.8.9.10".into()] {
        let (code, out) = env.run(env.command_url(TokenVia::File, &url, ""), &["config"]);
        assert_eq!(code, Some(0), "{url}: {out}");
        assert!(out.contains(&format!("MM_STATUS_SYNC_URL=\"{url}\"")), "{url}: {out}");
    }
    // Accepted, so the attempt is made: nothing listens on [::1] (the fake is on 127.0.0.1), which is a
    // connection failure (exit 1), not a refused configuration (exit 2).
    let (code, out) = env.run(env.command_url(TokenVia::File, &format!("http://[::1]:{port}"), ""), &["check"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("configuration: valid") && out.contains("FAIL: API ERROR: GET /api/v4/users/me"), "{out}");
    assert_no_token(&env.token, "check over [::1]", &out);

    // The token pasted into the url itself: refused, and not repeated.
    let token = &env.token;
    for url in [format!("https://me:{token}@mm.example.com"), format!("https://mm.example.com/?access_token={token}")] {
        let (code, out) = env.run(env.command_url(TokenVia::File, &url, ""), &["check"]);
        assert_eq!(code, Some(2), "{out}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.starts_with("mm-status-sync: invalid url (value not shown"), "{out}");
        assert_no_token(token, "the refusal of a url holding the token", &out);
    }
}
