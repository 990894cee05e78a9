//! Cron expressions as crontab writes them, with ISC cron's rules for daylight saving time,
//! over the `cron` crate.
//!
//! The adapter accepts what a crontab holds: five fields (`min hour dom month dow`), six with
//! seconds first, or `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly`
//! (`@annually`). It maps what the crate reads differently:
//!
//! - **Weekdays**: crontab's 0 and 7 are Sunday and 1 is Monday; the crate counts from
//!   Sunday = 1. The day-of-week field is expanded to the days it names and renumbered.
//! - **Day of month or day of week**: when both are restricted, crontab fires on a day that
//!   matches *either*; the crate wants both. The adapter keeps two schedules and takes the
//!   earlier time.
//! - **Daylight saving time** (ISC cron): the crate skips a local time that does not exist
//!   and takes the first of two that do. The adapter instead walks wall-clock times (the crate
//!   in UTC, read as local) and places each in the zone itself. A job at a fixed time of day
//!   (minute and hour both fixed) whose time falls in a spring-forward gap fires once, at the
//!   transition; one whose time occurs twice in a fall-back fold fires once, the first time.
//!   A job with a wildcard minute or hour (`*/15 * * * *`, `0 * * * *`) follows the clock in
//!   real time: nothing in the gap, both passes through the fold.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// How far wall-clock time may jump at a transition, with room to spare (the largest shift
/// anywhere is two hours).
const DST_MARGIN: Duration = Duration::hours(3);
/// The most wall-clock times looked at for one next fire (a schedule that matches nothing
/// real, such as 30 February, has none).
const MAX_CANDIDATES: usize = 100_000;

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    source: String,
    /// One schedule, or two whose union is the crontab's day-of-month-or-day-of-week.
    schedules: Vec<cron::Schedule>,
    /// Minute and hour both fixed: the DST rules for fixed times apply.
    fixed_time: bool,
    tz: Tz,
}

/// Why an expression was refused, naming the part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron expression '{expression}': {reason}")]
pub struct CronError {
    /// The expression as given.
    pub expression: String,
    /// What is wrong with it, and where.
    pub reason: String,
}

const FIELD_NAMES: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day of month",
    "month",
    "day of week",
];

impl CronSpec {
    /// Parses `expression` for the zone `tz`.
    pub fn parse(expression: &str, tz: Tz) -> Result<CronSpec, CronError> {
        let error = |reason: String| CronError {
            expression: expression.to_string(),
            reason,
        };
        let trimmed = expression.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            other if other.starts_with('@') => {
                return Err(error(
                    "unknown macro; expected @hourly, @daily, @weekly, @monthly or @yearly".into(),
                ));
            }
            _ => trimmed.to_string(),
        };
        let mut fields: Vec<String> = expanded.split_whitespace().map(str::to_string).collect();
        match fields.len() {
            5 => fields.insert(0, "0".into()),
            6 => {}
            n => {
                return Err(error(format!(
                    "{n} fields; expected 5 (minute hour day-of-month month day-of-week), or 6 with seconds first"
                )));
            }
        }
        const RANGES: [(u32, u32); 5] = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12)];
        for (i, field) in fields.iter().enumerate().take(5) {
            check_field(field, RANGES[i], i == 4)
                .map_err(|reason| error(format!("{} field '{field}': {reason}", FIELD_NAMES[i])))?;
        }
        let dow = crontab_weekdays(&fields[5])
            .map_err(|reason| error(format!("day of week field '{}': {reason}", fields[5])))?;
        let fixed_time = !fields[1].starts_with('*') && !fields[2].starts_with('*');
        let dom_restricted = !fields[3].starts_with('*');
        let dow_restricted = !fields[5].starts_with('*');
        let mut variants = Vec::new();
        if dom_restricted && dow_restricted {
            // Either may match (crontab): one schedule for each.
            variants.push((fields[3].clone(), "*".to_string()));
            variants.push(("*".to_string(), dow));
        } else {
            variants.push((fields[3].clone(), dow));
        }
        let mut schedules = Vec::new();
        for (dom, dow) in variants {
            let text = format!(
                "{} {} {} {} {} {}",
                fields[0], fields[1], fields[2], dom, fields[4], dow
            );
            let schedule = cron::Schedule::from_str(&text).map_err(|e| error(format!("{e}")))?;
            schedules.push(schedule);
        }
        Ok(CronSpec {
            source: expression.to_string(),
            schedules,
            fixed_time,
            tz,
        })
    }

    /// The expression as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first fire strictly after `after`, or `None` if it never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_far_from_transitions(after)
            .or_else(|| self.next_near_transitions(after))
    }

    /// The quick way, when no clock change is near: the first matching wall time after
    /// `after`'s, placed in the zone. `None` when a transition is within reach (or there is no
    /// next time), for the careful way to decide.
    fn next_far_from_transitions(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset_at = |t: DateTime<Utc>| self.tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        let wall_after = Utc.from_utc_datetime(&after.with_timezone(&self.tz).naive_local());
        let wall = self
            .schedules
            .iter()
            .filter_map(|s| s.after(&wall_after).next())
            .min()?;
        let at = self
            .tz
            .from_local_datetime(&wall.naive_utc())
            .single()?
            .with_timezone(&Utc);
        (at > after && offset_at(after - DST_MARGIN) == offset_at(at + DST_MARGIN)).then_some(at)
    }

    /// The careful way, by the DST rules: every wall time from a little before `after`'s,
    /// placed in the zone, the earliest instant after `after` kept.
    fn next_near_transitions(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let wall_after = after.with_timezone(&self.tz).naive_local();
        let from = Utc.from_utc_datetime(&(wall_after - DST_MARGIN));
        let mut walls: Vec<_> = self
            .schedules
            .iter()
            .map(|s| s.after(&from).peekable())
            .collect();
        let mut best: Option<DateTime<Utc>> = None;
        for _ in 0..MAX_CANDIDATES {
            // The earliest wall time of all schedules (equal ones taken once).
            let wall = walls
                .iter_mut()
                .filter_map(|w| w.peek().map(|d| d.naive_utc()))
                .min()?;
            for w in &mut walls {
                while w.peek().is_some_and(|d| d.naive_utc() == wall) {
                    w.next();
                }
            }
            if let Some(found) = best
                && wall > found.with_timezone(&self.tz).naive_local() + DST_MARGIN
            {
                return best;
            }
            for instant in self.instants(wall) {
                if instant > after && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
        }
        best
    }

    /// The next `n` fires after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = after;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// When the wall-clock time `wall` happens in the zone, by the rules above.
    fn instants(&self, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) => {
                if self.fixed_time {
                    vec![first.with_timezone(&Utc)]
                } else {
                    vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
                }
            }
            LocalResult::None if self.fixed_time => {
                // In a spring-forward gap: once, at the transition (the first wall-clock
                // minute after the gap).
                let mut probe = wall.with_second(0).unwrap_or(wall);
                for _ in 0..DST_MARGIN.num_minutes() {
                    probe += Duration::minutes(1);
                    if let Some(t) = self.tz.from_local_datetime(&probe).earliest() {
                        return vec![t.with_timezone(&Utc)];
                    }
                }
                Vec::new()
            }
            LocalResult::None => Vec::new(),
        }
    }
}

/// Checks a field the crate parses as it is (so that an error can name the field): lists of
/// `*`, `N`, `N-M`, each with an optional `/STEP`, within `range` (month names allowed).
fn check_field(field: &str, (low, high): (u32, u32), months: bool) -> Result<(), String> {
    if field.contains(['?', 'L', 'W', '#']) {
        return Err("'?', 'L', 'W' and '#' are not crontab syntax".into());
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let value = |text: &str| -> Result<u32, String> {
        if !text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            return Err(format!("'{text}' is not a number"));
        }
        let n = match text.parse::<u32>() {
            Ok(n) => n,
            Err(_) if months => MONTHS
                .iter()
                .position(|m| text.eq_ignore_ascii_case(m))
                .map(|p| p as u32 + 1)
                .ok_or_else(|| format!("'{text}' is not a month (1-12 or JAN-DEC)"))?,
            Err(_) => return Err(format!("'{text}' is not a number")),
        };
        if (low..=high).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is out of range ({low}-{high})"))
        }
    };
    for part in field.split(',') {
        let range = match part.split_once('/') {
            Some((range, step)) => {
                if step.parse::<u32>().ok().filter(|s| *s > 0).is_none() {
                    return Err(format!("'{step}' is not a step (1 or more)"));
                }
                range
            }
            None => part,
        };
        if range == "*" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                if value(a)? > value(b)? {
                    return Err(format!("the range '{range}' runs backwards"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

/// Crontab's day-of-week field (0 or 7 Sunday, 1 Monday, names, ranges, steps) as the days
/// it names, numbered as the crate numbers them (Sunday = 1).
fn crontab_weekdays(field: &str) -> Result<String, String> {
    if field == "*" {
        return Ok("*".into());
    }
    if field.contains('?') {
        return Err("'?' is not crontab syntax (use *)".into());
    }
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("'{step}' is not a step (1 or more)"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let (first, last) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (weekday(a)?, weekday(b)?)
        } else {
            let day = weekday(range)?;
            // `5/2` means from 5 to the end of the range (7, Sunday), as in crontab.
            (day, if part.contains('/') { 7 } else { day })
        };
        if first > last {
            return Err(format!("the range '{range}' runs backwards"));
        }
        let mut day = first;
        while day <= last {
            days[(day % 7) as usize] = true;
            day += step;
        }
    }
    let list: Vec<String> = (0..7)
        .filter(|d| days[*d])
        .map(|d| (d + 1).to_string())
        .collect();
    Ok(list.join(","))
}

/// A crontab weekday: 0-7 (0 and 7 Sunday) or a name.
fn weekday(text: &str) -> Result<u32, String> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    if let Ok(n) = text.parse::<u32>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!(
                "'{n}' is not a weekday (crontab counts 0-7, Sunday being 0 and 7)"
            ))
        };
    }
    let lower = text.to_ascii_lowercase();
    NAMES
        .iter()
        .position(|n| lower == *n)
        .map(|p| p as u32)
        .ok_or_else(|| format!("'{text}' is not a weekday (0-7 or SUN-SAT)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crontab_weekdays_map_to_the_crates() {
        let cases = [
            ("1", "2"),
            ("0", "1"),
            ("7", "1"),
            ("1-5", "2,3,4,5,6"),
            ("5-7", "1,6,7"),
            ("*/2", "1,3,5,7"),
            ("1-5/2", "2,4,6"),
            ("MON-FRI", "2,3,4,5,6"),
            ("sun,sat", "1,7"),
        ];
        for (crontab, crate_days) in cases {
            assert_eq!(
                crontab_weekdays(crontab).as_deref(),
                Ok(crate_days),
                "{crontab}"
            );
        }
        for bad in ["8", "5-1", "*/0", "funday", ""] {
            assert!(crontab_weekdays(bad).is_err(), "{bad}");
        }
    }
}
