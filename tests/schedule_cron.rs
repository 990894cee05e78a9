//! Cron expressions against hand-computed fire times: crontab's weekday numbering, its
//! day-of-month-or-day-of-week rule, the macros, seconds, and ISC cron's daylight-saving rules
//! at the 2026 transitions of Europe/Berlin (29 March 02:00 -> 03:00, 25 October 03:00 ->
//! 02:00) and America/New_York (8 March 02:00 -> 03:00, 1 November 02:00 -> 01:00).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use stagehand::core::schedule::CronSpec;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

/// `(expression, zone, after, the next fire times in UTC)`.
const CASES: &[(&str, &str, &str, &[&str])] = &[
    // Crontab's weekdays: 0 and 7 Sunday, 1 Monday. 2026-11-26 is a Thursday.
    (
        "0 9 * * 1",
        "UTC",
        "2026-11-26T00:00:00Z",
        &["2026-11-30T09:00:00Z", "2026-12-07T09:00:00Z"],
    ),
    (
        "0 9 * * 0",
        "UTC",
        "2026-11-26T00:00:00Z",
        &["2026-11-29T09:00:00Z"],
    ),
    (
        "0 9 * * 7",
        "UTC",
        "2026-11-26T00:00:00Z",
        &["2026-11-29T09:00:00Z"],
    ),
    (
        "0 9 * * 1-5",
        "UTC",
        "2026-11-27T10:00:00Z",
        &["2026-11-30T09:00:00Z", "2026-12-01T09:00:00Z"],
    ),
    (
        "0 9 * * 5-7",
        "UTC",
        "2026-11-26T10:00:00Z",
        &[
            "2026-11-27T09:00:00Z",
            "2026-11-28T09:00:00Z",
            "2026-11-29T09:00:00Z",
            "2026-12-04T09:00:00Z",
        ],
    ),
    (
        "0 0 * * */2",
        "UTC",
        "2026-11-26T12:00:00Z",
        &[
            "2026-11-28T00:00:00Z",
            "2026-11-29T00:00:00Z",
            "2026-12-01T00:00:00Z",
            "2026-12-03T00:00:00Z",
        ],
    ),
    (
        "30 8 * * MON-FRI",
        "UTC",
        "2026-11-28T00:00:00Z",
        &["2026-11-30T08:30:00Z"],
    ),
    // Day of month OR day of week, when both are given: the 13th, and every Friday.
    (
        "0 0 13 * 5",
        "UTC",
        "2026-11-01T00:00:00Z",
        &[
            "2026-11-06T00:00:00Z",
            "2026-11-13T00:00:00Z",
            "2026-11-20T00:00:00Z",
            "2026-11-27T00:00:00Z",
            "2026-12-04T00:00:00Z",
            "2026-12-11T00:00:00Z",
            "2026-12-13T00:00:00Z",
        ],
    ),
    // Macros and seconds.
    (
        "@hourly",
        "UTC",
        "2026-11-26T10:15:00Z",
        &["2026-11-26T11:00:00Z"],
    ),
    (
        "@daily",
        "UTC",
        "2026-11-26T10:15:00Z",
        &["2026-11-27T00:00:00Z"],
    ),
    (
        "@weekly",
        "UTC",
        "2026-11-26T10:15:00Z",
        &["2026-11-29T00:00:00Z"],
    ),
    (
        "@monthly",
        "UTC",
        "2026-11-26T10:15:00Z",
        &["2026-12-01T00:00:00Z"],
    ),
    (
        "@yearly",
        "UTC",
        "2026-11-26T10:15:00Z",
        &["2027-01-01T00:00:00Z"],
    ),
    (
        "*/10 * * * * *",
        "UTC",
        "2026-11-26T10:15:03Z",
        &["2026-11-26T10:15:10Z", "2026-11-26T10:15:20Z"],
    ),
    (
        "0 0 29 2 *",
        "UTC",
        "2026-11-26T00:00:00Z",
        &["2028-02-29T00:00:00Z"],
    ),
    // A time zone without a transition in reach.
    (
        "0 9 * * *",
        "Europe/Berlin",
        "2026-11-26T00:00:00Z",
        &["2026-11-26T08:00:00Z"],
    ),
    //
    // Berlin, spring forward (02:00 CET -> 03:00 CEST at 01:00Z).
    // A fixed time in the gap fires once, at the transition.
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
    ),
    (
        "0 2 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"],
    ),
    (
        "0,30 2 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        &[
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:00:00Z",
            "2026-03-30T00:30:00Z",
        ],
    ),
    // Fixed times around the gap are untouched.
    (
        "30 1 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T00:30:00Z", "2026-03-29T23:30:00Z"],
    ),
    (
        "30 3 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T01:30:00Z", "2026-03-30T01:30:00Z"],
    ),
    // Wildcards keep real-time spacing: nothing in the gap.
    (
        "*/30 * * * *",
        "Europe/Berlin",
        "2026-03-29T00:15:00Z",
        &[
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:30:00Z",
        ],
    ),
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-03-28T23:30:00Z",
        &[
            "2026-03-29T00:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00Z",
        ],
    ),
    //
    // Berlin, fall back (03:00 CEST -> 02:00 CET at 01:00Z; 02:00-02:59 happens twice).
    // A fixed time in the fold fires once, the first time.
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00:00Z",
        &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
    ),
    (
        "0 3 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00:00Z",
        &["2026-10-25T02:00:00Z", "2026-10-26T02:00:00Z"],
    ),
    // Wildcards fire on both passes: real-time spacing.
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-10-24T23:30:00Z",
        &[
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T02:00:00Z",
        ],
    ),
    (
        "*/30 * * * *",
        "Europe/Berlin",
        "2026-10-24T23:45:00Z",
        &[
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T02:00:00Z",
        ],
    ),
    //
    // New York, spring forward (02:00 EST -> 03:00 EDT at 07:00Z).
    (
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
    ),
    (
        "15 2 * * 0",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T07:00:00Z", "2026-03-15T06:15:00Z"],
    ),
    (
        "*/20 * * * *",
        "America/New_York",
        "2026-03-08T06:30:00Z",
        &[
            "2026-03-08T06:40:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:20:00Z",
        ],
    ),
    // A wildcard hour follows the new clock (ISC): 00:00 EST, then 04:00 EDT.
    (
        "0 */2 * * *",
        "America/New_York",
        "2026-03-08T05:30:00Z",
        &["2026-03-08T08:00:00Z", "2026-03-08T10:00:00Z"],
    ),
    //
    // New York, fall back (02:00 EDT -> 01:00 EST at 06:00Z; 01:00-01:59 happens twice).
    (
        "30 1 * * *",
        "America/New_York",
        "2026-10-31T12:00:00Z",
        &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
    ),
    (
        "0 1 * * *",
        "America/New_York",
        "2026-10-31T12:00:00Z",
        &["2026-11-01T05:00:00Z", "2026-11-02T06:00:00Z"],
    ),
    (
        "*/20 * * * *",
        "America/New_York",
        "2026-11-01T05:10:00Z",
        &[
            "2026-11-01T05:20:00Z",
            "2026-11-01T05:40:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:20:00Z",
            "2026-11-01T06:40:00Z",
            "2026-11-01T07:00:00Z",
        ],
    ),
    (
        "0 * * * *",
        "America/New_York",
        "2026-11-01T04:30:00Z",
        &[
            "2026-11-01T05:00:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T07:00:00Z",
        ],
    ),
];

#[test]
fn cron_expressions_fire_at_the_hand_computed_times() {
    let mut failures = Vec::new();
    for (expression, zone, after, expected) in CASES {
        let tz: Tz = zone.parse().expect("a zone");
        let spec = CronSpec::parse(expression, tz).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<String> = spec
            .upcoming(utc(after), expected.len())
            .iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect();
        if got != *expected {
            failures.push(format!(
                "{expression} in {zone} after {after}:\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_expressions_say_which_part_is_wrong() {
    let cases = [
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("61 * * * *", "minute"),
        ("* 25 * * *", "hour"),
        ("* * 32 * *", "day"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day of week field '8'"),
        ("* * * * 5-1", "backwards"),
        ("@fortnightly", "unknown macro"),
        ("0 0 L * *", "crontab syntax"),
    ];
    for (expression, words) in cases {
        let err = CronSpec::parse(expression, chrono_tz::UTC).expect_err(expression);
        assert!(err.to_string().contains(words), "{expression}: {err}");
    }
}
