//! Several devices of one user, each running the daemon against the same account, with no IO: who is in a meeting,
//! what the user's own status was, and who puts it back. The server's per-user preferences are the only place the
//! devices share; this module decides what to read there, what to write and what to make of it.
//!
//! The shared place is the preference category [`CATEGORY`]: one entry per device, named by its instance id and
//! saying until when it is in a meeting (its lease), and one entry [`ORIGINAL`] holding the user's own status from
//! before the first device's meeting. The server has no compare-and-set (the last write to an entry wins), so the
//! rules are built so that no interleaving of two devices' calls needs one:
//!
//! - A device writes only its own entry, and the original: at its start when it saw none (or did not look, because
//!   the server showed nothing a meeting could have set), and again with its own backup's when it restarts
//!   mid-meeting, joins again after a restore under it, or rebases a part its unfinished restore had put back.
//!   Whoever writes the original, it is the user's: a device that sees a marker takes the user's status from the
//!   original, never from the server.
//! - A start reads the server first, then the shared place, then writes its entry, then sets the marker. So a
//!   device that does not see another's entry cannot have seen that device's marker either.
//! - An end restores only when no other device's entry is live (or its own restore already put a part back: it
//!   finishes that, and a device that joined meanwhile sets its marker again). A device that finds another live marks its entry
//!   leaving and looks once more: of devices ending together, at least one sees no other live and restores. Its
//!   entry goes only once its end is through, so a device starting meanwhile sees the marker may be put back under
//!   it, joins, and looks again.
//!
//! ARCHITECTURE.md has the whole protocol and the outcome of each race.

use miniserde::{Deserialize, Serialize, json};

use super::{MeetingSettings, Previous, ServerView, meeting_custom_status};
use crate::model::{Availability, CustomStatus, Preference};

/// The preference category of our own. Lower case with underscores: the server reads back (`GET`) only categories
/// matching `^[a-z0-9]+([a-z\-\_0-9]+|(__)?)[a-z0-9]+$` in `[A-Za-z0-9_]+`.
pub(crate) const CATEGORY: &str = "mm_status_sync";
/// The name of the entry holding the user's own status. Instance ids are 26 characters, so it cannot clash.
pub(crate) const ORIGINAL: &str = "original";

/// A device's entry: in a meeting until `until` (Unix seconds; 0 when the lease is off: until it says otherwise).
#[derive(Serialize)]
struct DeviceValue {
    until: i64,
}

/// A device's entry once its meeting ended while another device was still in one: it may yet put the status back
/// (if that one leaves meanwhile), so it stays in the shared place until it knows.
#[derive(Serialize)]
struct LeavingValue {
    until: i64,
    leaving: bool,
}

/// Either entry, as read.
#[derive(Deserialize)]
struct EntryValue {
    until: i64,
    leaving: Option<bool>,
}

/// The `original` entry: the user's availability and custom status from before the meeting.
#[derive(Serialize, Deserialize)]
struct OriginalValue {
    status: Availability,
    manual: bool,
    custom: Option<CustomStatus>,
}

/// What the shared place says, seen from one device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shared {
    /// Other devices in a meeting now: (instance id, end of lease, 0 for none).
    pub(crate) live: Vec<(String, i64)>,
    /// Other devices whose meeting ended while another was still in one, and which may be putting the status back
    /// now (instance ids).
    pub(crate) leaving: Vec<String>,
    /// Entries of devices whose lease has passed (a laptop that died mid-meeting): ignored, and removed by the
    /// last one out.
    pub(crate) stale: Vec<String>,
    /// The user's own status, as the first device in saw it.
    pub(crate) original: Option<Previous>,
    /// Whether this device's own entry is there.
    pub(crate) ours: bool,
}

/// Reads the entries of [`CATEGORY`]. Entries of other categories are ignored; an entry that cannot be read (from
/// a future version, say) is neither trusted nor removed.
pub(crate) fn read(entries: &[Preference], me: &str, now: i64) -> Shared {
    let mut shared = Shared::default();
    for entry in entries.iter().filter(|e| e.category == CATEGORY) {
        if entry.name == ORIGINAL {
            shared.original = json::from_str::<OriginalValue>(&entry.value).ok().map(|o| Previous {
                status: o.status,
                manual: o.manual,
                custom: o.custom,
            });
        } else if entry.name == me {
            shared.ours = true;
        } else if let Ok(device) = json::from_str::<EntryValue>(&entry.value) {
            if device.until != 0 && device.until <= now {
                shared.stale.push(entry.name.clone());
            } else if device.leaving == Some(true) {
                shared.leaving.push(entry.name.clone());
            } else {
                shared.live.push((entry.name.clone(), device.until));
            }
        }
    }
    shared
}

impl Shared {
    /// Whether another device is in a meeting now.
    pub(crate) fn others_live(&self) -> bool {
        !self.live.is_empty()
    }

    /// The instance ids of the other devices in a meeting, for the log.
    pub(crate) fn live_names(&self) -> String {
        self.live.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Whether the meeting status on the server may be another device's: one is in a meeting, or has left one and
    /// may be putting the status back. A start then joins the marker, takes the user's own state from the
    /// original, and looks again until that is settled (see [`restored_meanwhile`]).
    pub(crate) fn others_in(&self) -> bool {
        self.others_live() || !self.leaving.is_empty()
    }

    /// The other devices, for the log.
    pub(crate) fn others_names(&self) -> String {
        let leaving = self.leaving.iter().map(|name| format!("{name} (leaving)"));
        self.live.iter().map(|(name, _)| name.clone()).chain(leaving).collect::<Vec<_>>().join(", ")
    }
}

/// This device's entry: in a meeting for one lease from `now`.
pub(crate) fn own_entry(me: &str, settings: &MeetingSettings, now: i64) -> Preference {
    entry(me, json::to_string(&DeviceValue { until: lease_end(settings, now) }))
}

/// This device's entry once its meeting ended while another's goes on ([`End::Leave`]). It holds for one lease, like
/// a meeting's, or [`LEAVING_WITHOUT_LEASE`] when the lease is off: a device that dies while leaving is then stale,
/// not in the way for good.
pub(crate) fn leaving_entry(me: &str, settings: &MeetingSettings, now: i64) -> Preference {
    let until = if settings.lease > 0 { lease_end(settings, now) } else { now + LEAVING_WITHOUT_LEASE };
    entry(me, json::to_string(&LeavingValue { until, leaving: true }))
}

/// How long a leaving entry holds when the lease is off (seconds). Leaving takes a few calls; a device still at it
/// after an hour (its restore failing all along) has a backup, and finishes when it can.
pub(crate) const LEAVING_WITHOUT_LEASE: i64 = 3600;

fn lease_end(settings: &MeetingSettings, now: i64) -> i64 {
    if settings.lease > 0 { now + settings.lease as i64 } else { 0 }
}

/// The `original` entry holding `previous`.
pub(crate) fn original_entry(previous: &Previous) -> Preference {
    let value =
        OriginalValue { status: previous.status.clone(), manual: previous.manual, custom: previous.custom.clone() };
    entry(ORIGINAL, json::to_string(&value))
}

fn entry(name: &str, value: String) -> Preference {
    Preference { category: CATEGORY.to_owned(), name: name.to_owned(), value }
}

/// Whether the server shows something a meeting (another device's, or a dead one's) may have set: then a start
/// must read the shared place before taking anything as the user's. Otherwise it need not, which keeps a lone
/// device's start at one extra call.
pub(crate) fn may_show_marker(view: &ServerView, settings: &MeetingSettings) -> bool {
    let custom = view.custom.as_ref().is_some_and(|cs| is_marker_like(cs, settings));
    let status = settings.status.as_api().is_some_and(|target| view.status.status == target);
    custom || status
}

/// A custom status with the meeting emoji whose text ends with the meeting message: what [`meeting_custom_status`]
/// makes, whatever the text before it.
fn is_marker_like(cs: &CustomStatus, settings: &MeetingSettings) -> bool {
    let message = settings.message.trim();
    // Without an emoji too: the meeting status goes up without it when the server refuses the configured one.
    let emoji = cs.emoji == settings.emoji || cs.emoji.is_empty();
    !message.is_empty() && emoji && cs.text.trim_end().ends_with(message)
}

/// Whether a start that read the server, saw something like a marker, and then found the shared place empty must
/// read the server again before taking anything as the user's. The marker it saw may have been put back by the last
/// device out between the two reads (that device removes the original only after its restore): the server's view
/// is then older than the shared place's. A second read is newer than the shared place's.
pub(crate) fn view_may_be_stale(shared: &Shared) -> bool {
    shared.original.is_none() && !shared.others_live()
}

/// Which parts of the view look like a meeting's: (availability, custom status).
pub(crate) fn marker_like_parts(view: &ServerView, settings: &MeetingSettings) -> (bool, bool) {
    let status = settings.status.as_api().is_some_and(|target| view.status.status == target);
    let custom = view.custom.as_ref().is_some_and(|cs| is_marker_like(cs, settings));
    (status, custom)
}

/// The server's view to start from after a second read ([`view_may_be_stale`]): each part that looked like a
/// marker in the first read is taken from the second; the others stay as first read, which came before the shared
/// place was read and so cannot show a marker of a device that started since.
pub(crate) fn merge_views(first: &ServerView, second: ServerView, settings: &MeetingSettings) -> ServerView {
    let (status_was_marker, custom_was_marker) = marker_like_parts(first, settings);
    ServerView {
        status: if status_was_marker { second.status } else { first.status.clone() },
        custom: if custom_was_marker { second.custom } else { first.custom.clone() },
        custom_supported: first.custom_supported,
    }
}

/// Whether `shown` is the meeting status built on `under` (with the meeting emoji, or without it when the server
/// refused it).
fn is_marker_on(under: Option<&CustomStatus>, shown: &CustomStatus, settings: &MeetingSettings, now: i64) -> bool {
    let built = meeting_custom_status(under.map_or("", |c| c.text.as_str()), settings, now);
    let bare = CustomStatus { emoji: String::new(), ..built.clone() };
    built.looks_like(shown) || bare.looks_like(shown)
}

/// How a meeting starts on this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Start {
    /// The user's own state, never a marker.
    pub(crate) previous: Previous,
    /// The original to put in the shared place beside this device's entry ([`own_entry`]), after the backup is
    /// saved and before the meeting status is set: when none was seen.
    pub(crate) original: Option<Preference>,
    /// Notes for the log.
    pub(crate) joined: Option<String>,
    /// A marker was on the server with no original to tell what was under it: the text before the marker was
    /// kept as the user's, and its emoji is unknown.
    pub(crate) marker_without_original: bool,
}

/// What to take as the user's own state at a meeting's start, and what to write. `shared` is `None` when the shared
/// place was not read (the server showed nothing a meeting could have set, see [`may_show_marker`]).
pub(crate) fn start(shared: Option<&Shared>, view: &ServerView, settings: &MeetingSettings, now: i64) -> Start {
    let original = shared.and_then(|s| s.original.as_ref());
    let live = shared.is_some_and(Shared::others_in);
    let mut marker_without_original = false;

    let custom = match (&view.custom, original) {
        // Our marker built on the original's text: the original's custom status is what is under it.
        (Some(shown), Some(o)) if is_marker_on(o.custom.as_ref(), shown, settings, now) => o.custom.clone(),
        // A marker of unknown origin (an older version, a device of another configuration): the text before the
        // marker is the user's; the emoji under it is lost.
        (Some(shown), _) if is_marker_like(shown, settings) => {
            marker_without_original = true;
            let before = shown.text.trim_end().strip_suffix(settings.message.trim()).unwrap_or("").trim_end();
            (!before.is_empty()).then(|| CustomStatus {
                emoji: String::new(),
                text: before.to_owned(),
                duration: String::new(),
                expires_at: crate::model::ZERO_TIME.to_owned(),
            })
        }
        (shown, _) => shown.clone(),
    }
    .filter(|cs| !cs.is_expired(now));

    let shown = &view.status;
    let target = settings.status.as_api();
    let (status, manual) = match original {
        // Another device's meeting availability.
        Some(o) if live && target.as_ref() == Some(&shown.status) => (o.status.clone(), o.manual),
        // A dead device's DND the server has not ended yet although its end time has passed (the expiry job runs
        // every minute or five).
        Some(o)
            if target == Some(Availability::Dnd)
                && shown.status == Availability::Dnd
                && shown.dnd_end_time > 0
                && shown.dnd_end_time <= now =>
        {
            (o.status.clone(), o.manual)
        }
        // The server ended a dead device's DND and put the previous availability back, but always as automatic.
        Some(o) if !live && shown.status == o.status && o.manual && !shown.manual => (o.status.clone(), o.manual),
        _ => (shown.status.clone(), shown.manual),
    };
    let previous = Previous { status, manual, custom };

    let original = original.is_none().then(|| original_entry(&previous));
    let joined = shared.filter(|s| s.others_in()).map(Shared::others_names);
    Start { previous, original, joined, marker_without_original }
}

/// How a meeting ends on this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Another device is still in a meeting: mark our entry leaving ([`leaving_entry`]) and leave the status to it,
    /// after one more look ([`end_after_leaving`]).
    Leave { others: String },
    /// The last one out: put the user's status back, then remove our entry, the original and stale entries.
    Restore { delete: Vec<Preference> },
}

/// Who puts the status back at this device's end. `restore_begun`: this device's restore already put a part back
/// and stopped ([`Backup::restore_begun`](crate::meeting::Backup::restore_begun)); it finishes it, even with another
/// device in by now: that one joined the marker since, and looks again until the original is gone, then sets its
/// meeting status again. Left half put back, the joined device would take the missing part for the user's change.
pub(crate) fn end(me: &str, shared: &Shared, restore_begun: bool) -> End {
    if shared.others_live() && !restore_begun {
        return End::Leave { others: shared.live_names() };
    }
    End::Restore { delete: cleanup(me, shared) }
}

/// After marking our entry leaving, the shared place read again: `true` when another device is still in, so the
/// status is theirs to put back and our entry goes ([`own_removal`]); `false` when they left meanwhile (devices
/// ending together), so this one restores. Of devices ending together, several may restore; each restore is safe to
/// repeat.
pub(crate) fn end_after_leaving(shared: &Shared) -> bool {
    shared.others_live()
}

/// What a device that leaves the status to another removes: its own entry.
pub(crate) fn own_removal(me: &str) -> Vec<Preference> {
    vec![entry(me, String::new())]
}

/// At a joining device's first look after its start: whether the original has gone meanwhile. Only the last one out
/// removes it, after putting the user's status back, so the marker this device joined without a call of its own is
/// gone too, and not by the user's hand: the meeting status is to be set again.
pub(crate) fn restored_meanwhile(shared: &Shared) -> bool {
    shared.original.is_none()
}

/// What the last one out removes: its own entry, the original, and entries of devices whose lease has passed.
pub(crate) fn cleanup(me: &str, shared: &Shared) -> Vec<Preference> {
    let mut delete = vec![entry(me, String::new()), entry(ORIGINAL, String::new())];
    delete.extend(shared.stale.iter().map(|name| entry(name, String::new())));
    delete.truncate(100);
    delete
}

/// A new instance id: 26 lower-case letters and digits from `random` bytes (the server takes names of at most 32
/// bytes; a UUID's 36 characters would not fit).
pub(crate) fn instance_id_from(random: &[u8; 26]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    random.iter().map(|b| ALPHABET[usize::from(b % 32)] as char).collect()
}

/// Whether `s` is an instance id this version made.
pub(crate) fn is_instance_id(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

#[cfg(test)]
mod tests;
