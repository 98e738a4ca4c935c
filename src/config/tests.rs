//! Table-driven tests of precedence and validation over every key.

use super::*;
use std::io::Write;

fn inputs(
    flags: &[(&'static str, &str)],
    env: &[(&str, &str)],
    file: Option<&str>,
) -> (Inputs, Option<tempfile_lite::TempFile>) {
    let tmp = file.map(|text| tempfile_lite::TempFile::with(text.as_bytes()));
    let inputs = Inputs {
        flags: flags.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        env: env.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect(),
        config_flag: tmp.as_ref().map(|t| t.path.clone()),
        context: vec![("HOME".into(), "/home/u".into())],
        is_root: false,
        allow_incomplete: false,
    };
    (inputs, tmp)
}

/// A self-deleting file in the system temp directory, so these unit tests need no dev-dependency.
mod tempfile_lite {
    use std::path::PathBuf;
    pub(crate) struct TempFile {
        pub(crate) path: PathBuf,
    }
    impl TempFile {
        pub(crate) fn with(bytes: &[u8]) -> TempFile {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "mm-status-sync-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, bytes).unwrap();
            TempFile { path }
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[test]
fn defaults_load_and_match_the_table() {
    let (i, _t) = inputs(&[], &[], None);
    let c = i.load().unwrap();
    assert_eq!(c.devices, [Pattern::new("/dev/video*").unwrap()]);
    assert!(c.microphones.is_empty(), "microphones are off by default");
    assert_eq!(c.require_streaming_for, ["pipewire", "wireplumber"]);
    assert!(c.ignore_processes.is_empty());
    assert_eq!((c.start_delay.as_secs(), c.end_delay.as_secs(), c.interval.as_secs()), (5, 30, 300));
    assert_eq!(c.state_dir, PathBuf::from("/home/u/.local/state/mm-status-sync"));
    assert_eq!((c.log, c.log_level, c.dry_run), (LogTarget::Auto, log::LevelFilter::Info, false));
    assert_eq!(
        c.meeting,
        MeetingSettings {
            message: " [In a meeting]".into(),
            emoji: "calendar".into(),
            status: MeetingStatus::Dnd,
            ignore_if_offline: true,
            lease: 14_400
        }
    );
    assert!(c.server.is_none());
}

#[test]
fn precedence_is_flag_then_environment_then_file_then_default_for_every_key() {
    // A distinct valid value per layer for each key that takes a flag.
    let values: &[(&str, [&str; 3])] = &[
        ("devices", ["/f/video*", "/e/video*", "/c/video*"]),
        ("microphones", ["/f/pcmC*D*c", "/e/pcmC*D*c", "/c/pcmC*D*c"]),
        ("ignore-processes", ["f", "e", "c"]),
        ("require-streaming-for", ["f", "e", "c"]),
        ("start-delay", ["1", "2", "3"]),
        ("end-delay", ["1", "2", "3"]),
        ("interval", ["11", "12", "13"]),
        ("state-dir", ["/f", "/e", "/c"]),
        ("log", ["stderr", "syslog", "auto"]),
        ("log-level", ["debug", "warn", "error"]),
        ("dry-run", ["true", "false", "yes"]),
        ("url", ["https://f", "https://e", "https://c"]),
        ("token-file", ["/f", "/e", "/c"]),
        ("user-id", ["ffffffffffffffffffffffffff", "eeeeeeeeeeeeeeeeeeeeeeeeee", "cccccccccccccccccccccccccc"]),
        ("meeting-message", [" f", " e", " c"]),
        ("meeting-emoji", ["f", "e", "c"]),
        ("meeting-status", ["away", "online", "offline"]),
        ("ignore-if-offline", ["false", "no", "0"]),
        ("ca-file", ["/f", "/e", "/c"]),
        ("lease", ["0", "300", "600"]),
        ("on-meeting-start", ["f", "e", "c"]),
        ("on-meeting-end", ["f", "e", "c"]),
    ];
    let flag_keys: Vec<&str> = KEYS.iter().filter(|s| s.flag).map(|s| s.name).collect();
    let covered: Vec<&str> = values.iter().map(|(k, _)| *k).collect();
    assert_eq!(covered, flag_keys, "every flag key is covered, in table order");

    for (key, [f, e, c]) in values {
        let spec = keys::spec(key);
        let var = spec.env_var();
        let file_text = format!("{var}=\"{c}\"\n");
        type Layer<'a> = (&'a [(&'static str, &'a str)], &'a [(&'a str, &'a str)], Option<&'a str>, &'a str, &'a str);
        let layers: [Layer; 4] = [
            (&[(spec.name, f)], &[(&var, e)], Some(&file_text), f, "flag"),
            (&[], &[(&var, e)], Some(&file_text), e, "environment"),
            (&[], &[], Some(&file_text), c, "file"),
            (&[], &[], None, spec.default.unwrap_or(""), "default"),
        ];
        for (flags, env, file, want, layer) in layers {
            let (i, _t) = inputs(flags, env, file);
            let raw = i.raw().unwrap();
            let got = raw.get(key);
            assert_eq!(got.value.as_deref(), Ok(want), "{key} from {layer}");
            assert!(got.source.to_string().starts_with(layer), "{key}: source {} is not {layer}", got.source);
        }
    }
}

#[test]
fn token_is_accepted_from_environment_and_file_but_never_printed() {
    let (i, _t) = inputs(&[("url", "https://mm.example.com")], &[("MM_STATUS_SYNC_TOKEN", "s3cr3t-token")], None);
    let c = i.load().unwrap();
    assert_eq!(c.server.as_ref().unwrap().token.expose(), "s3cr3t-token");
    assert!(!format!("{c:?}").contains("s3cr3t"));
    let rendered = render(&i.raw().unwrap(), &c);
    assert!(!rendered.contains("s3cr3t"), "{rendered}");
    assert!(rendered.contains("MM_STATUS_SYNC_TOKEN: set (from environment), not shown"), "{rendered}");

    let (i, _t) = inputs(&[("url", "https://mm.example.com")], &[], Some("MM_STATUS_SYNC_TOKEN='s3cr3t-token'\n"));
    assert_eq!(i.load().unwrap().server.unwrap().token.expose(), "s3cr3t-token");
}

/// A token file, or a config file holding the token, that others can read is warned about; a private one, or a
/// readable config file without the token, is not.
#[test]
fn files_holding_the_token_that_others_can_read_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    let tf = tempfile_lite::TempFile::with(b"s3cr3t\n");
    let token_file = tf.path.to_str().unwrap().to_owned();
    let url = ("url", "https://mm.example.com");
    for (mode, warned) in [(0o644, true), (0o640, true), (0o604, true), (0o600, false), (0o400, false)] {
        chmod(&tf.path, mode);
        let (i, _t) = inputs(&[url, ("token-file", &token_file)], &[], None);
        let warnings = i.load().unwrap().warnings;
        let expected = format!("token file {token_file} can be read by other users (mode {mode:o}); chmod 600 it");
        assert_eq!(warnings, if warned { vec![expected] } else { vec![] }, "token-file mode {mode:o}");

        let (i, conf) = inputs(&[url], &[], Some("MM_STATUS_SYNC_TOKEN=s3cr3t\n"));
        let conf = conf.unwrap();
        chmod(&conf.path, mode);
        let warnings = i.load().unwrap().warnings;
        assert_eq!(warnings.len(), usize::from(warned), "config file mode {mode:o}: {warnings:?}");
        if warned {
            let expected =
                format!("config file {} holds the token and can be read by other users", conf.path.display());
            assert!(warnings[0].starts_with(&expected) && warnings[0].contains("chmod 600"), "{warnings:?}");
            assert!(!warnings[0].contains("s3cr3t"), "{warnings:?}");
        }
    }
    let (i, conf) = inputs(&[url], &[("MM_STATUS_SYNC_TOKEN", "s3cr3t")], Some("MM_STATUS_SYNC_LOG=stderr\n"));
    let conf = conf.unwrap();
    chmod(&conf.path, 0o644);
    assert_eq!(i.load().unwrap().warnings, Vec::<String>::new(), "the token is not in the file");
}

/// A url refused for holding credentials or a query is not repeated in the error; other refused urls are.
#[test]
fn a_refused_url_that_may_hold_a_secret_is_not_repeated() {
    for url in ["https://me:s3cr3t@mm.example.com", "https://mm.example.com/?access_token=s3cr3t", "https://x/#s3cr3t"]
    {
        let (i, _t) = inputs(&[("url", url)], &[("MM_STATUS_SYNC_TOKEN", "t")], None);
        let error = i.load().unwrap_err().to_string();
        assert!(
            error.starts_with("invalid url (value not shown: it may hold a password or token) (from flag)"),
            "{error}"
        );
        assert!(!error.contains("s3cr3t"), "{error}");
    }
    let (i, _t) = inputs(&[("url", "http://mm.example.com")], &[("MM_STATUS_SYNC_TOKEN", "t")], None);
    assert!(i.load().unwrap_err().to_string().starts_with("invalid url \"http://mm.example.com\" (from flag)"));
}

/// A malformed token is blamed on where it came from, and never shown.
#[test]
fn a_malformed_token_names_its_source_not_its_value() {
    let tf = tempfile_lite::TempFile::with(b"s3cr3t one\n");
    let path = tf.path.to_str().unwrap().to_owned();
    let (i, _t) = inputs(&[("url", "https://mm.example.com"), ("token-file", &path)], &[], None);
    let error = i.load().unwrap_err().to_string();
    let expected =
        format!("invalid token-file {path:?} (from flag): expected a file holding one token, without spaces");
    assert!(error.starts_with(&expected), "{error}");
    let (i, _t) = inputs(&[("url", "https://mm.example.com")], &[("MM_STATUS_SYNC_TOKEN", "s3cr3t one")], None);
    let error = i.load().unwrap_err().to_string();
    assert!(
        error.starts_with("invalid token (value not shown) (from environment): expected a token without"),
        "{error}"
    );
    assert!(!error.contains("s3cr3t"), "{error}");
}

/// A panic message or a debug line may print any of these with `{:?}`; none may show the token, wherever it came
/// from, while every other value stays visible.
#[test]
fn debug_output_of_everything_holding_the_token_redacts_it() {
    let tf = tempfile_lite::TempFile::with(b"s3cr3t-from-file\n");
    let token_file = tf.path.to_str().unwrap().to_owned();
    let url = [("url", "https://mm.example.com")];
    let env_token = [("MM_STATUS_SYNC_TOKEN", "s3cr3t-from-env"), ("MM_STATUS_SYNC_LOG", "stderr")];
    let cases = [
        (inputs(&url, &env_token, None), "s3cr3t-from-env"),
        (inputs(&url, &[], Some("MM_STATUS_SYNC_TOKEN=\"s3cr3t-from-conf\"\n")), "s3cr3t-from-conf"),
        (inputs(&[url[0], ("token-file", &token_file)], &[], None), "s3cr3t-from-file"),
    ];
    for ((i, _t), token) in cases {
        let raw = i.raw().unwrap();
        let config = i.validate(&raw).unwrap();
        assert_eq!(config.server.as_ref().unwrap().token.expose(), token);
        for shown in
            [format!("{i:?}"), format!("{i:#?}"), format!("{raw:?}"), format!("{raw:#?}"), format!("{config:#?}")]
        {
            assert!(!shown.contains("s3cr3t"), "{token} shown in {shown}");
            assert!(shown.contains("mm.example.com"), "other values stay visible: {shown}");
        }
    }
    let (i, _t) = inputs(&url, &env_token, None);
    assert!(format!("{i:?}").contains("(\"MM_STATUS_SYNC_LOG\", \"stderr\")"), "{i:?}");
    assert!(format!("{:?}", i.raw().unwrap()).contains("\"token\": <redacted> (from environment)"));
}

#[test]
fn invalid_values_name_the_key_the_value_the_source_and_what_is_allowed() {
    let cases: &[(&str, &str, &str)] = &[
        ("start-delay", "-1", "whole seconds from 0 to 3600"),
        ("start-delay", "", "whole seconds from 0 to 3600"),
        ("start-delay", "5s", "whole seconds from 0 to 3600"),
        ("start-delay", "3601", "whole seconds from 0 to 3600"),
        ("start-delay", "+5", "whole seconds from 0 to 3600"),
        ("end-delay", "99999999999999999999999", "whole seconds from 0 to 86400"),
        ("interval", "5", "whole seconds from 10 to 86400"),
        ("lease", "60", "0, or whole seconds from 300 to 604800"),
        ("log", "journal", "auto, syslog or stderr"),
        ("log-level", "trace", "error, warn, info or debug"),
        ("dry-run", "maybe", "true/false/yes/no/1/0"),
        ("ignore-if-offline", "2", "true/false/yes/no/1/0"),
        ("meeting-status", "busy", "dnd, away, online, offline or keep"),
        ("meeting-status", "DND", "dnd, away, online, offline or keep"),
        ("meeting-emoji", "", "an emoji name such as calendar"),
        ("meeting-emoji", "two words", "an emoji name such as calendar"),
        ("devices", "", "at least one pattern"),
        ("devices", "video*", "absolute paths such as /dev/video*"),
        ("user-id", "me", "a 26-character Mattermost user id"),
        ("state-dir", "state", "an absolute directory path"),
        ("state-dir", "./state", "an absolute directory path"),
        ("url", "ftp://x", ""),
        ("on-meeting-start", "a\u{1}b", "text without control characters"),
    ];
    for (key, value, allowed) in cases {
        let var = keys::spec(key).env_var();
        let (i, _t) = inputs(&[], &[(&var, value)], None);
        let err = i.load().expect_err(&format!("{key}={value:?} must be rejected"));
        let line = err.to_string();
        assert!(line.starts_with(&format!("invalid {key} ")), "{line}");
        assert!(line.contains("(from environment)"), "{line}");
        assert!(line.contains(allowed), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }
    let long = "x".repeat(101);
    let (i, _t) = inputs(&[("meeting-message", &long)], &[], None);
    let line = i.load().unwrap_err().to_string();
    assert!(line.contains("at most 100 characters") && line.len() < 300, "{line}");
}

#[test]
fn non_utf8_values_are_reported_not_panicked_on() {
    use std::os::unix::ffi::OsStringExt;
    let (mut i, _t) = inputs(&[], &[], None);
    i.env.push(("MM_STATUS_SYNC_MEETING_MESSAGE".into(), OsString::from_vec(vec![0xff, 0xfe])));
    assert_eq!(i.load().unwrap_err().to_string().lines().count(), 1);
    let (i, _t) = inputs(&[], &[], Some("MM_STATUS_SYNC_LOG=\u{0}\n"));
    assert!(i.load().is_err());
    let mut f = tempfile_lite::TempFile::with(b"");
    std::fs::OpenOptions::new().write(true).open(&f.path).unwrap().write_all(b"MM_STATUS_SYNC_LOG=\xff\n").unwrap();
    let (mut i, _t) = inputs(&[], &[], None);
    i.config_flag = Some(std::mem::take(&mut f.path));
    let err = i.load().unwrap_err().to_string();
    assert!(err.contains("invalid log (not valid UTF-8)"), "{err}");
}

#[test]
fn unknown_keys_and_bad_lines_in_the_file_are_errors() {
    let (i, _t) = inputs(&[], &[], Some("MM_STATUS_SYNC_MEETING_MESAGE=x\n"));
    assert!(i.load().unwrap_err().to_string().contains("line 1: unknown key MM_STATUS_SYNC_MEETING_MESAGE"));
    let (i, _t) = inputs(&[], &[], Some("# ok\nnonsense\n"));
    assert!(i.load().unwrap_err().to_string().contains("line 2: expected KEY=VALUE"));
    let (mut i, _t) = inputs(&[], &[], None);
    i.config_flag = Some("/nonexistent/mm.env".into());
    assert!(i.load().unwrap_err().to_string().starts_with("config file /nonexistent/mm.env: "));
}

#[test]
fn server_settings_need_a_token_and_reject_ambiguity() {
    let (i, _t) = inputs(&[("url", "https://mm.example.com")], &[], None);
    assert_eq!(
        i.load().unwrap_err(),
        ConfigError::Missing { key: "token", why: "a url is set but no token or token-file" }
    );
    let tf = tempfile_lite::TempFile::with(b"  file-token\n");
    std::fs::set_permissions(&tf.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = tf.path.to_str().unwrap();
    let (i, _t) =
        inputs(&[("url", "https://mm.example.com"), ("token-file", path)], &[("MM_STATUS_SYNC_TOKEN", "t")], None);
    assert_eq!(i.load().unwrap_err(), ConfigError::Conflict { a: "token", b: "token-file" });
    let (i, _t) = inputs(&[("url", "https://mm.example.com"), ("token-file", path)], &[], None);
    let c = i.load().unwrap();
    assert_eq!(c.server.unwrap().token.expose(), "file-token");
    assert!(c.warnings.is_empty());
    std::fs::set_permissions(&tf.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = i.load().unwrap();
    assert!(c.warnings[0].contains("can be read by other users"), "{:?}", c.warnings);
    let (i, _t) = inputs(&[("url", "https://mm.example.com"), ("token-file", "/nonexistent/token")], &[], None);
    assert!(i.load().unwrap_err().to_string().starts_with("invalid token-file \"/nonexistent/token\" (from flag)"));
}

#[test]
fn state_dir_default_follows_the_environment() {
    let ctx = |pairs: &[(&str, &str)], root: bool| {
        let i = Inputs {
            context: pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect(),
            is_root: root,
            ..Inputs::default()
        };
        i.default_state_dir()
    };
    let home = ("HOME", "/home/u");
    assert_eq!(ctx(&[("STATE_DIRECTORY", "/var/lib/a:/var/lib/b"), home], true), PathBuf::from("/var/lib/a"));
    assert_eq!(ctx(&[("SNAP_DATA", "/var/snap/mm/x1"), home], true), PathBuf::from("/var/snap/mm/x1"));
    assert_eq!(ctx(&[home], true), PathBuf::from("/var/lib/mm-status-sync"));
    assert_eq!(ctx(&[("XDG_STATE_HOME", "/x"), home], false), PathBuf::from("/x/mm-status-sync"));
    assert_eq!(ctx(&[home], false), PathBuf::from("/home/u/.local/state/mm-status-sync"));
    // Relative values would depend on the working directory: ignored.
    assert_eq!(ctx(&[("XDG_STATE_HOME", "state"), home], false), PathBuf::from("/home/u/.local/state/mm-status-sync"));
    assert_eq!(ctx(&[("HOME", "u")], false), PathBuf::from("/var/lib/mm-status-sync"));
}

#[test]
fn rendered_configuration_reads_back_to_the_same_values() {
    let (i, _t) = inputs(
        &[("meeting-message", " 'on' a \"call\" #1"), ("start-delay", "0")],
        &[("MM_STATUS_SYNC_DEVICES", "/dev/video0,/dev/v4l/by-id/*")],
        Some("MM_STATUS_SYNC_LEASE=0\n"),
    );
    let c = i.load().unwrap();
    let text = render(&i.raw().unwrap(), &c);
    let back = tempfile_lite::TempFile::with(text.as_bytes());
    let again = Inputs { config_flag: Some(back.path.clone()), ..Inputs::default() }.load().unwrap();
    assert_eq!(again.meeting, c.meeting);
    assert_eq!(again.devices, c.devices);
    assert_eq!(again.start_delay, c.start_delay);
    assert_eq!(again.state_dir, c.state_dir);
    assert!(text.contains("# from: flag\nMM_STATUS_SYNC_START_DELAY=\"0\""), "{text}");
    assert!(text.contains("# from: environment\nMM_STATUS_SYNC_DEVICES="), "{text}");
    assert!(
        text.contains(&format!("# from: file {}:1\nMM_STATUS_SYNC_LEASE=\"0\"", i.config_path().unwrap().display()))
    );
}

#[test]
fn a_ca_file_that_cannot_be_opened_is_bad_input_when_a_server_is_set() {
    let server = [("url", "https://mm.example.com"), ("ca-file", "/nonexistent/ca.pem")];
    let (i, _t) = inputs(&server, &[("MM_STATUS_SYNC_TOKEN", "t")], None);
    let error = i.load().unwrap_err().to_string();
    assert!(
        error.starts_with("invalid ca-file \"/nonexistent/ca.pem\" (from flag): expected a readable PEM file ("),
        "{error}"
    );
    let (i, _t) =
        inputs(&[("url", "https://mm.example.com"), ("ca-file", "/tmp")], &[("MM_STATUS_SYNC_TOKEN", "t")], None);
    assert!(i.load().unwrap_err().to_string().contains("not a regular file"));
    let pem = tempfile_lite::TempFile::with(b"-----BEGIN CERTIFICATE-----\n");
    let path = pem.path.to_str().unwrap();
    let (i, _t) =
        inputs(&[("url", "https://mm.example.com"), ("ca-file", path)], &[("MM_STATUS_SYNC_TOKEN", "t")], None);
    assert_eq!(i.load().unwrap().server.unwrap().ca_file.as_deref(), Some(pem.path.as_path()));
    // Without a server the file is not used, so it need not exist yet (a snap is configured one key at a time).
    let (i, _t) = inputs(&[("ca-file", "/nonexistent/ca.pem")], &[], None);
    assert!(i.load().is_ok());
}

#[test]
fn a_huge_token_file_path_is_shortened_in_the_error() {
    let path = format!("/{}", "t".repeat(100_000));
    let (i, _t) = inputs(&[("url", "https://mm.example.com"), ("token-file", &path)], &[], None);
    let error = i.load().unwrap_err().to_string();
    assert!(error.starts_with("invalid token-file \"/ttt") && error.len() < 300, "{} bytes", error.len());
}

#[test]
fn files_whose_size_stat_does_not_bound_are_read_only_so_far() {
    // procfs reports size 0 for /proc/self/pagemap, which then reads on for gigabytes (this test never ended
    // before the reads were bounded); cut at the limit, the read ends with "too large" or the kernel's EINVAL
    // for a length that is not a multiple of 8.
    let (i, _t) = inputs(&[], &[], None);
    let i = Inputs { config_flag: Some(PathBuf::from("/proc/self/pagemap")), ..i };
    let error = i.load().unwrap_err().to_string();
    assert!(error.starts_with("config file /proc/self/pagemap: "), "{error}");
    let server = [("url", "https://mm.example.com"), ("token-file", "/proc/self/pagemap")];
    let (i, _t) = inputs(&server, &[], None);
    let error = i.load().unwrap_err().to_string();
    assert!(
        error.starts_with("invalid token-file \"/proc/self/pagemap\" (from flag): expected a readable file"),
        "{error}"
    );
}

/// One accepted set of booleans, the one the table documents (and the snap hook reads): `on`/`off` and other
/// spellings, once quietly accepted, are refused.
#[test]
fn booleans_are_exactly_the_documented_words() {
    for (value, want) in [("true", true), ("yes", true), ("1", true), ("false", false), ("no", false), ("0", false)] {
        let (i, _t) = inputs(&[("ignore-if-offline", value)], &[], None);
        assert_eq!(i.load().unwrap().meeting.ignore_if_offline, want, "{value}");
    }
    for value in ["on", "off", "TRUE", "No", "y", "2"] {
        let (i, _t) = inputs(&[], &[("MM_STATUS_SYNC_DRY_RUN", value)], None);
        let line = i.load().expect_err(value).to_string();
        assert!(line.ends_with("expected true/false/yes/no/1/0"), "{line}");
    }
}

/// A pattern the detection would refuse is refused by the configuration, as bad input (exit 2), not later at
/// start (exit 1); the configuration holds parsed patterns.
#[test]
fn device_patterns_are_parsed_when_the_configuration_is() {
    for bad in ["/dev/../video*", "/dev//video0", "/dev/./video0", "/dev/video0,video1"] {
        let (i, _t) = inputs(&[("devices", bad)], &[], None);
        let line = i.load().expect_err(bad).to_string();
        assert!(line.starts_with("invalid devices ") && line.contains("absolute paths such as /dev/video*"), "{line}");
        let (i, _t) = inputs(&[("microphones", bad)], &[], None);
        let line = i.load().expect_err(bad).to_string();
        assert!(line.starts_with("invalid microphones ") && line.contains("/dev/snd/pcmC*D*c"), "{line}");
    }
    let (i, _t) = inputs(&[("microphones", " /dev/snd/pcmC*D*c, /dev/snd/by-id/* ")], &[], None);
    let c = i.load().unwrap();
    let shown: Vec<&str> = c.microphones.iter().map(Pattern::as_str).collect();
    assert_eq!(shown, ["/dev/snd/pcmC*D*c", "/dev/snd/by-id/*"]);
}

/// Every word a choice key lists in the table is understood by the code that reads it.
#[test]
fn every_choice_in_the_table_loads() {
    for spec in KEYS {
        let Kind::Choice(words) = spec.kind else { continue };
        for word in words {
            let (i, _t) = inputs(&[], &[(&spec.env_var(), word)], None);
            assert!(i.load().is_ok(), "{}={word}", spec.name);
        }
    }
}

/// The allowed-values texts come from the kinds: ranges and choices are said the way the checks apply them.
#[test]
fn allowed_texts_follow_the_kinds() {
    assert_eq!(keys::spec("start-delay").allowed(), "whole seconds from 0 to 3600");
    assert_eq!(keys::spec("lease").allowed(), "0, or whole seconds from 300 to 604800");
    assert_eq!(keys::spec("log").allowed(), "auto, syslog or stderr");
    assert_eq!(keys::spec("dry-run").allowed(), "true/false/yes/no/1/0");
    assert_eq!(keys::spec("meeting-message").allowed(), "text of at most 100 characters");
}

/// What loads is what the daemon can use: a token the client could not send, an emoji the server always refuses
/// and a url error without the rule were all accepted, or half-explained, before.
#[test]
fn values_that_load_are_values_the_daemon_can_use() {
    let url = ("url", "https://mattermost.example.com");
    let load = |flags: &[(&'static str, &str)], env: &[(&str, &str)]| inputs(flags, env, None).0.load();
    // A zero-width space pasted with the token survives trimming; the client would refuse it at start (exit 1).
    let error = load(&[url], &[("MM_STATUS_SYNC_TOKEN", "abc\u{200b}def")]).unwrap_err().to_string();
    assert!(error.contains("token") && error.contains("non-ASCII"), "{error}");
    assert!(!error.contains("abc"), "the token is never repeated: {error}");
    for emoji in [":calendar:", "📅", "two words", "calendar!"] {
        let error = load(&[url, ("meeting-emoji", emoji)], &[("MM_STATUS_SYNC_TOKEN", "t0ken")]).unwrap_err();
        assert!(error.to_string().contains("meeting-emoji"), "{emoji}: {error}");
    }
    for emoji in ["calendar", "+1", "thumbs_up", "my-Emoji_2"] {
        let config = load(&[url, ("meeting-emoji", emoji)], &[("MM_STATUS_SYNC_TOKEN", "t0ken")]).unwrap();
        assert_eq!(config.meeting.emoji, emoji);
    }
    let error = load(&[("url", "https://")], &[("MM_STATUS_SYNC_TOKEN", "t0ken")]).unwrap_err().to_string();
    assert!(error.contains("expected https://host"), "the rule, then the reason: {error}");
}
