//! The backup of the user's status on disk: written durably before any change on the server, so that a crash,
//! a kill -9 or a power cut at any moment leaves enough behind to put everything back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use miniserde::Deserialize;

use crate::meeting::{BACKUP_VERSION, Backup, Ours, Previous, Progress};
use crate::model::{Availability, CustomStatus};

/// Where the backup lives, and the rules for touching it.
pub(crate) trait Store {
    /// The saved backup, if any. A damaged or unknown file is moved aside (never deleted) and reported as `Err`
    /// with the new name, and the store is then empty.
    fn load(&mut self) -> Result<Option<Backup>, StateError>;
    fn save(&mut self, backup: &Backup) -> Result<(), StateError>;
    fn remove(&mut self) -> Result<(), StateError>;
    /// Moves the backup out of the way, kept whole under another name (`kind` says why, in the name), and reports
    /// where to as an `Err` of `load`'s kind, for the log.
    fn set_aside(&mut self, kind: &str, reason: String) -> StateError;
    /// This device's stable name among the user's devices: made once, kept beside the backup, never removed.
    fn instance_id(&mut self) -> Result<String, StateError>;
}

#[derive(Debug)]
pub(crate) enum StateError {
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// The file could not be used; it was moved to `moved_to`.
    Damaged {
        path: PathBuf,
        reason: String,
        moved_to: Option<PathBuf>,
    },
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Io { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            StateError::Damaged { path, reason, moved_to: Some(to) } => {
                write!(f, "backup {} is unusable ({reason}); moved aside to {}", path.display(), to.display())
            }
            StateError::Damaged { path, reason, moved_to: None } => {
                write!(f, "backup {} is unusable ({reason}) and could not be moved aside", path.display())
            }
        }
    }
}

/// The backup as a file `state.json` in the state directory: mode 0600, written to a temporary file, synced,
/// renamed over the old one, and the directory synced, so it is always either the old or the new file whole.
pub(crate) struct StateFile {
    dir: PathBuf,
}

/// A backup bigger than this is not ours.
const MAX_SIZE: u64 = 64 * 1024;

impl StateFile {
    pub(crate) fn new(dir: &Path) -> StateFile {
        StateFile { dir: dir.to_owned() }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn io(&self, op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError {
        let path = path.to_owned();
        move |source| StateError::Io { path, op, source }
    }

    fn move_aside(&self, kind: &str, reason: String) -> StateError {
        let path = self.path();
        let to = self.dir.join(format!("state.json.{kind}-{}", crate::time::now_unix()));
        // rename() acts on a symlink itself, never on what it points to.
        let moved_to = fs::rename(&path, &to).ok().map(|_| to);
        StateError::Damaged { path, reason, moved_to }
    }

    /// Writes `bytes` as the whole of `path`, mode 0600: a temporary file, synced, renamed over the old one, and the
    /// directory synced, so `path` is always either the old or the new file whole.
    fn write_whole(&self, path: &Path, bytes: &[u8]) -> Result<(), StateError> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(self.io("create", &self.dir))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = self.dir.join(format!("{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(self.io("write", path))
    }

    fn read(&self) -> Result<Option<Vec<u8>>, io::Error> {
        let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(self.path());
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut bytes = Vec::new();
        Read::by_ref(&mut file).take(MAX_SIZE + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_SIZE {
            return Err(io::Error::other("larger than a backup can be"));
        }
        Ok(Some(bytes))
    }
}

/// Just the version, read first so that a file from a future version is recognised as such.
#[derive(miniserde::Deserialize)]
struct Header {
    version: Option<u32>,
}

/// The backup as release 0.1.0 wrote it (version 1): availability as text, two flags per part. A meeting that was
/// on when that release stopped must still be restored by this one.
#[derive(Deserialize)]
struct BackupV1 {
    user_id: String,
    started_at: i64,
    previous: PreviousV1,
    ours: OursV1,
}

#[derive(Deserialize)]
struct PreviousV1 {
    status: String,
    manual: bool,
    custom: Option<CustomStatus>,
}

#[derive(Deserialize)]
struct OursV1 {
    custom: Option<CustomStatus>,
    custom_applied: bool,
    custom_released: bool,
    status: Option<String>,
    dnd_end_time: i64,
    status_applied: bool,
    status_released: bool,
}

/// Version 1's two flags: released wins (the user took the part over, whatever was applied before).
fn progress_v1(applied: bool, released: bool) -> Progress {
    match (applied, released) {
        (_, true) => Progress::Released,
        (true, false) => Progress::Applied,
        (false, false) => Progress::Pending,
    }
}

impl From<BackupV1> for Backup {
    fn from(old: BackupV1) -> Backup {
        Backup {
            version: BACKUP_VERSION,
            user_id: old.user_id,
            server: None,
            started_at: old.started_at,
            previous: Previous {
                status: Availability::parse(&old.previous.status),
                manual: old.previous.manual,
                custom: old.previous.custom,
            },
            ours: Ours {
                custom: old.ours.custom,
                custom_progress: progress_v1(old.ours.custom_applied, old.ours.custom_released),
                status: old.ours.status.as_deref().map(Availability::parse),
                dnd_end_time: old.ours.dnd_end_time,
                status_progress: progress_v1(old.ours.status_applied, old.ours.status_released),
            },
        }
    }
}

/// Parses a backup file's bytes, of this version or version 1; the error says why it is unusable.
pub fn parse(bytes: &[u8]) -> Result<Backup, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let header: Header = miniserde::json::from_str(text).map_err(|_| "not a backup file".to_owned())?;
    let damaged = |_| "damaged backup".to_owned();
    match header.version {
        Some(BACKUP_VERSION) => miniserde::json::from_str(text).map_err(damaged),
        Some(1) => miniserde::json::from_str::<BackupV1>(text).map(Backup::from).map_err(damaged),
        Some(v) => Err(format!("unknown version {v}")),
        None => Err("no version".to_owned()),
    }
}

impl Store for StateFile {
    fn load(&mut self) -> Result<Option<Backup>, StateError> {
        let bytes = match self.read() {
            Ok(None) => return Ok(None),
            Ok(Some(b)) => b,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(self.move_aside("damaged", "a symbolic link".into()));
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(StateError::Io { path: self.path(), op: "read", source: e });
            }
            Err(e) => return Err(self.move_aside("damaged", e.to_string())),
        };
        parse(&bytes).map(Some).map_err(|reason| self.move_aside("damaged", reason))
    }

    fn save(&mut self, backup: &Backup) -> Result<(), StateError> {
        let mut bytes = miniserde::json::to_string(backup).into_bytes();
        bytes.push(b'\n');
        self.write_whole(&self.path(), &bytes)
    }

    fn instance_id(&mut self) -> Result<String, StateError> {
        let path = self.dir.join("instance");
        if let Ok(text) = fs::read_to_string(&path) {
            if crate::meeting::peers::is_instance_id(text.trim()) {
                return Ok(text.trim().to_owned());
            }
        }
        let mut random = [0u8; 26];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .map_err(self.io("read", Path::new("/dev/urandom")))?;
        let id = crate::meeting::peers::instance_id_from(&random);
        self.write_whole(&path, format!("{id}\n").as_bytes())?;
        Ok(id)
    }

    fn set_aside(&mut self, kind: &str, reason: String) -> StateError {
        self.move_aside(kind, reason)
    }

    fn remove(&mut self) -> Result<(), StateError> {
        let path = self.path();
        match fs::remove_file(&path) {
            Ok(()) => File::open(&self.dir).and_then(|d| d.sync_all()).map_err(self.io("sync", &self.dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Io { path, op: "remove", source: e }),
        }
    }
}

/// A backup kept in memory only: for dry runs, which must not touch the real daemon's state.
#[derive(Default)]
pub(crate) struct MemoryStore {
    pub(crate) backup: Option<Backup>,
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Option<Backup>, StateError> {
        Ok(self.backup.clone())
    }
    fn save(&mut self, backup: &Backup) -> Result<(), StateError> {
        self.backup = Some(backup.clone());
        Ok(())
    }
    fn remove(&mut self) -> Result<(), StateError> {
        self.backup = None;
        Ok(())
    }
    fn set_aside(&mut self, _: &str, reason: String) -> StateError {
        self.backup = None;
        StateError::Damaged { path: PathBuf::from("(memory)"), reason, moved_to: None }
    }
    /// A dry run shares nothing with real devices (its server is simulated too).
    fn instance_id(&mut self) -> Result<String, StateError> {
        Ok("dryrunaaaaaaaaaaaaaaaaaaaa".to_owned())
    }
}

impl<T: Store + ?Sized> Store for Box<T> {
    fn load(&mut self) -> Result<Option<Backup>, StateError> {
        (**self).load()
    }
    fn save(&mut self, backup: &Backup) -> Result<(), StateError> {
        (**self).save(backup)
    }
    fn remove(&mut self) -> Result<(), StateError> {
        (**self).remove()
    }
    fn set_aside(&mut self, kind: &str, reason: String) -> StateError {
        (**self).set_aside(kind, reason)
    }
    fn instance_id(&mut self) -> Result<String, StateError> {
        (**self).instance_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn backup() -> Backup {
        Backup {
            version: BACKUP_VERSION,
            user_id: "abcdefghijklmnopqrstuvwxyz".into(),
            server: Some("https://chat.example.com/team".into()),
            started_at: 1_800_000_000,
            previous: Previous {
                status: Availability::Away,
                manual: true,
                custom: Some(CustomStatus {
                    emoji: "sandwich".into(),
                    text: "Lunch \"quoted\" ü 🎥".into(),
                    duration: "today".into(),
                    expires_at: "2027-01-01T08:00:00+01:00".into(),
                }),
            },
            ours: Ours {
                custom: None,
                custom_progress: Progress::Pending,
                status: Some(Availability::Dnd),
                dnd_end_time: 1_800_014_400,
                status_progress: Progress::Applied,
            },
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mm-state-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn aside(d: &Path) -> Vec<PathBuf> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("damaged"))
            .collect()
    }

    #[test]
    fn saves_and_loads_exactly_with_mode_0600() {
        let d = dir("roundtrip");
        let mut s = StateFile::new(&d);
        assert!(s.load().unwrap().is_none());
        s.save(&backup()).unwrap();
        assert_eq!(s.load().unwrap(), Some(backup()));
        assert_eq!(fs::metadata(s.path()).unwrap().permissions().mode() & 0o777, 0o600);
        s.remove().unwrap();
        assert!(s.load().unwrap().is_none());
        s.remove().unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unusable_files_are_moved_aside_never_deleted() {
        let cases: &[(&str, &[u8])] = &[
            ("empty", b""),
            ("truncated", b"{\"version\":1,\"user_id\":\"abc"),
            ("garbage", b"\xff\xfe\x00garbage"),
            ("future", b"{\"version\":99,\"anything\":true}"),
            ("badprogress", b"{\"version\":2,\"user_id\":\"x\",\"started_at\":1,\"previous\":{\"status\":\"away\",\"manual\":true,\"custom\":null},\"ours\":{\"custom\":null,\"custom_progress\":\"maybe\",\"status\":null,\"dnd_end_time\":0,\"status_progress\":\"pending\"}}"),
            ("v1withv2fields", b"{\"version\":1,\"user_id\":\"x\",\"started_at\":1,\"previous\":{\"status\":\"away\",\"manual\":true,\"custom\":null},\"ours\":{\"custom\":null,\"custom_progress\":\"pending\",\"status\":null,\"dnd_end_time\":0,\"status_progress\":\"pending\"}}"),
            ("noversion", b"{\"user_id\":\"x\"}"),
            ("wrongtype", b"{\"version\":1,\"user_id\":5}"),
        ];
        for (name, bytes) in cases {
            let d = dir(name);
            let mut s = StateFile::new(&d);
            fs::create_dir_all(&d).unwrap();
            fs::write(s.path(), bytes).unwrap();
            let err = s.load().unwrap_err();
            assert!(matches!(err, StateError::Damaged { moved_to: Some(_), .. }), "{name}: {err}");
            let moved = aside(&d);
            assert_eq!(moved.len(), 1, "{name}");
            assert_eq!(fs::read(&moved[0]).unwrap(), *bytes, "{name}: content kept");
            assert!(s.load().unwrap().is_none(), "{name}");
            fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn a_symlink_is_neither_followed_nor_written_through() {
        let d = dir("symlink");
        fs::create_dir_all(&d).unwrap();
        let target = d.join("elsewhere");
        fs::write(&target, b"precious").unwrap();
        let mut s = StateFile::new(&d);
        std::os::unix::fs::symlink(&target, s.path()).unwrap();
        let err = s.load().unwrap_err().to_string();
        assert!(err.contains("a symbolic link"), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        std::os::unix::fs::symlink(&target, s.path()).unwrap();
        s.save(&backup()).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious", "write went through the link");
        assert!(!fs::symlink_metadata(s.path()).unwrap().file_type().is_symlink());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_instance_id_is_made_once_and_kept() {
        let d = dir("instance");
        let mut s = StateFile::new(&d);
        let id = s.instance_id().unwrap();
        assert!(crate::meeting::peers::is_instance_id(&id), "{id}");
        assert_eq!(fs::metadata(d.join("instance")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(StateFile::new(&d).instance_id().unwrap(), id, "kept across restarts");
        s.remove().unwrap();
        assert_eq!(s.instance_id().unwrap(), id, "removing the backup keeps it");
        // Another state dir is another device.
        let other = dir("instance-other");
        assert_ne!(StateFile::new(&other).instance_id().unwrap(), id);
        // A damaged file is replaced.
        fs::write(d.join("instance"), b"not an id").unwrap();
        let new = s.instance_id().unwrap();
        assert!(crate::meeting::peers::is_instance_id(&new) && new != id);
        fs::remove_dir_all(&d).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }

    #[test]
    fn a_failed_save_leaves_the_previous_backup_whole() {
        let d = dir("failedsave");
        let mut s = StateFile::new(&d);
        s.save(&backup()).unwrap();
        // Something in the way of the temporary file (as good as a full disk for this purpose: the write fails).
        fs::create_dir(d.join(format!("state.json.tmp-{}", std::process::id()))).unwrap();
        let mut other = backup();
        other.previous.status = Availability::Online;
        assert!(s.save(&other).is_err());
        assert_eq!(s.load().unwrap(), Some(backup()));
        // A state directory that cannot be created at all.
        let file = d.join("plain-file");
        fs::write(&file, b"").unwrap();
        let err = StateFile::new(&file.join("sub")).save(&backup()).unwrap_err().to_string();
        assert!(err.starts_with("cannot create "), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    /// A version 2 backup from before the server was recorded is read, its server unknown; one written now names it,
    /// and a reader that does not know the field skips it (miniserde ignores unknown keys), so the version stays.
    #[test]
    fn the_server_is_recorded_and_a_backup_without_it_is_still_read() {
        let with = miniserde::json::to_string(&backup());
        assert!(with.contains(r#""server":"https://chat.example.com/team""#), "{with}");
        let without = with.replace(r#""server":"https://chat.example.com/team","#, "");
        assert!(!without.contains("server"), "{without}");
        let read = parse(without.as_bytes()).unwrap();
        assert_eq!(read, Backup { server: None, ..backup() });
    }

    /// A backup written by release 0.1.0 (version 1) in the middle of a meeting is read, and the rules restore
    /// the user's state from it; saved again, it is written in this version.
    #[test]
    fn a_version_1_backup_is_restored() {
        use crate::meeting::{MeetingSettings, MeetingStatus, Purpose, ServerView, finish};
        use crate::model::UserStatus;
        let bytes = include_bytes!("../tests/fixtures/state-v1.json");
        let b = parse(bytes).unwrap();
        assert_eq!(b.version, BACKUP_VERSION);
        assert_eq!(b.user_id, "u1xq5rj8bbyzmg3ifsr3j4c6ya");
        let lunch = CustomStatus {
            emoji: "sandwich".into(),
            text: "Lunch".into(),
            duration: "".into(),
            expires_at: "0001-01-01T00:00:00Z".into(),
        };
        assert_eq!(b.previous, Previous { status: Availability::Away, manual: true, custom: Some(lunch.clone()) });
        assert_eq!(b.ours.status, Some(Availability::Dnd));
        assert_eq!((b.ours.custom_progress, b.ours.status_progress), (Progress::Applied, Progress::Applied));
        assert_eq!(b.ours.dnd_end_time, 1_795_014_400);

        let settings = MeetingSettings {
            message: " [In a meeting]".into(),
            emoji: "calendar".into(),
            status: MeetingStatus::Dnd,
            ignore_if_offline: true,
            lease: 14_400,
        };
        let view = ServerView {
            status: UserStatus { status: Availability::Dnd, manual: true, dnd_end_time: 1_795_014_360 },
            custom: b.ours.custom.clone(),
            custom_supported: true,
        };
        let plan = finish(&b, &view, &settings, 1_795_003_600);
        assert_eq!(
            plan.calls,
            vec![
                crate::meeting::Call::PutCustom(lunch, Purpose::Restore),
                crate::meeting::Call::PutStatus {
                    status: Availability::Away,
                    dnd_end_time: None,
                    purpose: Purpose::Restore
                },
            ]
        );

        let d = dir("v1");
        let mut s = StateFile::new(&d);
        fs::create_dir_all(&d).unwrap();
        fs::write(s.path(), bytes).unwrap();
        assert_eq!(s.load().unwrap(), Some(b.clone()));
        s.save(&b).unwrap();
        let written = fs::read_to_string(s.path()).unwrap();
        assert!(written.starts_with("{\"version\":2,"), "{written}");
        assert!(written.contains("\"custom_progress\":\"applied\""), "{written}");
        assert_eq!(s.load().unwrap(), Some(b));
        fs::remove_dir_all(&d).unwrap();
    }

    /// Version 1's pairs of flags map onto the three states; a part the user took over stays theirs.
    #[test]
    fn version_1_flags_become_progress() {
        let rows = [
            (false, false, Progress::Pending),
            (true, false, Progress::Applied),
            (false, true, Progress::Released),
            (true, true, Progress::Released),
        ];
        for (applied, released, want) in rows {
            assert_eq!(progress_v1(applied, released), want, "applied={applied} released={released}");
        }
    }
}
