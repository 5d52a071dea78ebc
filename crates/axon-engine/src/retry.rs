//! Retry timing: backon's exponential backoff over a task's [`RetryPolicy`].
//!
//! The policy (how many attempts, which error kinds) is Axon's domain and lives in
//! `axon-core`; the delays come from `backon`. The delay before retry *n* (n ≥ 1) is
//! `initial_delay × multiplier^(n-1)`, capped at `max_delay`; with `jitter`, backon adds a
//! random part of up to the same amount again, seeded per run, task and attempt so that many
//! tasks failing together spread out, and a given attempt always gets the same delay.

use std::time::Duration;

use axon_core::retry::RetryPolicy;
use backon::{BackoffBuilder, ExponentialBuilder};

/// The delay before retry number `retry` (1 for the first retry) under `policy`.
pub fn delay_before_retry(policy: &RetryPolicy, retry: u32, jitter_seed: u64) -> Duration {
    let mut builder = ExponentialBuilder::new()
        .with_min_delay(policy.initial_delay)
        .with_max_delay(policy.max_delay)
        .with_factor(policy.multiplier as f32)
        .without_max_times();
    if policy.jitter {
        builder = builder.with_jitter().with_jitter_seed(jitter_seed);
    }
    let index = usize::try_from(retry.saturating_sub(1)).unwrap_or(usize::MAX);
    builder.build().nth(index).unwrap_or(policy.max_delay)
}

/// The delay before retry number `retry` (1 for the first) of Axon's own calls to a service
/// (a busy database, a Cortex server that is down): doubling from `first` to `cap`, with up to
/// as much again of jitter seeded by `seed`, so that many callers failing together spread out.
pub fn service_backoff(first: Duration, cap: Duration, retry: u32, seed: u64) -> Duration {
    let index = usize::try_from(retry.saturating_sub(1)).unwrap_or(usize::MAX);
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(cap)
        .with_factor(2.0)
        .with_jitter()
        .with_jitter_seed(seed)
        .without_max_times()
        .build()
        .nth(index)
        .unwrap_or(cap)
}

/// A jitter seed that differs across runs, tasks and attempts.
pub fn jitter_seed(run: uuid::Uuid, task: usize, attempt: u32) -> u64 {
    let (hi, lo) = run.as_u64_pair();
    hi ^ lo.rotate_left(17) ^ (task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_multiplier_and_are_capped() {
        let p = RetryPolicy::default(); // 1 s doubling to 60 s
        let d = |n| delay_before_retry(&p, n, 0);
        assert_eq!(d(1), Duration::from_secs(1));
        assert_eq!(d(2), Duration::from_secs(2));
        assert_eq!(d(3), Duration::from_secs(4));
        assert_eq!(d(7), Duration::from_secs(60));
        assert_eq!(d(100), Duration::from_secs(60));
    }

    #[test]
    fn service_backoff_doubles_with_jitter_up_to_its_cap() {
        let first = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for seed in 0..20 {
            let d1 = service_backoff(first, cap, 1, seed);
            assert!(d1 >= first && d1 < first * 2, "{d1:?}");
            let d3 = service_backoff(first, cap, 3, seed);
            assert!(d3 >= first * 4 && d3 < first * 8, "{d3:?}");
            let d50 = service_backoff(first, cap, 50, seed);
            assert!(d50 >= cap && d50 < cap * 2, "{d50:?}");
        }
    }

    #[test]
    fn jitter_adds_up_to_the_delay_again_and_spreads_tasks() {
        let p = RetryPolicy {
            initial_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(10),
            jitter: true,
            ..RetryPolicy::default()
        };
        let mut seen = std::collections::HashSet::new();
        for task in 0..100 {
            let seed = jitter_seed(uuid::Uuid::now_v7(), task, 1);
            let d = delay_before_retry(&p, 1, seed);
            assert!(
                d >= Duration::from_secs(10) && d < Duration::from_secs(20),
                "{d:?}"
            );
            assert_eq!(d, delay_before_retry(&p, 1, seed), "same seed, same delay");
            seen.insert(d);
        }
        assert!(seen.len() > 50, "jitter should spread delays");
    }
}
