//! Turns "some device is in use right now" into meeting start and end, so brief probes (browsers listing
//! cameras, udev, face unlock) and brief drops in a call change nothing. Pure: time is passed in.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Starting { since: Instant },
    Active,
    Ending { since: Instant },
}

/// A meeting change the daemon acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    Started,
    Ended,
}

#[derive(Clone, Debug)]
pub(crate) struct Debounce {
    pub(crate) start_delay: Duration,
    pub(crate) end_delay: Duration,
    state: State,
}

impl Debounce {
    /// `active` starts in a meeting (a backup was found): it then ends only after `end_delay` of free devices.
    pub(crate) fn new(start_delay: Duration, end_delay: Duration, active: bool) -> Debounce {
        Debounce { start_delay, end_delay, state: if active { State::Active } else { State::Idle } }
    }

    /// Whether the meeting is on (it may be ending).
    pub(crate) fn in_meeting(&self) -> bool {
        matches!(self.state, State::Active | State::Ending { .. })
    }

    /// When the current state changes by itself if nothing else happens.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Starting { since } => Some(since + self.start_delay),
            State::Ending { since } => Some(since + self.end_delay),
            State::Idle | State::Active => None,
        }
    }

    /// Takes what the devices look like at `now`.
    pub(crate) fn observe(&mut self, in_use: bool, now: Instant) -> Option<Transition> {
        self.state = match (self.state, in_use) {
            (State::Idle, true) => State::Starting { since: now },
            (State::Starting { .. }, false) => State::Idle,
            (State::Active, false) => State::Ending { since: now },
            (State::Ending { .. }, true) => State::Active,
            (s, _) => s,
        };
        match self.state {
            State::Starting { since } if now.duration_since(since) >= self.start_delay => {
                self.state = State::Active;
                Some(Transition::Started)
            }
            State::Ending { since } if now.duration_since(since) >= self.end_delay => {
                self.state = State::Idle;
                Some(Transition::Ended)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row: a timeline of (seconds, in use) observations and the transitions expected at each.
    #[test]
    fn starts_and_ends_only_after_continuous_use_and_continuous_rest() {
        use Transition::*;
        type Timeline<'a> = &'a [(u64, bool, Option<Transition>)];
        let rows: &[(u64, u64, bool, Timeline)] = &[
            // start 5, end 30: a 2-second probe is nothing.
            (5, 30, false, &[(0, true, None), (2, false, None), (10, false, None)]),
            (5, 30, false, &[(0, true, None), (4, true, None), (5, true, Some(Started)), (6, true, None)]),
            // A drop in the call shorter than the end delay keeps the meeting.
            (
                5,
                30,
                false,
                &[(0, true, None), (5, true, Some(Started)), (10, false, None), (20, true, None), (60, true, None)],
            ),
            (
                5,
                30,
                false,
                &[
                    (0, true, None),
                    (5, true, Some(Started)),
                    (10, false, None),
                    (39, false, None),
                    (40, false, Some(Ended)),
                ],
            ),
            // Restarting on a reopen: the start delay counts again from the reopen.
            (
                5,
                30,
                false,
                &[(0, true, None), (3, false, None), (4, true, None), (8, true, None), (9, true, Some(Started))],
            ),
            // Zero delays act at once.
            (0, 0, false, &[(0, true, Some(Started)), (1, false, Some(Ended))]),
            // Resuming from a backup: free devices end the meeting after the end delay.
            (5, 30, true, &[(0, false, None), (30, false, Some(Ended))]),
            (5, 30, true, &[(0, true, None), (100, true, None)]),
        ];
        for (start, end, active, timeline) in rows {
            let t0 = Instant::now();
            let mut d = Debounce::new(Duration::from_secs(*start), Duration::from_secs(*end), *active);
            for (at, in_use, want) in *timeline {
                assert_eq!(d.observe(*in_use, t0 + Duration::from_secs(*at)), *want, "{timeline:?} at {at}");
            }
        }
    }

    #[test]
    fn deadline_says_when_to_look_again() {
        let t0 = Instant::now();
        let mut d = Debounce::new(Duration::from_secs(5), Duration::from_secs(30), false);
        assert_eq!(d.deadline(), None);
        d.observe(true, t0);
        assert_eq!(d.deadline(), Some(t0 + Duration::from_secs(5)));
        d.observe(true, t0 + Duration::from_secs(5));
        assert!(d.in_meeting() && d.deadline().is_none());
        d.observe(false, t0 + Duration::from_secs(6));
        assert_eq!(d.deadline(), Some(t0 + Duration::from_secs(36)));
    }
}
