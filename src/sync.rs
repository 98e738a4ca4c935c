//! The IO shell around the meeting rules: reads the server, saves the backup before any change, makes the planned
//! calls, and retries with backoff when the server fails, so the daemon never exits because of the server.

use std::time::{Duration, Instant};

use crate::mattermost::ApiError;
use crate::meeting::peers::{self, CATEGORY, End};
use crate::meeting::{self, Backup, Begin, Call, CustomOff, MeetingSettings, Plan, Purpose, ServerView};
use crate::model::{Availability, CustomStatus, Preference, UserStatus};
use crate::state::{StateError, Store};

/// The server as the shell sees it: the real client, or a simulation for dry runs.
pub(crate) trait Backend {
    /// The id of the user whose status is managed.
    fn user_id(&mut self) -> Result<String, ApiError>;
    /// The user's availability (one GET).
    fn status(&mut self, user_id: &str) -> Result<UserStatus, ApiError>;
    /// The user's custom status (one GET).
    fn custom(&mut self, user_id: &str) -> Result<Option<CustomStatus>, ApiError>;
    /// Makes `call`; for a status PUT, the status the server answered with (what it stored), if known.
    fn call(&mut self, user_id: &str, call: &Call) -> Result<Option<UserStatus>, ApiError>;
    /// The entries of a preference category (empty when it holds none): where the user's devices meet.
    fn get_preferences(&mut self, user_id: &str, category: &str) -> Result<Vec<Preference>, ApiError>;
    fn put_preferences(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError>;
    fn delete_preferences(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError>;
    /// Reads the token again where it came from, after the server refused it (401/403): `Ok(true)` when it changed
    /// and is in use from now on. Only a token file can change; a token from the environment or the config file
    /// changes with a reload.
    fn reload_token(&mut self) -> Result<bool, String> {
        Ok(false)
    }
    /// Put before each call in the log: empty for the real server.
    fn log_prefix(&self) -> &'static str {
        ""
    }
    /// The server's address, recorded in each new backup: `None` for a simulated one.
    fn address(&self) -> Option<&str> {
        None
    }
}

/// What the camera says the user is doing, after the debounce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    Meeting,
    NoMeeting,
}

#[derive(Debug)]
enum Failure {
    Api(ApiError),
    State(StateError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Api(e) => e.fmt(f),
            Failure::State(e) => write!(f, "BACKUP FAILED: {e}; not changing anything"),
        }
    }
}

/// Retries after a failure: 2 s doubling to 5 min; a refused token (401/403) 30 s doubling to 5 min (a token file
/// is read again before each retry); a 429 at least its Retry-After.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_AUTH_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// How long to wait after the `failures`-th failure in a row (1 for the first), of which the last `auth_failures`
/// were a refused token.
fn retry_delay(failures: u32, auth_failures: u32, retry_after: Option<Duration>) -> Duration {
    let doubled = |first: Duration, n: u32| first.saturating_mul(1 << n.saturating_sub(1).min(8)).min(RETRY_MAX);
    if auth_failures > 0 {
        return doubled(RETRY_AUTH_FIRST, auth_failures);
    }
    let backoff = doubled(RETRY_FIRST, failures);
    retry_after.map_or(backoff, |d| backoff.max(d.min(Duration::from_secs(3600))))
}
/// How often to look again while the camera is on but the meeting cannot start yet (the user is offline, or the
/// server has yet to end a lapsed DND). Each look is one GET.
const START_RECHECK: Duration = Duration::from_secs(15);
/// How often a device that joined another's meeting status looks whether that one restored meanwhile, and for how
/// long: a restore begun before it joined takes at most a few calls of 20 s each (a failed one starts over and then
/// sees this device's entry).
const JOIN_CONFIRM: Duration = Duration::from_secs(10);
const JOIN_CONFIRM_FOR: Duration = Duration::from_secs(120);

pub(crate) struct Sync<B, S> {
    backend: B,
    store: S,
    settings: MeetingSettings,
    backup: Option<Backup>,
    user_id: Option<String>,
    custom_supported: bool,
    failures: u32,
    /// How many of the last failures in a row were a refused token (401/403).
    auth_failures: u32,
    /// What recovered once a failing streak ends: the server or the state directory.
    recovered: &'static str,
    /// When to act again without a change of `Want`.
    due: Option<Instant>,
    last_want: Option<Want>,
    last_note: Option<String>,
    /// This device's name in the shared place, read from (or made in) the state directory on first use.
    instance: Option<String>,
    /// This device's entry (and the original) must be written: set at a start until written, and after a restart
    /// mid-meeting, since the crash may have come between saving the backup and writing them.
    announce: bool,
    /// This device joined another's meeting status without a call of its own: until this time (Unix seconds) it
    /// looks every `JOIN_CONFIRM` whether the other put the user's status back meanwhile (the last one out may have
    /// read the shared place just before this device's entry arrived, and then takes a few calls to restore).
    confirm_join_until: Option<i64>,
    /// False once the server refused the shared place for good (a 4xx other than 401, 403 or 429): the daemon
    /// then works as the only device, until the next meeting asks again.
    sharing: bool,
    /// A saved backup taken on another server, not yet moved aside.
    foreign: Option<ForeignBackup>,
    /// See `set_token_rereads`.
    token_rereads: bool,
}

/// A backup found at the start that names another server than the one configured.
struct ForeignBackup {
    there: String,
    here: String,
}

impl<B: Backend, S: Store> Sync<B, S> {
    /// Loads the saved backup, if any: a damaged one is moved aside and logged, and the daemon starts clean.
    pub(crate) fn new(backend: B, mut store: S, settings: MeetingSettings) -> Sync<B, S> {
        let mut backup = match store.load() {
            Ok(b) => b,
            Err(e) => {
                log::error!("{e}");
                None
            }
        };
        // Taken on another server (`url` changed since a crash, or since a stop whose restore failed): put back
        // here it would go to another account, and kept in place it would hold up every meeting on this one. The
        // daemon moves it aside at its first step (`set_foreign_aside`); nothing else touches it.
        let mut foreign = None;
        if let (Some(b), Some(here)) = (&backup, backend.address()) {
            if let Some(there) = b.server.as_deref().filter(|there| *there != here) {
                foreign = Some(ForeignBackup { there: there.to_owned(), here: here.to_owned() });
                backup = None;
            }
        }
        if let Some(b) = &backup {
            log::info!(
                "found a backup from a meeting started at {}; resuming",
                crate::time::format_rfc3339(b.started_at)
            );
        }
        let announce = backup.is_some();
        Sync {
            backend,
            store,
            settings,
            backup,
            user_id: None,
            custom_supported: true,
            failures: 0,
            auth_failures: 0,
            recovered: "",
            due: None,
            last_want: None,
            last_note: None,
            instance: None,
            announce,
            confirm_join_until: None,
            sharing: true,
            foreign,
            token_rereads: true,
        }
    }

    /// A saved backup taken on another server, held back: `(there, here)`.
    pub(crate) fn foreign_backup(&self) -> Option<(&str, &str)> {
        self.foreign.as_ref().map(|f| (f.there.as_str(), f.here.as_str()))
    }

    /// Moves a backup from another server aside, whole, with two lines saying so. Until that works nothing is
    /// changed on this server: the next meeting's backup would be written over it.
    fn set_foreign_aside(&mut self) -> Result<(), Failure> {
        let Some(f) = &self.foreign else { return Ok(()) };
        let (there, here) = (f.there.clone(), f.here.clone());
        match self.store.set_aside("other-server", format!("taken on {there}, but url is now {here}")) {
            e @ StateError::Damaged { moved_to: Some(_), .. } => {
                log::error!("{e}");
                log::error!(
                    "the meeting status on {there} ends with its lease; to put the previous status back there, move \
                     the file back and run `mm-status-sync restore` with that server's url and token"
                );
                self.foreign = None;
                Ok(())
            }
            e => Err(Failure::State(e)),
        }
    }

    /// Makes the next `step` act whatever it wants and whatever was due: after a restore that stopped part way
    /// while the meeting goes on, the meeting status must be set again at once. The quick retries of that restore
    /// do not count towards the backoff (a refused token still does).
    pub(crate) fn act_at_next_step(&mut self) {
        self.due = None;
        self.last_want = None;
        self.failures = self.auth_failures;
    }

    /// Whether a token refused by the server is read again from its file before the retry (the default, and again
    /// with each new configuration). Off while the daemon moves to another server: the file may hold the new
    /// server's token by then, which must never be sent to the old one.
    pub(crate) fn set_token_rereads(&mut self, on: bool) {
        self.token_rereads = on;
    }

    pub(crate) fn has_backup(&self) -> bool {
        self.backup.is_some()
    }

    pub(crate) fn backup(&self) -> Option<&Backup> {
        self.backup.as_ref()
    }

    /// Takes a reloaded configuration; a new message applies from the next meeting or renewal.
    pub(crate) fn set_settings(&mut self, settings: MeetingSettings, backend: B) {
        self.settings = settings;
        self.backend = backend;
        self.token_rereads = true;
        self.user_id = None;
        self.custom_supported = true;
        // A reload may fix what failed (a new token): try again now.
        self.failures = 0;
        self.auth_failures = 0;
        self.due = None;
    }

    /// Does what is due for `want`; returns when to be called again without a change (`None`: only on a change).
    pub(crate) fn step(&mut self, want: Want, now: Instant) -> Option<Instant> {
        let changed = self.last_want != Some(want);
        self.last_want = Some(want);
        if let Some(due) = self.due {
            let backing_off = self.failures > 0;
            if now < due && (backing_off || !changed) {
                return Some(due);
            }
        }
        self.reload_token_after_refusal();
        let attempted = Instant::now();
        match self.attempt(want) {
            Ok(next) => {
                if self.failures > 0 {
                    log::info!("{}", self.recovered);
                }
                self.failures = 0;
                self.auth_failures = 0;
                self.due = next.map(|after| now + after);
            }
            Err(failure) => {
                self.count_failure(&failure);
                self.recovered = match failure {
                    Failure::Api(_) => "server reachable again",
                    Failure::State(_) => "backup saved again",
                };
                let delay = self.retry_delay(&failure);
                log::error!("{failure} (retrying in {} s)", delay.as_secs());
                // Counted from the failure, not from the start of the attempt: a server's Retry-After runs from
                // its answer, which may come seconds after the attempt began (slow calls before it, a slow link).
                self.due = Some(now + attempted.elapsed() + delay);
            }
        }
        self.due
    }

    /// Restores now, retrying until `deadline`: for SIGTERM, the `restore` command and a move to another server.
    /// True when nothing of ours is left on the server (or no backup existed). A retry comes after 2 s at most,
    /// but never sooner than a 429's Retry-After, and a refused token is retried only when its file may hold a new
    /// one; a retry that cannot come before `deadline` is not waited for. After a failure the next `step` acts at
    /// once, whatever it wants: a restore that put a part back must not leave a meeting that goes on half marked.
    pub(crate) fn restore_until(&mut self, deadline: Instant) -> bool {
        loop {
            self.reload_token_after_refusal();
            let failure = match self.attempt(Want::NoMeeting) {
                Ok(_) => return true,
                Err(failure) => failure,
            };
            self.count_failure(&failure);
            log::error!("{failure}");
            let delay = match &failure {
                Failure::Api(e) if e.is_auth() && !self.token_rereads => None,
                Failure::Api(e) if e.retry_after().is_some() => Some(self.retry_delay(&failure)),
                _ => Some(self.retry_delay(&failure).min(Duration::from_secs(2))),
            };
            match delay {
                Some(delay) if Instant::now() + delay < deadline => std::thread::sleep(delay),
                _ => {
                    log::error!("could not restore in time; the backup is kept");
                    self.act_at_next_step();
                    return false;
                }
            }
        }
    }

    fn count_failure(&mut self, failure: &Failure) {
        self.failures += 1;
        match failure {
            Failure::Api(e) if e.is_auth() => self.auth_failures += 1,
            _ => self.auth_failures = 0,
        }
    }

    fn retry_delay(&self, failure: &Failure) -> Duration {
        let retry_after = match failure {
            Failure::Api(e) => e.retry_after(),
            Failure::State(_) => None,
        };
        retry_delay(self.failures, self.auth_failures, retry_after)
    }

    /// After the server refused the token: reads a token file again, so that a rotated token is used at once.
    fn reload_token_after_refusal(&mut self) {
        if self.auth_failures == 0 || !self.token_rereads {
            return;
        }
        match self.backend.reload_token() {
            Ok(true) => {
                log::info!("the token file holds a new token; using it");
                self.auth_failures = 0;
            }
            Ok(false) => {}
            Err(e) => log::warn!("cannot read the token file again: {e}"),
        }
    }

    fn note(&mut self, text: String) {
        if self.last_note.as_deref() != Some(&text) {
            log::info!("{text}");
            self.last_note = Some(text);
        }
    }

    /// This device's instance id, from the state directory.
    fn instance(&mut self) -> Result<String, Failure> {
        if let Some(id) = &self.instance {
            return Ok(id.clone());
        }
        let id = self.store.instance_id().map_err(Failure::State)?;
        self.instance = Some(id.clone());
        Ok(id)
    }

    /// One pass: read the server, plan, save, call. Returns how long until the next look while nothing changes.
    fn attempt(&mut self, want: Want) -> Result<Option<Duration>, Failure> {
        self.set_foreign_aside()?;
        if want == Want::NoMeeting && self.backup.is_none() {
            return Ok(None);
        }
        let user_id = match (&self.user_id, &self.backup) {
            (_, Some(b)) => b.user_id.clone(),
            (Some(id), None) => id.clone(),
            (None, None) => {
                let id = self.backend.user_id().map_err(Failure::Api)?;
                self.user_id = Some(id.clone());
                id
            }
        };
        if want == Want::Meeting && self.backup.is_none() {
            // Each meeting asks again: an admin may have turned custom statuses back on since the last 501, or
            // made the shared place usable.
            self.custom_supported = true;
            self.sharing = true;
        }
        // At the end, the shared place first: while another device is still in a meeting, the status is left to
        // it and the server's view is not needed.
        let mut shared = None;
        if let (Want::NoMeeting, Some(_)) = (want, &self.backup) {
            let me = self.instance()?;
            let found = self.read_shared(&user_id, &me)?;
            let restore_begun = self.backup.as_ref().is_some_and(Backup::restore_begun);
            if let End::Leave { others } = peers::end(&me, &found, restore_begun) {
                let leaving = peers::leaving_entry(&me, &self.settings, crate::time::now_unix());
                self.put_shared(&user_id, &[leaving])?;
                // Should the camera come back before this end is through, the meeting writes its entry again.
                self.announce = true;
                let again = self.read_shared(&user_id, &me)?;
                if peers::end_after_leaving(&again) {
                    self.delete_shared(&user_id, &peers::own_removal(&me))?;
                    self.store.remove().map_err(Failure::State)?;
                    self.backup = None;
                    self.confirm_join_until = None;
                    log::info!(
                        "RESTORE LEFT TO ANOTHER DEVICE: still in a meeting on {}; backup deleted.",
                        again.live_names()
                    );
                    return Ok(None);
                }
                log::info!("the other device ({others}) left meanwhile; restoring here");
                shared = Some(again);
            } else {
                shared = Some(found);
            }
        }
        let mut rejoin = false;
        if let (Want::Meeting, Some(_), Some(until)) = (want, &self.backup, self.confirm_join_until) {
            let me = self.instance()?;
            let found = self.read_shared(&user_id, &me)?;
            rejoin = peers::restored_meanwhile(&found);
            // Done once the status came back under us, once no other device is in (it left without restoring, as
            // this one is in), or once a restore begun before this device joined would have finished or failed.
            if rejoin || !found.others_in() || crate::time::now_unix() >= until {
                self.confirm_join_until = None;
            }
        }
        let status = self.backend.status(&user_id).map_err(Failure::Api)?;
        let now = crate::time::now_unix();
        if want == Want::Meeting && self.backup.is_none() {
            if let Some(note) = meeting::start_must_wait(&status, &self.settings, now) {
                self.note(note.to_string());
                return Ok(Some(START_RECHECK));
            }
        }
        let custom = self.backend.custom(&user_id).map_err(Failure::Api)?;
        let mut view = ServerView { status, custom, custom_supported: self.custom_supported };
        // What to write to the shared place once the backup is saved: this device's entry (when `announce_own`),
        // then these.
        let mut announce_own = false;
        let mut put_before = Vec::new();
        let mut delete_after = Vec::new();
        let plan = match (want, &self.backup) {
            (Want::Meeting, None) => {
                // Read first, then the shared place, then write there, then set the marker: a device that does
                // not see another's entry cannot have seen its marker either.
                let found = if peers::may_show_marker(&view, &self.settings) {
                    let me = self.instance()?;
                    let found = self.read_shared(&user_id, &me)?;
                    if peers::view_may_be_stale(&found) {
                        // What looked like a meeting's may have been put back since by the last device out: those
                        // parts are read again.
                        let (status_part, custom_part) = peers::marker_like_parts(&view, &self.settings);
                        let mut second = view.clone();
                        if status_part {
                            second.status = self.backend.status(&user_id).map_err(Failure::Api)?;
                        }
                        if custom_part {
                            second.custom = self.backend.custom(&user_id).map_err(Failure::Api)?;
                        }
                        view = peers::merge_views(&view, second, &self.settings);
                    }
                    Some(found)
                } else {
                    None
                };
                let start = peers::start(found.as_ref(), &view, &self.settings, now);
                if let Some(others) = &start.joined {
                    log::info!("another device is in a meeting ({others}); joining its meeting status");
                    self.confirm_join_until = Some(now + JOIN_CONFIRM_FOR.as_secs() as i64);
                }
                if start.marker_without_original {
                    log::warn!(
                        "the custom status already ends with the meeting message and no device recorded what was \
                         under it; keeping the text before it as the user's"
                    );
                }
                announce_own = true;
                put_before.extend(start.original);
                // Due until written: a start cut short after the backup was saved goes on as a meeting in progress,
                // which writes the entry (and the original) while this is set.
                self.announce = true;
                match meeting::begin_from(start.previous, &view, &self.settings, &user_id, now) {
                    Begin::Wait(note) => {
                        self.note(note.to_string());
                        return Ok(Some(START_RECHECK));
                    }
                    Begin::Start(mut plan) => {
                        plan.backup.server = self.backend.address().map(str::to_owned);
                        *plan
                    }
                }
            }
            (Want::Meeting, Some(b)) => {
                let mut b = b.clone();
                if rejoin {
                    log::info!(
                        "the other device put the user's status back while this one joined its meeting; setting \
                         the meeting status again"
                    );
                    b.forget_applied();
                    self.announce = true;
                }
                let mut rebase_notes = Vec::new();
                if b.restore_begun() {
                    // A meeting that starts again before the last restore finished takes the parts already put
                    // back afresh, as a start would: what the server shows may be another device's marker by now.
                    let me = self.instance()?;
                    let found = self.read_shared(&user_id, &me)?;
                    let own = peers::start(Some(&found), &view, &self.settings, now);
                    if let Some(others) = &own.joined {
                        log::info!("another device is in a meeting ({others}); joining its meeting status");
                        self.confirm_join_until = Some(now + JOIN_CONFIRM_FOR.as_secs() as i64);
                    }
                    let before = b.previous.clone();
                    rebase_notes = meeting::rebase_restored(&mut b, &own.previous, &view, &self.settings, now);
                    // The original the other devices read changes with it, and stays due until written.
                    if b.previous != before {
                        self.announce = true;
                    }
                }
                let mut plan = meeting::during(&b, &view, &self.settings, now);
                plan.notes.splice(0..0, rebase_notes);
                let renewing = plan.calls.iter().any(|c| {
                    matches!(c, Call::PutCustom(_, Purpose::Renew) | Call::PutStatus { purpose: Purpose::Renew, .. })
                });
                announce_own = self.announce || renewing;
                if self.announce {
                    put_before.push(peers::original_entry(&plan.backup.previous));
                }
                plan
            }
            (Want::NoMeeting, Some(b)) => {
                let me = self.instance.as_deref().expect("read above");
                delete_after = peers::cleanup(me, shared.as_ref().expect("read above"));
                meeting::finish(b, &view, &self.settings, now)
            }
            (Want::NoMeeting, None) => return Ok(None),
        };
        self.last_note = None;
        let starting = self.backup.is_none();
        // Also when the start was cut short by a failure after the backup was saved.
        let was_set = self.backup.as_ref().is_some_and(Backup::is_set);
        let shared_writes = SharedWrites { announce_own, put_before, delete_after };
        self.run(plan, want, &user_id, starting, &shared_writes)?;
        if announce_own {
            self.announce = false;
        }
        if want == Want::Meeting && !was_set {
            log::info!("meeting status set");
        }
        match (&self.backup, want) {
            (Some(b), Want::Meeting) => {
                let next = meeting::next_check(b, &self.settings, crate::time::now_unix());
                let next = next.map(|t| Duration::from_secs((t - crate::time::now_unix()).max(1) as u64));
                let confirming = self.confirm_join_until.is_some();
                Ok(if confirming { Some(next.map_or(JOIN_CONFIRM, |n| n.min(JOIN_CONFIRM))) } else { next })
            }
            _ => {
                self.confirm_join_until = None;
                Ok(None)
            }
        }
    }

    fn read_shared(&mut self, user_id: &str, me: &str) -> Result<peers::Shared, Failure> {
        if !self.sharing {
            return Ok(peers::Shared::default());
        }
        let entries = self.backend.get_preferences(user_id, CATEGORY);
        let entries = self.shared_outcome(entries, Vec::new())?;
        Ok(peers::read(&entries, me, crate::time::now_unix()))
    }

    fn put_shared(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), Failure> {
        if !self.sharing {
            return Ok(());
        }
        let result = self.backend.put_preferences(user_id, entries);
        self.shared_outcome(result, ())
    }

    fn delete_shared(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), Failure> {
        if !self.sharing {
            return Ok(());
        }
        let result = self.backend.delete_preferences(user_id, entries);
        self.shared_outcome(result, ())
    }

    /// A call on the shared place that the server refuses for good (not a token problem, not one worth retrying)
    /// must not keep the user's own meeting status from being set or put back: the daemon goes on as the only
    /// device, with one warning.
    fn shared_outcome<T>(&mut self, result: Result<T, ApiError>, fallback: T) -> Result<T, Failure> {
        match result {
            Ok(v) => Ok(v),
            Err(e) if !e.is_retryable() && !e.is_auth() => {
                log::warn!(
                    "the server refuses the preferences the user's devices share ({e}); working as the only device"
                );
                self.sharing = false;
                Ok(fallback)
            }
            Err(e) => Err(Failure::Api(e)),
        }
    }

    /// Saves the plan's backup, writes to the shared place, makes the calls, and at the end removes entries from
    /// the shared place before the backup.
    fn run(
        &mut self,
        plan: Plan,
        want: Want,
        user_id: &str,
        starting: bool,
        shared: &SharedWrites,
    ) -> Result<(), Failure> {
        for note in &plan.notes {
            log::info!("{note}");
        }
        let mut backup = plan.backup;
        // Before any change: a start stops here if the backup cannot be saved (only a restore carries on).
        let unsaved = self.backup.as_ref() != Some(&backup);
        self.save_progress(&backup, want)?;
        if starting && unsaved {
            log::info!("BACKUP: Saved original status ({})", describe_previous(&backup));
        }
        if shared.announce_own || !shared.put_before.is_empty() {
            // After the backup, so that the state directory has shown it can be written before the id is made.
            let me = self.instance()?;
            let now = crate::time::now_unix();
            let own = shared.announce_own.then(|| peers::own_entry(&me, &self.settings, now));
            let entries: Vec<Preference> = own.into_iter().chain(shared.put_before.iter().cloned()).collect();
            self.put_shared(user_id, &entries)?;
        }
        let mut restored = Vec::new();
        let mut custom_refused = None;
        for call in &plan.calls {
            let answer = match self.backend.call(user_id, call) {
                Ok(answer) => {
                    log::info!("{}{call}", self.backend.log_prefix());
                    if let Call::PutStatus { status, purpose: Purpose::Restore, .. } = call {
                        restored.push(format!("Avail: {status}"));
                    }
                    answer
                }
                Err(e) if e.is_not_implemented() && matches!(call, Call::PutCustom(..) | Call::DeleteCustom) => {
                    match backup.custom_statuses_off(call) {
                        CustomOff::KeepForRetry => custom_refused = Some(e),
                        CustomOff::Dropped => {
                            log::warn!(
                                "custom statuses are turned off on this server; working with availability alone"
                            );
                            self.custom_supported = false;
                            self.save_progress(&backup, want)?;
                        }
                    }
                    continue;
                }
                Err(e) if e.is_unknown_emoji() && meeting::without_emoji(call).is_some() => {
                    let instead = meeting::without_emoji(call).unwrap_or_else(|| call.clone());
                    log::warn!("{}", describe_emoji_fallback(call, &instead));
                    match self.backend.call(user_id, &instead) {
                        Ok(answer) => {
                            log::info!("{}{instead}", self.backend.log_prefix());
                            backup.record_answer(&instead, answer.as_ref());
                            self.save_progress(&backup, want)?;
                            continue;
                        }
                        Err(e) => {
                            self.save_progress(&backup, want)?;
                            return Err(Failure::Api(e));
                        }
                    }
                }
                Err(e) => {
                    self.save_progress(&backup, want)?;
                    return Err(Failure::Api(e));
                }
            };
            backup.record_answer(call, answer.as_ref());
            self.save_progress(&backup, want)?;
        }
        if let Some(e) = custom_refused {
            return Err(Failure::Api(e));
        }
        if want == Want::NoMeeting {
            if !shared.delete_after.is_empty() {
                self.delete_shared(user_id, &shared.delete_after)?;
            }
            self.store.remove().map_err(Failure::State)?;
            self.backup = None;
            let what = if restored.is_empty() { String::new() } else { format!(" ({})", restored.join(", ")) };
            log::info!("RESTORE: Status restored{what} and backup deleted.");
        }
        Ok(())
    }

    /// Records progress on disk. While restoring, a failure to record is not a reason to stop: every restore call
    /// is safe to repeat (a part already back needs no call), and removing the backup at the end needs no room.
    fn save_progress(&mut self, backup: &Backup, want: Want) -> Result<(), Failure> {
        if self.backup.as_ref() == Some(backup) {
            return Ok(());
        }
        match self.store.save(backup) {
            Ok(()) => {}
            Err(e) if want == Want::NoMeeting => log::warn!("cannot record restore progress ({e}); carrying on"),
            Err(e) => return Err(Failure::State(e)),
        }
        self.backup = Some(backup.clone());
        Ok(())
    }
}

/// What a pass writes to the shared place of the user's devices.
struct SharedWrites {
    /// This device's entry, for one lease from now.
    announce_own: bool,
    /// Written with it (the original).
    put_before: Vec<Preference>,
    /// Removed at the end, after the restore calls and before the backup.
    delete_after: Vec<Preference>,
}

/// The warning when the server refused an emoji and `instead` is made in place of `refused`.
fn describe_emoji_fallback(refused: &Call, instead: &Call) -> String {
    let Call::PutCustom(cs, purpose) = refused else { return String::new() };
    match (purpose, instead) {
        (Purpose::Restore, Call::DeleteCustom) => format!(
            "the emoji :{}: of the custom status from before the meeting no longer exists on the server and it had \
             no text: lost; clearing the custom status",
            cs.emoji
        ),
        (Purpose::Restore, _) => format!(
            "the emoji :{}: of the custom status from before the meeting no longer exists on the server: lost; \
             putting back {:?} without it",
            cs.emoji, cs.text
        ),
        _ => {
            format!("the server does not know the emoji :{}: (meeting-emoji); marking the meeting without it", cs.emoji)
        }
    }
}

fn describe_previous(b: &Backup) -> String {
    let manual = if b.previous.manual { " manual" } else { "" };
    match &b.previous.custom {
        Some(cs) => format!("Avail: {}{manual}, custom status :{}: {:?}", b.previous.status, cs.emoji, cs.text),
        None => format!("Avail: {}{manual}, no custom status", b.previous.status),
    }
}

/// A pretend server for `--dry-run`: starts online with no custom status, logs every call it would receive, and
/// answers as the real one would, so a dry run walks through the same rules.
pub(crate) struct DryRun {
    status: UserStatus,
    custom: Option<CustomStatus>,
    preferences: Vec<Preference>,
}

impl Default for DryRun {
    fn default() -> DryRun {
        DryRun {
            status: UserStatus { status: Availability::Online, manual: false, dnd_end_time: 0 },
            custom: None,
            preferences: Vec::new(),
        }
    }
}

impl Backend for DryRun {
    fn user_id(&mut self) -> Result<String, ApiError> {
        Ok("dry-run".into())
    }

    fn status(&mut self, _: &str) -> Result<UserStatus, ApiError> {
        Ok(self.status.clone())
    }

    fn custom(&mut self, _: &str) -> Result<Option<CustomStatus>, ApiError> {
        Ok(self.custom.clone())
    }

    fn log_prefix(&self) -> &'static str {
        "dry-run: would "
    }

    fn call(&mut self, _: &str, call: &Call) -> Result<Option<UserStatus>, ApiError> {
        call.apply_to(&mut self.status, &mut self.custom);
        Ok(matches!(call, Call::PutStatus { .. }).then(|| self.status.clone()))
    }

    fn get_preferences(&mut self, _: &str, category: &str) -> Result<Vec<Preference>, ApiError> {
        Ok(self.preferences.iter().filter(|p| p.category == category).cloned().collect())
    }

    fn put_preferences(&mut self, _: &str, entries: &[Preference]) -> Result<(), ApiError> {
        for e in entries {
            self.preferences.retain(|p| (&p.category, &p.name) != (&e.category, &e.name));
            self.preferences.push(e.clone());
        }
        log::info!("dry-run: would tell the user's other devices: in a meeting here");
        Ok(())
    }

    fn delete_preferences(&mut self, _: &str, entries: &[Preference]) -> Result<(), ApiError> {
        self.preferences.retain(|p| !entries.iter().any(|e| (&p.category, &p.name) == (&e.category, &e.name)));
        log::info!("dry-run: would tell the user's other devices: the meeting here is over");
        Ok(())
    }
}

/// The real server, through the client.
pub(crate) struct Server {
    client: crate::mattermost::Client,
    user_id: Option<String>,
    token_file: Option<TokenFile>,
}

/// Where the token came from when it is a file, and how to build a client for another token.
struct TokenFile {
    path: std::path::PathBuf,
    current: crate::mattermost::Secret,
    make_client: Box<dyn Fn(crate::mattermost::Secret) -> Result<crate::mattermost::Client, ApiError>>,
}

impl Server {
    /// `user_id` is the configured one; without it, the token's own user is asked for once.
    pub(crate) fn new(client: crate::mattermost::Client, user_id: Option<String>) -> Server {
        Server { client, user_id, token_file: None }
    }

    /// The token `current` was read from `path`: after a refusal the file is read again, and a new token gets a
    /// new client from `make_client`.
    pub(crate) fn with_token_file(
        mut self,
        path: std::path::PathBuf,
        current: crate::mattermost::Secret,
        make_client: Box<dyn Fn(crate::mattermost::Secret) -> Result<crate::mattermost::Client, ApiError>>,
    ) -> Server {
        self.token_file = Some(TokenFile { path, current, make_client });
        self
    }
}

impl Backend for Server {
    fn address(&self) -> Option<&str> {
        Some(self.client.base_url())
    }

    fn reload_token(&mut self) -> Result<bool, String> {
        let Some(file) = &mut self.token_file else { return Ok(false) };
        // The configuration's reader: the same rules, and the same words when the file is refused.
        let token =
            crate::config::read_token_file(&file.path).map_err(|e| format!("{}: expected {e}", file.path.display()))?;
        if token == file.current {
            return Ok(false);
        }
        self.client = (file.make_client)(token.clone()).map_err(|e| e.to_string())?;
        file.current = token;
        Ok(true)
    }

    fn user_id(&mut self) -> Result<String, ApiError> {
        if let Some(id) = &self.user_id {
            return Ok(id.clone());
        }
        let me = self.client.get_me()?;
        log::info!("managing the status of {} ({})", me.username, me.id);
        self.user_id = Some(me.id.clone());
        Ok(me.id)
    }

    fn status(&mut self, user_id: &str) -> Result<UserStatus, ApiError> {
        self.client.get_status(user_id)
    }

    fn custom(&mut self, user_id: &str) -> Result<Option<CustomStatus>, ApiError> {
        Ok(self.client.get_user(user_id)?.custom_status)
    }

    fn call(&mut self, user_id: &str, call: &Call) -> Result<Option<UserStatus>, ApiError> {
        match call {
            Call::PutCustom(cs, _) => self.client.put_custom_status(user_id, cs).map(|()| None),
            Call::DeleteCustom => self.client.delete_custom_status(user_id).map(|()| None),
            Call::PutStatus { status, dnd_end_time, .. } => {
                self.client.put_status(user_id, status.as_str(), *dnd_end_time).map(Some)
            }
        }
    }

    fn get_preferences(&mut self, user_id: &str, category: &str) -> Result<Vec<Preference>, ApiError> {
        self.client.get_preferences(user_id, category)
    }

    fn put_preferences(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError> {
        self.client.put_preferences(user_id, entries)
    }

    fn delete_preferences(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError> {
        self.client.delete_preferences(user_id, entries)
    }
}

impl<T: Backend + ?Sized> Backend for Box<T> {
    fn user_id(&mut self) -> Result<String, ApiError> {
        (**self).user_id()
    }
    fn status(&mut self, user_id: &str) -> Result<UserStatus, ApiError> {
        (**self).status(user_id)
    }
    fn custom(&mut self, user_id: &str) -> Result<Option<CustomStatus>, ApiError> {
        (**self).custom(user_id)
    }
    fn call(&mut self, user_id: &str, call: &Call) -> Result<Option<UserStatus>, ApiError> {
        (**self).call(user_id, call)
    }
    fn get_preferences(&mut self, user_id: &str, category: &str) -> Result<Vec<Preference>, ApiError> {
        (**self).get_preferences(user_id, category)
    }
    fn put_preferences(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError> {
        (**self).put_preferences(user_id, entries)
    }
    fn delete_preferences(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError> {
        (**self).delete_preferences(user_id, entries)
    }
    fn reload_token(&mut self) -> Result<bool, String> {
        (**self).reload_token()
    }
    fn log_prefix(&self) -> &'static str {
        (**self).log_prefix()
    }
    fn address(&self) -> Option<&str> {
        (**self).address()
    }
}

#[cfg(test)]
mod tests;
