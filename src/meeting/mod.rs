//! The meeting rules, with no IO: from the saved backup, what the camera is doing and what the server says, decide
//! which Mattermost calls to make. Every rule here has a row in the tables of `tests.rs`.
//!
//! The shell (`crate::sync`) reads the server, asks [`begin`], [`during`] or [`finish`] for a [`Plan`], saves the
//! plan's backup before making any call, makes the calls in order, and records each success with
//! [`Backup::record`]. Any failure stops the plan; the next attempt reads the server again and plans afresh, so
//! every rule must be safe to apply twice.

pub(crate) mod peers;

use std::fmt;

use miniserde::{Deserialize, Serialize};

use crate::model::{Availability, CUSTOM_STATUS_TEXT_MAX, CustomStatus, UserStatus, ZERO_TIME, truncate_runes};
use crate::time::format_rfc3339;

/// Availability during a meeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MeetingStatus {
    Dnd,
    Away,
    Online,
    Offline,
    /// Leave availability alone; only the custom status changes.
    Keep,
}

impl MeetingStatus {
    /// The availability `PUT /users/{id}/status` is asked to set, or `None` for keep.
    pub(crate) fn as_api(self) -> Option<Availability> {
        match self {
            MeetingStatus::Dnd => Some(Availability::Dnd),
            MeetingStatus::Away => Some(Availability::Away),
            MeetingStatus::Online => Some(Availability::Online),
            MeetingStatus::Offline => Some(Availability::Offline),
            MeetingStatus::Keep => None,
        }
    }
}

/// What the meeting logic needs to know of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeetingSettings {
    pub(crate) message: String,
    pub(crate) emoji: String,
    pub(crate) status: MeetingStatus,
    pub(crate) ignore_if_offline: bool,
    /// Seconds; 0 means the meeting status never expires by itself.
    pub(crate) lease: u64,
}

/// Version of the backup format. Version 1 (two flags per part, availability as text) is still read, see
/// `state.rs`; a file with any other version is moved aside, not guessed at.
pub(crate) const BACKUP_VERSION: u32 = 2;

/// What was there before the meeting and what the daemon set, saved durably before the first change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub(crate) version: u32,
    pub(crate) user_id: String,
    /// The server the status was taken from (the client's base URL), so that a start with another `url` never
    /// puts it back on the wrong server. `None` in a backup written before it was recorded (the file's version did
    /// not change: a reader that does not know the field skips it) and in a dry run.
    pub(crate) server: Option<String>,
    /// Unix seconds when the meeting status was first planned.
    pub(crate) started_at: i64,
    pub(crate) previous: Previous,
    pub(crate) ours: Ours,
}

/// The user's own state before the meeting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Previous {
    pub(crate) status: Availability,
    pub(crate) manual: bool,
    /// `None` when there was none, or it had already expired.
    pub(crate) custom: Option<CustomStatus>,
}

/// What the daemon sets, and how far it got with each part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ours {
    pub(crate) custom: Option<CustomStatus>,
    pub(crate) custom_progress: Progress,
    /// The availability set during the meeting; `None` when it is left alone.
    pub(crate) status: Option<Availability>,
    /// Unix seconds when the server ends the DND we set; 0 for never.
    pub(crate) dnd_end_time: i64,
    pub(crate) status_progress: Progress,
}

/// How far one part of the meeting status (the custom status, the availability) has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Not on the server yet.
    Pending,
    /// On the server, as far as the daemon knows.
    Applied,
    /// The user changed it during the meeting: it is theirs now, neither maintained nor restored.
    Released,
    /// Put back by a restore that has not finished yet (another part's call failed). What the server shows for this
    /// part from then on is the user's: a meeting that starts before the restore is done takes it as the user's
    /// own, and the restore leaves it alone.
    Restored,
}

impl Progress {
    /// Whether the part is the daemon's to set, keep and put back: not yet the user's again.
    fn is_ours(self) -> bool {
        matches!(self, Progress::Pending | Progress::Applied)
    }

    fn as_str(self) -> &'static str {
        match self {
            Progress::Pending => "pending",
            Progress::Applied => "applied",
            Progress::Released => "released",
            Progress::Restored => "restored",
        }
    }
}

/// In the state file a progress is a word.
impl Serialize for Progress {
    fn begin(&self) -> miniserde::ser::Fragment<'_> {
        miniserde::ser::Fragment::Str(self.as_str().into())
    }
}

impl Deserialize for Progress {
    fn begin(out: &mut Option<Self>) -> &mut dyn miniserde::de::Visitor {
        // A placeholder that the string then overwrites; any other JSON type fails the whole backup.
        out.insert(Progress::Pending)
    }
}

/// A word this version does not know fails the whole backup (moved aside, never guessed at).
impl miniserde::de::Visitor for Progress {
    fn string(&mut self, s: &str) -> miniserde::Result<()> {
        *self = match s {
            "pending" => Progress::Pending,
            "applied" => Progress::Applied,
            "released" => Progress::Released,
            "restored" => Progress::Restored,
            _ => return Err(miniserde::Error),
        };
        Ok(())
    }
}

/// What the server says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerView {
    pub(crate) status: UserStatus,
    pub(crate) custom: Option<CustomStatus>,
    /// False once the server answered 501 to a custom status call: custom statuses are turned off there.
    pub(crate) custom_supported: bool,
}

/// One Mattermost call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    PutCustom(CustomStatus, Purpose),
    DeleteCustom,
    PutStatus { status: Availability, dnd_end_time: Option<i64>, purpose: Purpose },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Set the meeting status.
    Apply,
    /// Push the meeting status's expiry further while the meeting lasts.
    Renew,
    /// Put back what the user had.
    Restore,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::PutCustom(cs, _) => {
                write!(f, "set custom status :{}: {:?}", cs.emoji, cs.text)?;
                if !cs.duration.is_empty() {
                    write!(f, " until {}", cs.expires_at)?;
                }
                Ok(())
            }
            Call::DeleteCustom => f.write_str("clear custom status"),
            Call::PutStatus { status, dnd_end_time: Some(end), .. } if *end > 0 => {
                write!(f, "set availability {status} until {}", format_rfc3339(*end))
            }
            Call::PutStatus { status, .. } => write!(f, "set availability {status}"),
        }
    }
}

impl Call {
    /// What a server makes of this call, in short, for a view kept without one (a dry run, the tables of the
    /// devices' protocol): a status set this way is manual except online, and a DND end time is stored truncated to
    /// the minute (docs/mattermost-semantics.md, section 2).
    pub(crate) fn apply_to(&self, status: &mut UserStatus, custom: &mut Option<CustomStatus>) {
        match self {
            Call::PutCustom(cs, _) => *custom = Some(cs.clone()),
            Call::DeleteCustom => *custom = None,
            Call::PutStatus { status: availability, dnd_end_time, .. } => {
                *status = UserStatus {
                    status: availability.clone(),
                    manual: *availability != Availability::Online,
                    dnd_end_time: dnd_end_time.map_or(0, truncate_to_minute),
                }
            }
        }
    }
}

/// Something the user should read in the log, beside the calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// The user is offline; nothing is changed (ignore-if-offline).
    Offline,
    /// The user changed their custom status during the meeting; it stays as they set it.
    CustomChangedByUser,
    /// The user changed their availability during the meeting (to this); it stays.
    StatusChangedByUser(Availability),
    /// The user is offline at the end of the meeting; availability is left alone.
    OfflineAtEnd,
    /// The server ended our timed DND while the meeting goes on; it is set again.
    DndLapsed,
    /// Availability is left alone because the user is in their own DND or out of office.
    StatusLeftAlone(Availability),
    /// The server shows DND with an end time in the past (this one): it has ended, and the server's job has yet to
    /// put the previous availability back. A start waits for it.
    DndLapsing(i64),
    /// DND is on with an end time (Unix seconds, 0 for none) that is not the one the server stored for ours: the
    /// user set it during the meeting, and it stays.
    DndSetByUser(i64),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Offline => f.write_str("user is offline; not changing anything (ignore-if-offline)"),
            Note::CustomChangedByUser => f.write_str(
                "RESTORE SKIPPED: custom status was changed during the meeting; leaving it as the user set it",
            ),
            Note::StatusChangedByUser(now) => {
                write!(f, "RESTORE SKIPPED: availability was changed to {now} during the meeting; leaving it")
            }
            Note::OfflineAtEnd => f.write_str("RESTORE SKIPPED: user is currently offline; availability left alone"),
            Note::DndLapsed => {
                f.write_str("the server ended our timed DND while the meeting goes on; setting it again")
            }
            Note::StatusLeftAlone(s) => write!(f, "availability {s} is the user's own; leaving it alone"),
            Note::DndLapsing(end) => write!(
                f,
                "DND ended at {} but the server has not put the previous availability back yet; waiting for it",
                format_rfc3339(*end)
            ),
            Note::DndSetByUser(0) => f.write_str(
                "RESTORE SKIPPED: DND with no end time was set during the meeting (by the user, or the server does \
                 not report the end time of ours, which then ends by itself at the lease); leaving it",
            ),
            Note::DndSetByUser(end) => write!(
                f,
                "RESTORE SKIPPED: DND until {} was set by the user during the meeting; leaving it",
                format_rfc3339(*end)
            ),
        }
    }
}

/// What to do now: save `backup` (when it differs from what is saved), then make `calls` in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) backup: Backup,
    pub(crate) calls: Vec<Call>,
    pub(crate) notes: Vec<Note>,
}

/// The answer of [`begin`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Begin {
    /// Nothing to do now; look again while the camera stays on.
    Wait(Note),
    Start(Box<Plan>),
}

/// Whether a meeting start has to wait, from the availability alone (so that each look while waiting is one GET):
/// the user is offline and wants to be left alone then, or the server shows a DND that has ended but that its job
/// has not cleared yet (docs/mattermost-semantics.md, section 2). That DND is nobody's any more: taking it for the
/// user's would leave the meeting without DND once the job runs, and putting ours over it would make the server
/// keep `dnd` as the status to put back.
pub(crate) fn start_must_wait(status: &UserStatus, settings: &MeetingSettings, now: i64) -> Option<Note> {
    match status.status {
        Availability::Offline if settings.ignore_if_offline => Some(Note::Offline),
        Availability::Dnd if settings.status.as_api().is_some() && lapsed_at(status.dnd_end_time, now) => {
            Some(Note::DndLapsing(status.dnd_end_time))
        }
        _ => None,
    }
}

/// Whether a DND ending at `end` (0: never) has ended at `now`.
fn lapsed_at(end: i64, now: i64) -> bool {
    end > 0 && now >= end
}

/// A meeting starts: what to save and what to set, taking what the server shows as the user's own.
#[cfg(test)]
pub(crate) fn begin(view: &ServerView, settings: &MeetingSettings, user_id: &str, now: i64) -> Begin {
    let previous = Previous {
        status: view.status.status.clone(),
        manual: view.status.manual,
        custom: view.custom.clone().filter(|cs| !cs.is_expired(now)),
    };
    begin_from(previous, view, settings, user_id, now)
}

/// A meeting starts with `previous` as the user's own state, which may differ from what the server shows: another
/// device of the user may have its meeting status up already (see `peers`). The meeting status is composed from
/// `previous`, so a marker already on the server is not appended to again; and availability is left alone when
/// the user's own, not what is shown, is DND or out of office.
pub(crate) fn begin_from(
    previous: Previous,
    view: &ServerView,
    settings: &MeetingSettings,
    user_id: &str,
    now: i64,
) -> Begin {
    if let Some(note) = start_must_wait(&view.status, settings, now) {
        return Begin::Wait(note);
    }
    let mut notes = Vec::new();
    let status = settings.status.as_api().and_then(|target| {
        // The user's own DND and out of office are theirs; an availability we do not know (a newer server's) is
        // left alone too, since we could not put it back.
        if matches!(previous.status, Availability::Dnd | Availability::Ooo | Availability::Other(_)) {
            notes.push(Note::StatusLeftAlone(previous.status.clone()));
            None
        } else {
            Some(target)
        }
    });
    let custom = view
        .custom_supported
        .then(|| meeting_custom_status(previous.custom.as_ref().map_or("", |c| c.text.as_str()), settings, now));
    let backup = Backup {
        version: BACKUP_VERSION,
        user_id: user_id.to_owned(),
        // Stamped by the shell, which knows the server.
        server: None,
        started_at: now,
        previous,
        ours: Ours {
            custom,
            custom_progress: Progress::Pending,
            dnd_end_time: dnd_end_time(status.as_ref(), settings, now),
            status,
            status_progress: Progress::Pending,
        },
    };
    let mut plan = during(&backup, view, settings, now);
    plan.notes.splice(0..0, notes);
    Begin::Start(Box::new(plan))
}

/// The meeting goes on: put our status in place where it is missing, renew what is about to lapse, and let go of
/// whatever the user changed.
pub(crate) fn during(backup: &Backup, view: &ServerView, settings: &MeetingSettings, now: i64) -> Plan {
    let mut next = backup.clone();
    let mut calls = Vec::new();
    let mut notes = Vec::new();
    let ours = &mut next.ours;

    let custom_kept = ours.custom_progress.is_ours() && view.custom_supported;
    if let Some(mut our_custom) = ours.custom.clone().filter(|_| custom_kept) {
        let on_server = shows_ours(view, &our_custom);
        // The backup takes a new expiry only from `Backup::record`, once the server has accepted it: saved ahead of
        // a call that then fails, it would hide that the renewal is still due.
        if on_server {
            ours.custom_progress = Progress::Applied;
            if view.custom.as_ref().is_some_and(|cs| cs.emoji.is_empty()) && !our_custom.emoji.is_empty() {
                // The form without the refused emoji went through unrecorded: that is ours now, and renewals
                // keep it rather than try the refused emoji again.
                our_custom.emoji.clear();
                ours.custom = Some(our_custom.clone());
            }
            if needs_renewal(&our_custom, settings, now) {
                calls.push(Call::PutCustom(renewed(&our_custom, settings, now), Purpose::Renew));
            }
        } else if ours.custom_progress == Progress::Pending {
            // Set again after a partial restore or a failed start, perhaps hours later: an expiry in the past is
            // refused by the server (400), so a due one is renewed on the way.
            let fresh = if needs_renewal(&our_custom, settings, now) {
                renewed(&our_custom, settings, now)
            } else {
                our_custom
            };
            calls.push(Call::PutCustom(fresh, Purpose::Apply));
        } else {
            ours.custom_progress = Progress::Released;
            notes.push(Note::CustomChangedByUser);
        }
    }

    if let Some(our_status) = ours.status.clone().filter(|_| ours.status_progress.is_ours()) {
        let current = &view.status.status;
        // The server's expiry job puts the previous availability back as automatic; by the time we look, activity
        // may have moved an automatic one on (online <-> away), which is no sign of the user either.
        let lapsed = our_status == Availability::Dnd
            && ours.dnd_end_time > 0
            && now >= ours.dnd_end_time
            && (*current == next.previous.status
                || (!next.previous.manual && !view.status.manual && *current != Availability::Dnd));
        let seen_end = view.status.dnd_end_time;
        if *current == our_status
            && our_status == Availability::Dnd
            && ours.status_progress == Progress::Applied
            && !dnd_is_ours(ours.dnd_end_time, seen_end)
        {
            ours.status_progress = Progress::Released;
            notes.push(Note::DndSetByUser(seen_end));
        } else if *current == our_status
            // Pending and equal but automatic (meeting-status away over an automatic away) is not ours: activity
            // would move it on. Only what our PUT would leave (manual, except online) counts as in place.
            && (ours.status_progress != Progress::Pending || view.status.manual == (our_status != Availability::Online))
        {
            // Already in place, also after a crash between the call and recording it: then the end time the server
            // stored is taken from what it shows, unless it shows none (an old server's GET after a cache miss,
            // docs/mattermost-semantics.md section 3): the one planned stays, and the lapse check looks each minute
            // until the server has really ended it.
            if our_status == Availability::Dnd && ours.status_progress == Progress::Pending && seen_end > 0 {
                ours.dnd_end_time = seen_end;
            }
            ours.status_progress = Progress::Applied;
        } else if ours.status_progress == Progress::Pending || lapsed {
            if lapsed {
                notes.push(Note::DndLapsed);
            }
            // As for the custom status: the new end time reaches the backup through `Backup::record`, so a failed
            // renewal still finds the old one lapsed on the retry instead of taking the lapse for the user's change.
            let end = dnd_end_time(Some(&our_status), settings, now);
            let purpose = if lapsed { Purpose::Renew } else { Purpose::Apply };
            calls.push(Call::PutStatus { dnd_end_time: (end > 0).then_some(end), status: our_status, purpose });
        } else {
            ours.status_progress = Progress::Released;
            notes.push(Note::StatusChangedByUser(current.clone()));
        }
    }
    Plan { backup: next, calls, notes }
}

/// A meeting that starts again before the restore of the last one finished: a part already put back is the user's
/// again, and `own` is what they have now, as the devices' rules read it (`peers::start`: the marker another
/// device may have put up since is not the user's). That part starts afresh from it, as [`begin_from`] would; the
/// parts not yet put back are still ours, with the user's state from before the first meeting. Returns the notes.
pub(crate) fn rebase_restored(
    backup: &mut Backup,
    own: &Previous,
    view: &ServerView,
    settings: &MeetingSettings,
    now: i64,
) -> Vec<Note> {
    let mut notes = Vec::new();
    let ours = &mut backup.ours;
    if ours.custom_progress == Progress::Restored && view.custom_supported {
        let own_custom = own.custom.clone().filter(|cs| !cs.is_expired(now));
        ours.custom = Some(meeting_custom_status(own_custom.as_ref().map_or("", |c| c.text.as_str()), settings, now));
        ours.custom_progress = Progress::Pending;
        backup.previous.custom = own_custom;
    }
    if ours.status_progress == Progress::Restored {
        backup.previous.status = own.status.clone();
        backup.previous.manual = own.manual;
        let offline = own.status == Availability::Offline && settings.ignore_if_offline;
        let status = settings.status.as_api().filter(|_| {
            // As at a start: the user's own DND and out of office stay theirs, and an offline user is left alone
            // when asked to (a start would wait; here the other part's meeting goes on).
            let left_alone =
                offline || matches!(own.status, Availability::Dnd | Availability::Ooo | Availability::Other(_));
            if left_alone {
                notes.push(if offline { Note::Offline } else { Note::StatusLeftAlone(own.status.clone()) });
            }
            !left_alone
        });
        ours.dnd_end_time = dnd_end_time(status.as_ref(), settings, now);
        ours.status = status;
        ours.status_progress = Progress::Pending;
    }
    notes
}

impl Backup {
    /// Whether a restore put a part back and could not finish: a meeting starting now rebases that part
    /// ([`rebase_restored`]), and an end finishes the restore rather than leave it to another device.
    pub(crate) fn restore_begun(&self) -> bool {
        self.ours.custom_progress == Progress::Restored || self.ours.status_progress == Progress::Restored
    }
}

/// The meeting is over: put back what is still ours to put back. Once every call of the plan succeeded, the
/// backup can go.
pub(crate) fn finish(backup: &Backup, view: &ServerView, settings: &MeetingSettings, now: i64) -> Plan {
    let mut calls = Vec::new();
    let mut notes = Vec::new();
    // A part found already back is recorded as put back: should the restore stop on the other part and a meeting
    // start again, that part is the user's, not one of ours gone missing.
    let mut next = backup.clone();
    let ours = &backup.ours;

    // A part already put back (`Restored`) is the user's again, whatever the server shows for it now.
    let custom_kept = ours.custom_progress.is_ours() && view.custom_supported;
    if let Some(our_custom) = ours.custom.as_ref().filter(|_| custom_kept) {
        let on_server = shows_ours(view, our_custom);
        let previous = backup.previous.custom.as_ref().filter(|cs| !cs.is_expired(now));
        if on_server {
            match previous {
                Some(previous) => calls.push(Call::PutCustom(previous.clone(), Purpose::Restore)),
                None => calls.push(Call::DeleteCustom),
            }
        } else if view.custom.as_ref() == previous || previous.is_some_and(|p| restored_without_emoji(p, view)) {
            // Already back: a restore whose answer was lost (also one that left out a deleted emoji), or the user
            // put back their own.
            next.ours.custom_progress = Progress::Restored;
        } else if ours.custom_progress == Progress::Applied {
            notes.push(Note::CustomChangedByUser);
        }
    }

    if let Some(our_status) = ours.status.as_ref().filter(|_| ours.status_progress.is_ours()) {
        let current = &view.status;
        let previous = &backup.previous;
        let lapsed = *our_status == Availability::Dnd && ours.dnd_end_time > 0 && now >= ours.dnd_end_time;
        if current.status == *our_status {
            if *our_status == Availability::Dnd && !dnd_is_ours(ours.dnd_end_time, current.dnd_end_time) {
                notes.push(Note::DndSetByUser(current.dnd_end_time));
            } else {
                calls.push(restore_status_call(previous));
            }
        } else if is_restored(previous, current) {
            // Already back: a restore whose answer was lost, or the user put back their own.
            next.ours.status_progress = Progress::Restored;
        } else if lapsed && current.status == previous.status {
            // The server put the previous status back itself, but always as automatic: a manual away or offline
            // must be set again to be exact.
            if previous.manual
                && !current.manual
                && matches!(previous.status, Availability::Away | Availability::Offline)
            {
                calls.push(restore_status_call(previous));
            } else {
                next.ours.status_progress = Progress::Restored;
            }
        } else if current.status == Availability::Offline && settings.ignore_if_offline {
            notes.push(Note::OfflineAtEnd);
        } else if ours.status_progress == Progress::Applied {
            notes.push(Note::StatusChangedByUser(current.status.clone()));
        }
    }
    Plan { backup: next, calls, notes }
}

/// When the shell should look at the server again while the meeting goes on (Unix seconds), if ever.
pub(crate) fn next_check(backup: &Backup, settings: &MeetingSettings, now: i64) -> Option<i64> {
    let ours = &backup.ours;
    let renew = ours
        .custom
        .as_ref()
        .filter(|_| ours.custom_progress.is_ours() && settings.lease > 0)
        .and_then(CustomStatus::expires_at_unix)
        .map(|end| end - renewal_margin(settings));
    // The server's DND expiry job runs every 1 to 5 minutes; look shortly after our end time, then each minute
    // until it has run, to set DND again.
    let lapse = (ours.status == Some(Availability::Dnd) && ours.status_progress.is_ours() && ours.dnd_end_time > 0)
        .then(|| (ours.dnd_end_time + 30).max(now + 60));
    match (renew, lapse) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Backup {
    /// Records that `call` succeeded, with the status the server answered to a status PUT: for DND, its
    /// `dnd_end_time` is what the server stored (docs/mattermost-semantics.md, section 2).
    pub(crate) fn record_answer(&mut self, call: &Call, answer: Option<&UserStatus>) {
        self.record(call);
        if let (Call::PutStatus { status: Availability::Dnd, purpose: Purpose::Apply | Purpose::Renew, .. }, Some(a)) =
            (call, answer)
        {
            if a.status == Availability::Dnd {
                self.ours.dnd_end_time = a.dnd_end_time;
            }
        }
    }

    /// Records that `call` succeeded, when the server's answer is not at hand: a DND end time is recorded as
    /// current servers store it, truncated to the minute.
    pub(crate) fn record(&mut self, call: &Call) {
        match call {
            Call::PutCustom(cs, Purpose::Apply | Purpose::Renew) => {
                self.ours.custom = Some(cs.clone());
                self.ours.custom_progress = Progress::Applied;
            }
            Call::PutStatus { purpose: Purpose::Apply | Purpose::Renew, dnd_end_time, .. } => {
                self.ours.status_progress = Progress::Applied;
                self.ours.dnd_end_time = dnd_end_time.map_or(0, truncate_to_minute);
            }
            // Put back, so ours is no longer on the server, and what the server shows for that part from now on is
            // the user's: a retried restore leaves it alone, and a meeting that starts again before the rest is put
            // back starts that part afresh from it.
            Call::PutCustom(_, Purpose::Restore) | Call::DeleteCustom => self.ours.custom_progress = Progress::Restored,
            Call::PutStatus { purpose: Purpose::Restore, .. } => self.ours.status_progress = Progress::Restored,
        }
    }

    /// Another device of the user put the status back while this one counted that device's marker as on the
    /// server (it joined without a call of its own): what was applied is not there, and not by the user's hand, so
    /// it is pending again.
    pub(crate) fn forget_applied(&mut self) {
        for progress in [&mut self.ours.custom_progress, &mut self.ours.status_progress] {
            if *progress == Progress::Applied {
                *progress = Progress::Pending;
            }
        }
    }

    /// Whether every part of the meeting status is on the server, or was let go.
    pub(crate) fn is_set(&self) -> bool {
        let ours = &self.ours;
        let done = |p: Progress| matches!(p, Progress::Applied | Progress::Released);
        (ours.custom.is_none() || done(ours.custom_progress)) && (ours.status.is_none() || done(ours.status_progress))
    }

    /// The server answered 501 to the custom status `call`: custom statuses are turned off there. Decides what the
    /// backup makes of it.
    pub(crate) fn custom_statuses_off(&mut self, call: &Call) -> CustomOff {
        let restoring = matches!(call, Call::PutCustom(_, Purpose::Restore) | Call::DeleteCustom);
        if self.ours.custom_progress == Progress::Applied || restoring {
            // Our custom status is on the server (a restore call is planned only when it is) and cannot be changed
            // while custom statuses are off, and it would show again once they are back on: keep it, to retry.
            CustomOff::KeepForRetry
        } else {
            // Nothing of ours is on the server: the meeting goes on with availability alone.
            self.ours.custom = None;
            CustomOff::Dropped
        }
    }
}

/// What [`Backup::custom_statuses_off`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CustomOff {
    /// Ours is (or may be) on the server: the backup keeps it and the call is retried later; the rest of the plan
    /// goes on now.
    KeepForRetry,
    /// The backup forgot the custom status part; work with availability alone.
    Dropped,
}

/// How current servers store a DND end time: `floor(t / 60) * 60` (docs/mattermost-semantics.md, section 2).
pub(crate) fn truncate_to_minute(t: i64) -> i64 {
    t.div_euclid(60) * 60
}

/// Whether a DND the server shows with end time `seen` is the one we set and recorded with end time `recorded`
/// (docs/mattermost-semantics.md, section 4). The truncated form covers a backup that recorded the value sent.
/// A DND showing no end while ours has one is taken for the user's: if it is ours after all (an old server's GET
/// after a cache miss), the server still ends it at our lease, while the user's would be lost for good.
pub(crate) fn dnd_is_ours(recorded: i64, seen: i64) -> bool {
    seen == recorded || (recorded > 0 && seen == truncate_to_minute(recorded))
}

/// Whether `current` is what [`restore_status_call`] makes of `previous`.
fn is_restored(previous: &Previous, current: &UserStatus) -> bool {
    match restore_status_call(previous) {
        Call::PutStatus { status, .. } => {
            current.status == status && current.manual == (status != Availability::Online)
        }
        _ => false,
    }
}

/// The availability call that puts `previous` back. Online is how the server's automatic mode comes back, so an
/// automatic away or offline becomes online and the server derives it again.
fn restore_status_call(previous: &Previous) -> Call {
    let status = match &previous.status {
        s @ (Availability::Away | Availability::Offline) if previous.manual => s.clone(),
        _ => Availability::Online,
    };
    Call::PutStatus { status, dnd_end_time: None, purpose: Purpose::Restore }
}

fn dnd_end_time(status: Option<&Availability>, settings: &MeetingSettings, now: i64) -> i64 {
    if status == Some(&Availability::Dnd) && settings.lease > 0 { now + settings.lease as i64 } else { 0 }
}

/// Renew once less than half of the lease is left, so a renewal that fails has time for retries.
fn renewal_margin(settings: &MeetingSettings) -> i64 {
    settings.lease as i64 / 2
}

fn needs_renewal(ours: &CustomStatus, settings: &MeetingSettings, now: i64) -> bool {
    settings.lease > 0 && ours.expires_at_unix().is_none_or(|end| end - now < renewal_margin(settings))
}

/// Whether the server shows our custom status: as planned, or without its emoji (the server refused the emoji and
/// the fallback went through, perhaps unrecorded).
fn shows_ours(view: &ServerView, ours: &CustomStatus) -> bool {
    let bare = CustomStatus { emoji: String::new(), ..ours.clone() };
    view.custom.as_ref().is_some_and(|cs| cs.looks_like(ours) || cs.looks_like(&bare))
}

/// Whether the server shows `previous` put back without its emoji, as a restore does once the server refused the
/// emoji ([`without_emoji`]).
fn restored_without_emoji(previous: &CustomStatus, view: &ServerView) -> bool {
    !previous.emoji.is_empty()
        && view.custom.as_ref() == Some(&CustomStatus { emoji: String::new(), ..previous.clone() })
}

/// Ours with its expiry a lease ahead. Its text and emoji stay as they are on the server (an emoji the server
/// refused was left out when it was set, and is not tried again).
fn renewed(ours: &CustomStatus, settings: &MeetingSettings, now: i64) -> CustomStatus {
    CustomStatus { emoji: ours.emoji.clone(), ..meeting_custom_status_with_text(&ours.text, settings, now) }
}

/// The server refused the emoji of the custom status `call` as unknown (docs/mattermost-semantics.md, section 6):
/// the call to make instead, the same without the emoji, if there is one. A status that is only an emoji has
/// nothing left: a restore then clears the custom status, anything else has no replacement.
pub(crate) fn without_emoji(call: &Call) -> Option<Call> {
    match call {
        Call::PutCustom(cs, purpose) if !cs.emoji.is_empty() => {
            if cs.text.is_empty() {
                return (*purpose == Purpose::Restore).then_some(Call::DeleteCustom);
            }
            Some(Call::PutCustom(CustomStatus { emoji: String::new(), ..cs.clone() }, *purpose))
        }
        _ => None,
    }
}

/// The meeting custom status: the previous text with the marker appended, cut so the whole fits the server's 100
/// characters with the marker whole.
pub(crate) fn meeting_custom_status(previous_text: &str, settings: &MeetingSettings, now: i64) -> CustomStatus {
    meeting_custom_status_with_text(&meeting_text(previous_text, &settings.message), settings, now)
}

fn meeting_custom_status_with_text(text: &str, settings: &MeetingSettings, now: i64) -> CustomStatus {
    let (duration, expires_at) = if settings.lease > 0 {
        ("date_and_time".to_owned(), format_rfc3339(now + settings.lease as i64))
    } else {
        (String::new(), ZERO_TIME.to_owned())
    };
    CustomStatus { emoji: settings.emoji.clone(), text: text.to_owned(), duration, expires_at }
}

/// `previous` + `message`, at most 100 characters, the message kept whole.
pub(crate) fn meeting_text(previous: &str, message: &str) -> String {
    let room = CUSTOM_STATUS_TEXT_MAX.saturating_sub(message.chars().count());
    let kept = truncate_runes(previous, room);
    if kept.trim().is_empty() { message.trim().to_owned() } else { format!("{kept}{message}") }
}

#[cfg(test)]
pub(crate) mod tests;
