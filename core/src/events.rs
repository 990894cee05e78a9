//! Where a job event sits in its queue's event history, so that a follower who lost its
//! connection can ask for what came after ([`crate::store::QueueStore::events_after`]).
//!
//! A position is `MAJOR-MINOR.INDEX`: on Redis the stream entry's id and the event's index in
//! that entry (the scripts batch many jobs' events in one entry); in memory a sequence number.
//! Positions of one queue are totally ordered, and the text form round-trips.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::store::JobEvent;

/// One event's place in its queue's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventPosition {
    /// Redis: the entry id's milliseconds; memory: the sequence number.
    pub major: u64,
    /// Redis: the entry id's sequence; memory: 0.
    pub minor: u64,
    /// The event's index within its entry.
    pub index: u32,
}

impl fmt::Display for EventPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}.{}", self.major, self.minor, self.index)
    }
}

impl FromStr for EventPosition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not an event position (MAJOR-MINOR.INDEX)");
        let (entry, index) = s.split_once('.').ok_or_else(bad)?;
        let (major, minor) = entry.split_once('-').ok_or_else(bad)?;
        Ok(EventPosition {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
            index: index.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for EventPosition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventPosition {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Events after a position, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    /// Up to the number asked for.
    pub events: Vec<JobEvent>,
    /// True when the history no longer reaches back to the position asked for: events after
    /// it may have been trimmed away.
    pub trimmed: bool,
    /// True when the position is past the newest event the store holds, or not one of this
    /// store's (the store was reset, or its positions restarted): nothing after it can be
    /// told apart, so the follower starts from now.
    pub ahead: bool,
}

#[cfg(test)]
mod tests {
    use super::EventPosition;

    #[test]
    fn positions_round_trip_and_order() {
        let a: EventPosition = "1700000000000-3.7".parse().expect("parses");
        assert_eq!(a.to_string(), "1700000000000-3.7");
        let b: EventPosition = "1700000000000-4.0".parse().expect("parses");
        assert!(a < b);
        for bad in ["", "1-2", "1.2", "a-1.0", "1-2.x", "-1-2.0", "1-2.3.4"] {
            assert!(bad.parse::<EventPosition>().is_err(), "{bad}");
        }
    }
}
