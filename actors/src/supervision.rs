//! Restart intensity and restart delay, as an Erlang/OTP supervisor keeps them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::config::SupervisionConfig;

/// What to do about a child that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart it after this delay.
    Restart(Duration),
    /// Too many restarts in the window: give up and escalate.
    GiveUp {
        /// Restarts seen in the window, this failure included.
        restarts: u32,
        /// The window.
        within: Duration,
    },
}

/// Counts one child's restarts and chooses the delay before the next.
#[derive(Debug)]
pub struct RestartPolicy {
    config: SupervisionConfig,
    recent: VecDeque<Instant>,
    delays: ExponentialBackoff,
}

impl RestartPolicy {
    /// A policy with no restarts yet.
    pub fn new(config: SupervisionConfig) -> Self {
        RestartPolicy {
            config,
            recent: VecDeque::new(),
            delays: Self::fresh_delays(&config),
        }
    }

    fn fresh_delays(config: &SupervisionConfig) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(config.min_delay)
            .with_max_delay(config.max_delay)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }

    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, now: Instant) -> RestartDecision {
        while let Some(&first) = self.recent.front() {
            if now.duration_since(first) > self.config.within {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.is_empty() {
            // A quiet window: start the delays over.
            self.delays = Self::fresh_delays(&self.config);
        }
        self.recent.push_back(now);
        let restarts = self.recent.len() as u32;
        if restarts > self.config.max_restarts {
            return RestartDecision::GiveUp {
                restarts,
                within: self.config.within,
            };
        }
        RestartDecision::Restart(self.delays.next().unwrap_or(self.config.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SupervisionConfig {
        SupervisionConfig {
            max_restarts: 3,
            within: Duration::from_secs(10),
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        }
    }

    #[test]
    fn delays_grow_then_intensity_gives_up() {
        let mut policy = RestartPolicy::new(config());
        let t0 = Instant::now();
        let decisions: Vec<_> = (0..4)
            .map(|i| policy.on_failure(t0 + Duration::from_millis(i)))
            .collect();
        let delays_ms: Vec<u128> = decisions[..3]
            .iter()
            .map(|d| match d {
                RestartDecision::Restart(delay) => delay.as_millis(),
                other => panic!("expected a restart, got {other:?}"),
            })
            .collect();
        assert_eq!(delays_ms, [100, 200, 350]);
        assert!(matches!(
            decisions[3],
            RestartDecision::GiveUp { restarts: 4, .. }
        ));
    }

    #[test]
    fn a_quiet_window_forgives() {
        let mut policy = RestartPolicy::new(config());
        let t0 = Instant::now();
        for i in 0..3 {
            policy.on_failure(t0 + Duration::from_millis(i));
        }
        let later = t0 + Duration::from_secs(11);
        assert!(matches!(
            policy.on_failure(later),
            RestartDecision::Restart(d) if d.as_millis() == 100
        ));
    }
}
