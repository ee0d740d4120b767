//! Login throttling per account: after a few free failures, each further attempt on the
//! account must wait a delay that doubles with every failure, up to a cap. Any attempt during
//! the wait, even with the right password, is refused without checking it, so guessing is slow
//! and costs no hashing. The cap bounds how long an attacker can keep the owner out once the
//! attack stops; a success, or a quiet window, clears the count.
//!
//! Unknown emails are counted exactly like known ones, so the throttle reveals nothing.

use std::time::Duration;

use todo_common::time::{Micros, micros};

use crate::store::LoginFailures;

/// The throttling rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures in a row allowed without any delay.
    pub free_failures: u32,
    /// The first delay; it doubles with each further failure.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
}

impl ThrottlePolicy {
    /// How long the next attempt must wait, given the recorded failures; `None` when it may go
    /// ahead now.
    pub fn wait(&self, failures: Option<LoginFailures>, now: Micros) -> Option<Duration> {
        let failures = failures?;
        if failures.last_failure_time < self.forget_before(now) {
            return None;
        }
        let over = u32::try_from(failures.failures)
            .unwrap_or(u32::MAX)
            .checked_sub(self.free_failures)?;
        let delay = self
            .base_delay
            .checked_mul(2u32.saturating_pow(over))
            .map_or(self.max_delay, |d| d.min(self.max_delay));
        let ready_at = failures.last_failure_time.saturating_add(micros(delay));
        (now < ready_at).then(|| Duration::from_micros(u64::try_from(ready_at - now).unwrap_or(0)))
    }

    /// Failures before this time no longer count.
    pub fn forget_before(&self, now: Micros) -> Micros {
        now.saturating_sub(micros(self.window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Micros = 1_000_000;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            window: Duration::from_secs(900),
        }
    }

    fn failed(failures: i64, at: Micros) -> Option<LoginFailures> {
        Some(LoginFailures {
            failures,
            last_failure_time: at,
        })
    }

    #[test]
    fn the_first_failures_are_free() {
        let now = 1_000 * SECOND;
        assert_eq!(policy().wait(None, now), None);
        assert_eq!(policy().wait(failed(4, now), now), None);
    }

    #[test]
    fn delays_double_and_are_capped() {
        let now = 1_000 * SECOND;
        assert_eq!(
            policy().wait(failed(5, now), now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            policy().wait(failed(6, now), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            policy().wait(failed(9, now), now),
            Some(Duration::from_secs(16))
        );
        assert_eq!(
            policy().wait(failed(200, now), now),
            Some(Duration::from_secs(60))
        );
        // Part of the delay has passed.
        assert_eq!(
            policy().wait(failed(6, now), now + SECOND / 2),
            Some(Duration::from_millis(1500))
        );
        // All of it has passed: the owner can try again.
        assert_eq!(policy().wait(failed(200, now), now + 60 * SECOND), None);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let now = 10_000 * SECOND;
        assert_eq!(policy().wait(failed(50, now - 901 * SECOND), now), None);
    }
}
