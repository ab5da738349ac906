//! Lockout arithmetic (SPEC §6), pure: the stores apply it atomically.
//!
//! Consecutive failures on a step lock it for `duration`, each further lock of the same
//! step doubling up to `max_duration`. The code step also blocks for good after
//! `code_max_failures` consecutive failures, until an administrator unlocks it.

use serde::{Deserialize, Serialize};

/// The two steps that are counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Password,
    Code,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Password => "password",
            Step::Code => "code",
        }
    }
}

/// The limits from `[lockout]`, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    pub max_failures: u32,
    pub duration_ms: u64,
    pub max_duration_ms: u64,
    pub code_max_failures: u32,
}

/// The counter state of one step of one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// Locks imposed in this run of failures (for the doubling).
    pub locks: u32,
    /// Unix milliseconds until which the step is locked (0: not locked).
    pub locked_until_ms: u64,
    /// Blocked until an administrator unlocks (code step only).
    pub blocked: bool,
}

/// Whether a step may be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Open,
    /// Locked for this many more milliseconds.
    Locked {
        retry_after_ms: u64,
    },
    /// Locked until `users unlock`.
    Blocked,
}

impl LockRecord {
    pub fn state(&self, now_ms: u64) -> LockState {
        if self.blocked {
            LockState::Blocked
        } else if self.locked_until_ms > now_ms {
            LockState::Locked {
                retry_after_ms: self.locked_until_ms - now_ms,
            }
        } else {
            LockState::Open
        }
    }

    /// The record after one more failure, and whether this failure imposed a lock.
    pub fn after_failure(mut self, step: Step, now_ms: u64, p: &LockPolicy) -> (LockRecord, bool) {
        self.failures = self.failures.saturating_add(1);
        if step == Step::Code && self.failures >= p.code_max_failures {
            let newly = !self.blocked;
            self.blocked = true;
            return (self, newly);
        }
        if p.max_failures > 0 && self.failures.is_multiple_of(p.max_failures) {
            self.locks = self.locks.saturating_add(1);
            let factor = 1u64
                .checked_shl(self.locks.saturating_sub(1).min(62))
                .unwrap_or(u64::MAX);
            let dur = p.duration_ms.saturating_mul(factor).min(p.max_duration_ms);
            self.locked_until_ms = now_ms.saturating_add(dur);
            return (self, true);
        }
        (self, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LockPolicy = LockPolicy {
        max_failures: 2,
        duration_ms: 2000,
        max_duration_ms: 5000,
        code_max_failures: 4,
    };

    #[test]
    fn locks_after_max_failures_and_doubles_up_to_max() {
        let mut r = LockRecord::default();
        let mut now = 0;
        let mut durations = vec![];
        for _ in 0..3 {
            let (a, l1) = r.after_failure(Step::Password, now, &P);
            assert!(!l1);
            let (b, l2) = a.after_failure(Step::Password, now, &P);
            assert!(l2);
            durations.push(b.locked_until_ms - now);
            now = b.locked_until_ms;
            r = b;
        }
        assert_eq!(durations, vec![2000, 4000, 5000]);
    }

    #[test]
    fn state_reports_remaining_time() {
        let (r, _) = LockRecord::default().after_failure(Step::Password, 1000, &P);
        let (r, _) = r.after_failure(Step::Password, 1000, &P);
        assert_eq!(
            r.state(1500),
            LockState::Locked {
                retry_after_ms: 1500
            }
        );
        assert_eq!(r.state(3000), LockState::Open);
    }

    #[test]
    fn code_step_blocks_for_good_after_code_max_failures() {
        let mut r = LockRecord::default();
        for i in 0..4 {
            r = r.after_failure(Step::Code, i * 10_000, &P).0;
        }
        assert_eq!(r.state(u64::MAX / 2), LockState::Blocked);
        let mut p = LockRecord::default();
        for i in 0..10 {
            p = p.after_failure(Step::Password, i * 10_000, &P).0;
        }
        assert!(!p.blocked, "the password step never blocks for good");
    }
}
