//! How a loop that retries a store speaks of an outage: once when it starts, then reminders at
//! a falling rate (after 30 s, 1 min, 2 min, 4 min, ...), and once when it ends; never a line
//! per retry.

use std::time::{Duration, Instant};

/// The first reminder comes this long into an outage; each next one after twice as long.
const FIRST_REMINDER: Duration = Duration::from_secs(30);

/// What to say about an outage now, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageNote {
    /// The outage has just begun.
    Started,
    /// It still lasts, this long so far.
    StillDown(Duration),
}

/// One outage's timeline.
#[derive(Debug, Clone, Default)]
pub struct Outage {
    since: Option<Instant>,
    next_reminder: Duration,
}

impl Outage {
    /// A call failed: what to say about it, if anything.
    pub fn failed(&mut self) -> Option<OutageNote> {
        self.failed_at(Instant::now())
    }

    fn failed_at(&mut self, now: Instant) -> Option<OutageNote> {
        match self.since {
            None => {
                self.since = Some(now);
                self.next_reminder = FIRST_REMINDER;
                Some(OutageNote::Started)
            }
            Some(since) if now.duration_since(since) >= self.next_reminder => {
                self.next_reminder *= 2;
                Some(OutageNote::StillDown(now.duration_since(since)))
            }
            Some(_) => None,
        }
    }

    /// A call succeeded: how long the outage lasted, if there was one.
    pub fn answered(&mut self) -> Option<Duration> {
        self.since.take().map(|since| since.elapsed())
    }

    /// Whether an outage is going on.
    pub fn is_down(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_told_once_then_at_a_falling_rate() {
        let mut outage = Outage::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut said = Vec::new();
        for second in 0..600 {
            if let Some(note) = outage.failed_at(at(second)) {
                said.push((second, note));
            }
        }
        let seconds: Vec<u64> = said.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seconds,
            [0, 30, 60, 120, 240, 480],
            "ten minutes, six lines"
        );
        assert_eq!(said[0].1, OutageNote::Started);
        assert!(outage.answered().is_some());
        assert!(outage.answered().is_none(), "one end per outage");
        assert_eq!(outage.failed_at(at(700)), Some(OutageNote::Started));
    }
}
