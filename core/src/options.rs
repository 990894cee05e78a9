//! Job options: what a caller may ask for (`JobOptionsInput`), validated and merged with the
//! queue's defaults into what a job carries (`JobOptions`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The highest priority number accepted (as in BullMQ: 2^21).
pub const MAX_PRIORITY: u32 = 2_097_152;
/// The most attempts a job may ask for.
pub const MAX_ATTEMPTS: u32 = 10_000;
/// The longest custom job id accepted, in bytes.
pub const MAX_JOB_ID_LEN: usize = 256;
/// The longest duration any option takes (delays, backoff, timeouts, retention ages): ten
/// years in milliseconds. Sums of it with a clock stay exact in a Lua number (below 2^53).
pub const MAX_DURATION_MS: u64 = 315_360_000_000;
/// The most finished jobs a retention may keep.
pub const MAX_KEEP_COUNT: u64 = 1_000_000_000;
/// The longest job name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Options a job carries, with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    /// A caller-chosen id; adding it again returns the existing job.
    pub job_id: Option<String>,
    /// Wait this long before the job becomes ready.
    pub delay_ms: u64,
    /// 0 = none (runs first); otherwise lower numbers run first.
    pub priority: u32,
    /// How many attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The delay before each retry.
    pub backoff: Backoff,
    /// An attempt running longer than this fails.
    pub timeout_ms: Option<u64>,
    /// What to keep of completed jobs.
    pub remove_on_complete: Retention,
    /// What to keep of failed jobs.
    pub remove_on_fail: Retention,
    /// Run before the jobs already waiting.
    pub lifo: bool,
}

impl Default for JobOptions {
    /// The seed's defaults: 3 attempts, exponential backoff from 1 s, keep 100 completed and
    /// 1,000 failed jobs.
    fn default() -> Self {
        JobOptions {
            job_id: None,
            delay_ms: 0,
            priority: 0,
            attempts: 3,
            backoff: Backoff::Exponential {
                delay_ms: 1000,
                jitter: 0.0,
                max_delay_ms: None,
            },
            timeout_ms: None,
            remove_on_complete: Retention::Keep {
                count: Some(100),
                age_ms: None,
            },
            remove_on_fail: Retention::Keep {
                count: Some(1000),
                age_ms: None,
            },
            lifo: false,
        }
    }
}

/// The delay before a retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Backoff {
    /// The same delay before every retry.
    Fixed {
        /// The delay.
        delay_ms: u64,
        /// Take up to this fraction (0..=1) off each delay at random.
        #[serde(default)]
        jitter: f64,
    },
    /// `delay_ms * 2^(attempt-1)`, optionally capped.
    Exponential {
        /// The delay before the first retry.
        delay_ms: u64,
        /// Take up to this fraction (0..=1) off each delay at random.
        #[serde(default)]
        jitter: f64,
        /// No delay is longer than this.
        #[serde(default)]
        max_delay_ms: Option<u64>,
    },
}

impl Backoff {
    /// The delay before the retry that follows failed attempt number `attempt` (1-based).
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let (raw, jitter) = match *self {
            Backoff::Fixed { delay_ms, jitter } => (delay_ms, jitter),
            Backoff::Exponential {
                delay_ms,
                jitter,
                max_delay_ms,
            } => {
                let factor = 1u64
                    .checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u64::MAX);
                let grown = delay_ms.saturating_mul(factor);
                (max_delay_ms.map_or(grown, |cap| grown.min(cap)), jitter)
            }
        };
        let raw = raw.min(MAX_DURATION_MS);
        if jitter > 0.0 {
            let cut = (raw as f64 * jitter.min(1.0) * fastrand::f64()) as u64;
            raw - cut.min(raw)
        } else {
            raw
        }
    }

    fn validate(&self) -> Result<(), OptionsError> {
        let (delay_ms, jitter, max_delay_ms) = match *self {
            Backoff::Fixed { delay_ms, jitter } => (delay_ms, jitter, None),
            Backoff::Exponential {
                delay_ms,
                jitter,
                max_delay_ms,
            } => (delay_ms, jitter, max_delay_ms),
        };
        if !(0.0..=1.0).contains(&jitter) {
            return Err(OptionsError::new(
                "backoff.jitter",
                format!("must be between 0 and 1, got {jitter}"),
            ));
        }
        duration("backoff.delay_ms", delay_ms)?;
        if let Some(max) = max_delay_ms {
            duration("backoff.max_delay_ms", max)?;
        }
        Ok(())
    }
}

/// What to keep of finished jobs: `true` removes at once, `false` keeps all, a number keeps
/// the last N, `{"count": N, "age_ms": A}` keeps at most N and none older than A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep every finished job.
    KeepAll,
    /// Remove the job as soon as it finishes.
    RemoveAll,
    /// Keep the newest `count`, none older than `age_ms`.
    Keep {
        /// Most jobs kept.
        count: Option<u64>,
        /// Oldest job kept, by finish time.
        age_ms: Option<u64>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RetentionRepr {
    Flag(bool),
    Count(u64),
    Keep(KeepRepr),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepRepr {
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    age_ms: Option<u64>,
}

impl Serialize for Retention {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Retention::KeepAll => RetentionRepr::Flag(false),
            Retention::RemoveAll => RetentionRepr::Flag(true),
            Retention::Keep {
                count: Some(n),
                age_ms: None,
            } => RetentionRepr::Count(n),
            Retention::Keep { count, age_ms } => RetentionRepr::Keep(KeepRepr { count, age_ms }),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let repr = RetentionRepr::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected true (remove), false (keep all), a count N, or {\"count\": N, \"age_ms\": A} (no other fields)",
            )
        })?;
        Ok(match repr {
            RetentionRepr::Flag(true) => Retention::RemoveAll,
            RetentionRepr::Flag(false) => Retention::KeepAll,
            RetentionRepr::Count(n) => Retention::Keep {
                count: Some(n),
                age_ms: None,
            },
            RetentionRepr::Keep(KeepRepr { count, age_ms }) => Retention::Keep { count, age_ms },
        })
    }
}

impl Retention {
    fn validate(&self, field: &'static str, age_field: &'static str) -> Result<(), OptionsError> {
        if let Retention::Keep { count, age_ms } = *self {
            if let Some(count) = count
                && count > MAX_KEEP_COUNT
            {
                return Err(OptionsError::new(
                    field,
                    format!("a count must be at most {MAX_KEEP_COUNT}, got {count}"),
                ));
            }
            if let Some(age) = age_ms {
                duration(age_field, age)?;
            }
        }
        Ok(())
    }
}

/// Checks a duration in milliseconds against [`MAX_DURATION_MS`].
fn duration(field: &'static str, ms: u64) -> Result<u64, OptionsError> {
    if ms > MAX_DURATION_MS {
        return Err(OptionsError::new(
            field,
            format!("must be at most {MAX_DURATION_MS} ms (ten years), got {ms}"),
        ));
    }
    Ok(ms)
}

/// Options as a caller gives them: every field optional, numbers signed so that a negative
/// value gets a clear error rather than a parse failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOptionsInput {
    /// See [`JobOptions::job_id`].
    pub job_id: Option<String>,
    /// See [`JobOptions::delay_ms`].
    pub delay_ms: Option<i64>,
    /// See [`JobOptions::priority`].
    pub priority: Option<i64>,
    /// See [`JobOptions::attempts`].
    pub attempts: Option<i64>,
    /// See [`JobOptions::backoff`].
    pub backoff: Option<Backoff>,
    /// See [`JobOptions::timeout_ms`].
    pub timeout_ms: Option<i64>,
    /// See [`JobOptions::remove_on_complete`].
    pub remove_on_complete: Option<Retention>,
    /// See [`JobOptions::remove_on_fail`].
    pub remove_on_fail: Option<Retention>,
    /// See [`JobOptions::lifo`].
    pub lifo: Option<bool>,
}

/// A bad option value, naming the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("options.{field}: {problem}")]
pub struct OptionsError {
    /// The option's name.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl OptionsError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        OptionsError {
            field,
            problem: problem.into(),
        }
    }
}

fn in_range(field: &'static str, value: i64, min: i64, max: i64) -> Result<i64, OptionsError> {
    if value < min || value > max {
        let range = if max == i64::MAX {
            format!("must be at least {min}")
        } else {
            format!("must be between {min} and {max}")
        };
        return Err(OptionsError::new(field, format!("{range}, got {value}")));
    }
    Ok(value)
}

impl JobOptionsInput {
    /// Validates these options and fills what is missing from `defaults`.
    pub fn resolve(&self, defaults: &JobOptions) -> Result<JobOptions, OptionsError> {
        let mut out = defaults.clone();
        if let Some(id) = &self.job_id {
            validate_job_id(id)?;
            out.job_id = Some(id.clone());
        }
        if let Some(delay) = self.delay_ms {
            out.delay_ms = in_range("delay_ms", delay, 0, MAX_DURATION_MS as i64)? as u64;
        }
        if let Some(priority) = self.priority {
            out.priority = in_range("priority", priority, 0, MAX_PRIORITY as i64)? as u32;
        }
        if let Some(attempts) = self.attempts {
            out.attempts = in_range("attempts", attempts, 1, MAX_ATTEMPTS as i64)? as u32;
        }
        if let Some(backoff) = &self.backoff {
            backoff.validate()?;
            out.backoff = backoff.clone();
        }
        if let Some(timeout) = self.timeout_ms {
            out.timeout_ms =
                Some(in_range("timeout_ms", timeout, 1, MAX_DURATION_MS as i64)? as u64);
        }
        if let Some(keep) = self.remove_on_complete {
            keep.validate("remove_on_complete", "remove_on_complete.age_ms")?;
            out.remove_on_complete = keep;
        }
        if let Some(keep) = self.remove_on_fail {
            keep.validate("remove_on_fail", "remove_on_fail.age_ms")?;
            out.remove_on_fail = keep;
        }
        if let Some(lifo) = self.lifo {
            out.lifo = lifo;
        }
        Ok(out)
    }
}

/// A job's name must be 1 to [`MAX_NAME_LEN`] bytes.
pub fn validate_job_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("name: must be 1 to {MAX_NAME_LEN} bytes"));
    }
    Ok(())
}

/// A custom id must be non-empty, at most [`MAX_JOB_ID_LEN`] bytes, and not all digits
/// (generated ids are numbers, so a numeric custom id could collide with one).
pub fn validate_job_id(id: &str) -> Result<(), OptionsError> {
    if id.is_empty() {
        return Err(OptionsError::new("job_id", "must not be empty"));
    }
    if id.len() > MAX_JOB_ID_LEN {
        return Err(OptionsError::new(
            "job_id",
            format!("must be at most {MAX_JOB_ID_LEN} bytes"),
        ));
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OptionsError::new(
            "job_id",
            "must not be all digits (generated ids are numbers); add a prefix such as 'order-42'",
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(OptionsError::new(
            "job_id",
            "must not contain control characters",
        ));
    }
    if id == "." || id == ".." {
        return Err(OptionsError::new(
            "job_id",
            "must not be '.' or '..' (a URL path cannot name them: clients resolve them away)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_a_url_cannot_name_are_refused() {
        for id in [".", ".."] {
            assert!(validate_job_id(id).is_err(), "{id}");
        }
        for id in ["...", ".a", "a.b", "order-42"] {
            assert!(validate_job_id(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn exponential_backoff_doubles_and_caps() {
        let b = Backoff::Exponential {
            delay_ms: 100,
            jitter: 0.0,
            max_delay_ms: Some(350),
        };
        assert_eq!([1, 2, 3, 4].map(|a| b.delay_ms(a)), [100, 200, 350, 350]);
    }

    #[test]
    fn jitter_only_shortens() {
        let b = Backoff::Fixed {
            delay_ms: 1000,
            jitter: 0.5,
        };
        for _ in 0..100 {
            let d = b.delay_ms(1);
            assert!((500..=1000).contains(&d), "{d}");
        }
    }

    #[test]
    fn bad_values_name_the_option() {
        let d = JobOptions::default();
        let cases = [
            (r#"{"delay_ms": -5}"#, "delay_ms"),
            (r#"{"attempts": 0}"#, "attempts"),
            (r#"{"priority": -1}"#, "priority"),
            (r#"{"job_id": "42"}"#, "job_id"),
            (
                r#"{"backoff": {"type": "fixed", "delay_ms": 5, "jitter": 2}}"#,
                "backoff.jitter",
            ),
        ];
        for (json, field) in cases {
            let input: JobOptionsInput = serde_json::from_str(json).expect(json);
            let err = input.resolve(&d).expect_err(json);
            assert_eq!(err.field, field, "{json}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected_at_any_depth() {
        for json in [
            r#"{"zzz": 1}"#,
            r#"{"backoff": {"type": "fixed", "delay_ms": 5, "zzz": 1}}"#,
            r#"{"backoff": {"type": "exponential", "delay_ms": 5, "zzz": 1}}"#,
            r#"{"remove_on_complete": {"count": 5, "zzz": 1}}"#,
            r#"{"remove_on_fail": {"age_ms": 5, "zzz": 1}}"#,
        ] {
            assert!(
                serde_json::from_str::<JobOptionsInput>(json).is_err(),
                "{json} was taken"
            );
        }
    }

    #[test]
    fn out_of_range_values_name_the_option() {
        let d = JobOptions::default();
        let cases = [
            (r#"{"delay_ms": 315360000001}"#, "delay_ms"),
            (r#"{"timeout_ms": 0}"#, "timeout_ms"),
            (r#"{"priority": 2097153}"#, "priority"),
            (r#"{"attempts": 10001}"#, "attempts"),
            (
                r#"{"backoff": {"type": "fixed", "delay_ms": 315360000001}}"#,
                "backoff.delay_ms",
            ),
            (
                r#"{"backoff": {"type": "exponential", "delay_ms": 1, "max_delay_ms": 315360000001}}"#,
                "backoff.max_delay_ms",
            ),
            (
                r#"{"remove_on_complete": {"count": 1000000001}}"#,
                "remove_on_complete",
            ),
            (
                r#"{"remove_on_fail": {"age_ms": 315360000001}}"#,
                "remove_on_fail.age_ms",
            ),
        ];
        for (json, field) in cases {
            let input: JobOptionsInput = serde_json::from_str(json).expect(json);
            let err = input.resolve(&d).expect_err(json);
            assert_eq!(err.field, field, "{json}");
        }
    }

    #[test]
    fn a_grown_delay_saturates_at_the_longest_duration() {
        let b = Backoff::Exponential {
            delay_ms: MAX_DURATION_MS,
            jitter: 0.0,
            max_delay_ms: None,
        };
        assert_eq!(b.delay_ms(64), MAX_DURATION_MS);
        assert_eq!(b.delay_ms(u32::MAX), MAX_DURATION_MS);
    }

    #[test]
    fn unknown_backoff_type_is_rejected() {
        let err = serde_json::from_str::<JobOptionsInput>(
            r#"{"backoff": {"type": "linear", "delay_ms": 5}}"#,
        )
        .expect_err("linear is not a backoff");
        assert!(err.to_string().contains("linear"), "{err}");
    }

    #[test]
    fn retention_round_trips_each_form() {
        for json in ["true", "false", "10", r#"{"count":5,"age_ms":1000}"#] {
            let r: Retention = serde_json::from_str(json).expect(json);
            assert_eq!(serde_json::to_string(&r).expect("serialize"), json);
        }
    }
}
