//! The IO shell around the meeting rules: reads the server, saves the backup before any change, makes the planned
//! calls, and retries with backoff when the server fails, so the daemon never exits because of the server.

use std::time::{Duration, Instant};

use crate::mattermost::ApiError;
use crate::meeting::peers::{self, CATEGORY, End};
use crate::meeting::{self, Backup, Begin, Call, CustomOff, MeetingSettings, Plan, Purpose, ServerView};
use crate::model::{Availability, CustomStatus, Preference, UserStatus};
use crate::state::{StateError, Store};

/// The server as the shell sees it: the real client, or a simulation for dry runs.
pub trait Backend {
    /// The id of the user whose status is managed.
    fn user_id(&mut self) -> Result<String, ApiError>;
    fn view(&mut self, user_id: &str) -> Result<(UserStatus, Option<CustomStatus>), ApiError>;
    fn call(&mut self, user_id: &str, call: &Call) -> Result<(), ApiError>;
    /// The entries of a preference category (empty when it holds none): where the user's devices meet.
    fn get_preferences(&mut self, user_id: &str, category: &str) -> Result<Vec<Preference>, ApiError>;
    fn put_preferences(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError>;
    fn delete_preferences(&mut self, user_id: &str, entries: &[Preference]) -> Result<(), ApiError>;
    /// Put before each call in the log: empty for the real server.
    fn log_prefix(&self) -> &'static str {
        ""
    }
}

/// What the camera says the user is doing, after the debounce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
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

/// Retries after a failure: 2 s doubling to 5 min; a token problem waits 5 min, a 429 at least its Retry-After.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// How soon a device that joined another's meeting status looks whether that one restored meanwhile.
const JOIN_CONFIRM: Duration = Duration::from_secs(10);
/// How often to look again while the camera is on but the user is offline.
const OFFLINE_RECHECK: Duration = Duration::from_secs(60);

pub struct Sync<B, S> {
    backend: B,
    store: S,
    settings: MeetingSettings,
    backup: Option<Backup>,
    user_id: Option<String>,
    custom_supported: bool,
    failures: u32,
    /// What recovered once a failing streak ends: the server or the state directory.
    recovered: &'static str,
    /// When to act again without a change of `Want`.
    due: Option<Instant>,
    last_want: Option<Want>,
    last_note: Option<String>,
    /// This device's name in the shared place, read from (or made in) the state directory on first use.
    instance: Option<String>,
    /// This device's entry (and the original) must be written again: after a restart mid-meeting, since the crash
    /// may have come between saving the backup and writing them.
    announce: bool,
    /// This device joined another's meeting status without a call of its own: its next look checks that the other
    /// did not put the user's status back meanwhile (the last one out may have read the shared place just before
    /// this device's entry arrived).
    confirm_join: bool,
    /// False once the server refused the shared place for good (a 4xx other than 401, 403 or 429): the daemon
    /// then works as the only device, until the next meeting asks again.
    sharing: bool,
}

impl<B: Backend, S: Store> Sync<B, S> {
    /// Loads the saved backup, if any: a damaged one is moved aside and logged, and the daemon starts clean.
    pub fn new(backend: B, mut store: S, settings: MeetingSettings) -> Sync<B, S> {
        let backup = match store.load() {
            Ok(b) => b,
            Err(e) => {
                log::error!("{e}");
                None
            }
        };
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
            recovered: "",
            due: None,
            last_want: None,
            last_note: None,
            instance: None,
            announce,
            confirm_join: false,
            sharing: true,
        }
    }

    pub fn has_backup(&self) -> bool {
        self.backup.is_some()
    }

    pub fn backup(&self) -> Option<&Backup> {
        self.backup.as_ref()
    }

    /// Takes a reloaded configuration; a new message applies from the next meeting or renewal.
    pub fn set_settings(&mut self, settings: MeetingSettings, backend: B) {
        self.settings = settings;
        self.backend = backend;
        self.user_id = None;
        self.custom_supported = true;
        // A reload may fix what failed (a new token): try again now.
        self.failures = 0;
        self.due = None;
    }

    /// Does what is due for `want`; returns when to be called again without a change (`None`: only on a change).
    pub fn step(&mut self, want: Want, now: Instant) -> Option<Instant> {
        let changed = self.last_want != Some(want);
        self.last_want = Some(want);
        if let Some(due) = self.due {
            let backing_off = self.failures > 0;
            if now < due && (backing_off || !changed) {
                return Some(due);
            }
        }
        match self.attempt(want) {
            Ok(next) => {
                if self.failures > 0 {
                    log::info!("{}", self.recovered);
                }
                self.failures = 0;
                self.due = next.map(|after| now + after);
            }
            Err(failure) => {
                self.failures += 1;
                self.recovered = match failure {
                    Failure::Api(_) => "server reachable again",
                    Failure::State(_) => "backup saved again",
                };
                let delay = self.retry_delay(&failure);
                log::error!("{failure} (retrying in {} s)", delay.as_secs());
                self.due = Some(now + delay);
            }
        }
        self.due
    }

    /// Restores now, retrying until `deadline`: for SIGTERM and the `restore` command. True when nothing of ours
    /// is left on the server (or no backup existed).
    pub fn restore_until(&mut self, deadline: Instant) -> bool {
        loop {
            match self.attempt(Want::NoMeeting) {
                Ok(_) => return true,
                Err(failure) => {
                    let delay = self.retry_delay(&failure).min(Duration::from_secs(2));
                    log::error!("{failure}");
                    if Instant::now() + delay >= deadline {
                        log::error!("could not restore in time; the backup is kept for the next start");
                        return false;
                    }
                    std::thread::sleep(delay);
                }
            }
        }
    }

    fn retry_delay(&self, failure: &Failure) -> Duration {
        let backoff = RETRY_FIRST.saturating_mul(1 << self.failures.saturating_sub(1).min(8)).min(RETRY_MAX);
        match failure {
            Failure::Api(e) if e.is_auth() => RETRY_MAX,
            Failure::Api(e) => e.retry_after().map_or(backoff, |d| backoff.max(d.min(Duration::from_secs(3600)))),
            Failure::State(_) => backoff,
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
            // Each meeting asks again: an admin may have turned custom statuses back on since the last 501.
            self.custom_supported = true;
            self.sharing = true;
        }
        // At the end, the shared place first: while another device is still in a meeting, the status is left to
        // it and the server's view is not needed.
        let mut shared = None;
        if let (Want::NoMeeting, Some(_)) = (want, &self.backup) {
            let me = self.instance()?;
            self.instance = Some(me.clone());
            let found = self.read_shared(&user_id, &me)?;
            if let End::Leave { delete, others } = peers::end(&me, &found) {
                self.delete_shared(&user_id, &delete)?;
                let again = self.read_shared(&user_id, &me)?;
                if peers::end_after_leaving(&again) {
                    self.store.remove().map_err(Failure::State)?;
                    self.backup = None;
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
        if want == Want::Meeting && self.backup.is_some() && self.confirm_join {
            let me = self.instance()?;
            let found = self.read_shared(&user_id, &me)?;
            self.confirm_join = false;
            rejoin = peers::restored_meanwhile(&found);
        }
        let (status, custom) = self.backend.view(&user_id).map_err(Failure::Api)?;
        let mut view = ServerView { status, custom, custom_supported: self.custom_supported };
        let now = crate::time::now_unix();
        // What to write to the shared place once the backup is saved: this device's entry (when `announce_own`),
        // then these.
        let mut announce_own = false;
        let mut put_before = Vec::new();
        let mut delete_after = Vec::new();
        let plan = match (want, &self.backup) {
            (Want::Meeting, None) => {
                if view.status.status == Availability::Offline && self.settings.ignore_if_offline {
                    self.note(meeting::Note::Offline.to_string());
                    return Ok(Some(OFFLINE_RECHECK));
                }
                // Read first, then the shared place, then write there, then set the marker: a device that does
                // not see another's entry cannot have seen its marker either.
                let found = if peers::may_show_marker(&view, &self.settings) {
                    let me = self.instance()?;
                    let found = self.read_shared(&user_id, &me)?;
                    if peers::view_may_be_stale(&found) {
                        // What looked like a meeting's may have been put back since by the last device out.
                        let (status, custom) = self.backend.view(&user_id).map_err(Failure::Api)?;
                        let second = ServerView { status, custom, custom_supported: self.custom_supported };
                        view = peers::merge_views(&view, second, &self.settings);
                    }
                    Some(found)
                } else {
                    None
                };
                let start = peers::start(found.as_ref(), &view, &self.settings, now);
                if let Some(others) = &start.joined {
                    log::info!("another device is in a meeting ({others}); joining its meeting status");
                    self.confirm_join = true;
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
                        return Ok(Some(OFFLINE_RECHECK));
                    }
                    Begin::Start(plan) => *plan,
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
                let plan = meeting::during(&b, &view, &self.settings, now);
                let renewing = plan.calls.iter().any(|c| {
                    matches!(c, Call::PutCustom(_, Purpose::Renew) | Call::PutStatus { purpose: Purpose::Renew, .. })
                });
                announce_own = self.announce || renewing;
                if self.announce {
                    put_before.push(peers::original_entry(&b.previous));
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
                Ok(if self.confirm_join { Some(next.map_or(JOIN_CONFIRM, |n| n.min(JOIN_CONFIRM))) } else { next })
            }
            _ => {
                self.confirm_join = false;
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
            match self.backend.call(user_id, call) {
                Ok(()) => {
                    log::info!("{}{call}", self.backend.log_prefix());
                    if let Call::PutStatus { status, purpose: Purpose::Restore, .. } = call {
                        restored.push(format!("Avail: {status}"));
                    }
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
                Err(e) => {
                    self.save_progress(&backup, want)?;
                    return Err(Failure::Api(e));
                }
            }
            backup.record(call);
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

fn describe_previous(b: &Backup) -> String {
    let manual = if b.previous.manual { " manual" } else { "" };
    match &b.previous.custom {
        Some(cs) => format!("Avail: {}{manual}, custom status :{}: {:?}", b.previous.status, cs.emoji, cs.text),
        None => format!("Avail: {}{manual}, no custom status", b.previous.status),
    }
}

/// A pretend server for `--dry-run`: starts online with no custom status, logs every call it would receive, and
/// answers as the real one would, so a dry run walks through the same rules.
pub struct DryRun {
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

    fn view(&mut self, _: &str) -> Result<(UserStatus, Option<CustomStatus>), ApiError> {
        Ok((self.status.clone(), self.custom.clone()))
    }

    fn log_prefix(&self) -> &'static str {
        "dry-run: would "
    }

    fn call(&mut self, _: &str, call: &Call) -> Result<(), ApiError> {
        match call {
            Call::PutCustom(cs, _) => self.custom = Some(cs.clone()),
            Call::DeleteCustom => self.custom = None,
            Call::PutStatus { status, dnd_end_time, .. } => {
                self.status = UserStatus {
                    status: status.clone(),
                    manual: *status != Availability::Online,
                    dnd_end_time: dnd_end_time.unwrap_or(0),
                }
            }
        }
        Ok(())
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
pub struct Server {
    client: crate::mattermost::Client,
    user_id: Option<String>,
}

impl Server {
    /// `user_id` is the configured one; without it, the token's own user is asked for once.
    pub fn new(client: crate::mattermost::Client, user_id: Option<String>) -> Server {
        Server { client, user_id }
    }
}

impl Backend for Server {
    fn user_id(&mut self) -> Result<String, ApiError> {
        if let Some(id) = &self.user_id {
            return Ok(id.clone());
        }
        let me = self.client.get_me()?;
        log::info!("managing the status of {} ({})", me.username, me.id);
        self.user_id = Some(me.id.clone());
        Ok(me.id)
    }

    fn view(&mut self, user_id: &str) -> Result<(UserStatus, Option<CustomStatus>), ApiError> {
        let status = self.client.get_status(user_id)?;
        let user = self.client.get_user(user_id)?;
        Ok((status, user.custom_status))
    }

    fn call(&mut self, user_id: &str, call: &Call) -> Result<(), ApiError> {
        match call {
            Call::PutCustom(cs, _) => self.client.put_custom_status(user_id, cs),
            Call::DeleteCustom => self.client.delete_custom_status(user_id),
            Call::PutStatus { status, dnd_end_time, .. } => {
                self.client.put_status(user_id, status.as_str(), *dnd_end_time).map(|_| ())
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
    fn view(&mut self, user_id: &str) -> Result<(UserStatus, Option<CustomStatus>), ApiError> {
        (**self).view(user_id)
    }
    fn call(&mut self, user_id: &str, call: &Call) -> Result<(), ApiError> {
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
    fn log_prefix(&self) -> &'static str {
        (**self).log_prefix()
    }
}

#[cfg(test)]
mod tests;
