//! The retry policy: one policy per workflow, overridden field by field per task.
//!
//! `max_attempts` counts every attempt, the first included. Only failures whose
//! [`ErrorType`] is listed in `on` are retried. The delay before retry *n* (n ≥ 1) is
//! `initial_delay × multiplier^(n-1)`, capped at `max_delay` (with optional jitter); the
//! engine computes it with the `backon` crate.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::{self, DurationSchema};
use crate::model::ErrorType;

/// A complete retry policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    #[serde(rename = "initial_delay_secs", with = "crate::model::secs")]
    pub initial_delay: Duration,
    /// Upper bound of any delay.
    #[serde(rename = "max_delay_secs", with = "crate::model::secs")]
    pub max_delay: Duration,
    /// Growth factor between consecutive delays.
    pub multiplier: f64,
    /// Whether the engine randomises each delay.
    pub jitter: bool,
    /// Error classes that are retried.
    pub on: Vec<ErrorType>,
}

impl Default for RetryPolicy {
    /// The spec's `RetryStrategy::default()`: 3 attempts, 1 s doubling up to 60 s, on
    /// `network`, `timeout` and `service_unavailable`.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: false,
            on: vec![
                ErrorType::Network,
                ErrorType::Timeout,
                ErrorType::ServiceUnavailable,
            ],
        }
    }
}

impl RetryPolicy {
    /// This policy with every field that `o` sets replaced.
    pub fn overridden_by(&self, o: &RetryOverride) -> Self {
        Self {
            max_attempts: o.max_attempts.unwrap_or(self.max_attempts),
            initial_delay: o.initial_delay.unwrap_or(self.initial_delay),
            max_delay: o.max_delay.unwrap_or(self.max_delay),
            multiplier: o.multiplier.unwrap_or(self.multiplier),
            jitter: o.jitter.unwrap_or(self.jitter),
            on: o.on.clone().unwrap_or_else(|| self.on.clone()),
        }
    }

    /// Whether a failure of class `kind` on attempt `attempt` (1-based) gets another attempt.
    pub fn should_retry(&self, kind: ErrorType, attempt: u32) -> bool {
        attempt < self.max_attempts && self.on.contains(&kind)
    }

    /// Problems with the policy's values, as lowercase sentences (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_attempts == 0 {
            out.push("retry.max_attempts must be at least 1 (it counts the first attempt)".into());
        } else if self.max_attempts > MAX_ATTEMPTS {
            out.push(format!(
                "retry.max_attempts is {}; at most {MAX_ATTEMPTS} are allowed",
                self.max_attempts
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 || self.multiplier > 100.0 {
            out.push(format!(
                "retry.multiplier is {}; it must be between 1.0 and 100.0",
                self.multiplier
            ));
        }
        if self.initial_delay > self.max_delay {
            out.push(format!(
                "retry.initial_delay ({}) is longer than retry.max_delay ({})",
                duration::format(self.initial_delay),
                duration::format(self.max_delay)
            ));
        }
        out
    }
}

/// The most attempts a policy may ask for.
pub const MAX_ATTEMPTS: u32 = 100;

/// A `retry` block: every field optional, overriding the enclosing policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    /// Attempts in all, the first included (1 = never retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry (e.g. `1s`).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationSchema>")]
    pub initial_delay: Option<Duration>,
    /// Upper bound of any delay (e.g. `60s`).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationSchema>")]
    pub max_delay: Option<Duration>,
    /// Growth factor between delays (≥ 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Randomise each delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
    /// Error classes that are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<ErrorType>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_replaces_only_given_fields() {
        let base = RetryPolicy::default();
        let o = RetryOverride {
            max_attempts: Some(5),
            on: Some(vec![ErrorType::MergeConflict]),
            ..RetryOverride::default()
        };
        let p = base.overridden_by(&o);
        assert_eq!(p.max_attempts, 5);
        assert_eq!(p.on, vec![ErrorType::MergeConflict]);
        assert_eq!(p.initial_delay, base.initial_delay);
        assert_eq!(p.multiplier, base.multiplier);
    }

    #[test]
    fn only_listed_kinds_are_retried_within_the_limit() {
        let p = RetryPolicy::default();
        assert!(p.should_retry(ErrorType::Network, 1));
        assert!(p.should_retry(ErrorType::Timeout, 2));
        assert!(!p.should_retry(ErrorType::Timeout, 3));
        assert!(!p.should_retry(ErrorType::AgentError, 1));
        assert!(!p.should_retry(ErrorType::MergeConflict, 1));
    }

    #[test]
    fn absurd_values_are_problems() {
        let p = RetryPolicy {
            max_attempts: 0,
            multiplier: 0.5,
            initial_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        assert_eq!(p.problems().len(), 3);
        assert!(RetryPolicy::default().problems().is_empty());
    }
}
