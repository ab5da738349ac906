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

/// The answer to [`LockRecord::reserve`]: whether one attempt may be checked.
///
/// Reserving is what makes "at most `max_failures` wrong secrets are ever checked"
/// hold under any concurrency: the attempt is counted as a failure *before* its secret
/// is looked at, in the same atomic step that decides whether it may be looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The attempt may be checked; it already counts as a failure (a right answer
    /// then resets the counter, lifting any lock this reservation imposed).
    Granted {
        /// The record as stored after counting this attempt.
        record: LockRecord,
        /// This attempt reached the limit and imposed a lock (or the code-step block).
        imposed_lock: bool,
    },
    /// The step is locked or blocked: refuse without checking anything.
    Refused(LockState),
}

impl LockPolicy {
    /// How long the `n`-th lock (1-based) of a run of failures lasts: `duration`,
    /// doubled for each lock before it, capped at `max_duration`.
    pub fn lock_duration_ms(&self, n: u32) -> u64 {
        let factor = 1u64
            .checked_shl(n.saturating_sub(1).min(62))
            .unwrap_or(u64::MAX);
        self.duration_ms
            .saturating_mul(factor)
            .min(self.max_duration_ms)
    }

    /// [`Self::lock_duration_ms`] as a table, for stores that must apply the arithmetic
    /// inside the store (a Redis script): entry `i` is lock `i + 1`, and every lock
    /// past the table lasts as long as its last entry (the doubling has stopped).
    pub fn lock_durations_ms(&self) -> Vec<u64> {
        let mut out = vec![self.lock_duration_ms(1)];
        for n in 2..=64 {
            let d = self.lock_duration_ms(n);
            if Some(&d) == out.last() {
                break;
            }
            out.push(d);
        }
        out
    }

    /// How long a record of `step`, just changed at `now_ms`, is kept. Password-step
    /// records — of every username alike, known or invented, so that expiry reveals
    /// nothing — expire `max_duration` after their last change, counted from the end
    /// of their lock when one runs: invented usernames cost bounded space, and the
    /// doubling still holds for whoever comes back as soon as a lock ends. Code-step
    /// records (known users only) never expire: that counter is never reset by time.
    pub fn record_ttl_ms(&self, step: Step, rec: &LockRecord, now_ms: u64) -> Option<u64> {
        match step {
            Step::Code => None,
            Step::Password => Some(
                self.max_duration_ms
                    .saturating_add(rec.locked_until_ms.saturating_sub(now_ms))
                    .max(1),
            ),
        }
    }
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
            self.locked_until_ms = now_ms.saturating_add(p.lock_duration_ms(self.locks));
            return (self, true);
        }
        (self, false)
    }

    /// One reservation, the step every store applies atomically: refuse while the
    /// step is locked or blocked (nothing changes), else count the attempt as a
    /// failure in advance. Returns the record to store (`None`: unchanged) and the
    /// answer. The Redis backend mirrors this in a script; the conformance suite
    /// checks both backends against it.
    pub fn reserve(
        self,
        step: Step,
        now_ms: u64,
        p: &LockPolicy,
    ) -> (Option<LockRecord>, Reservation) {
        match self.state(now_ms) {
            LockState::Open => {
                let (record, imposed_lock) = self.after_failure(step, now_ms, p);
                (
                    Some(record),
                    Reservation::Granted {
                        record,
                        imposed_lock,
                    },
                )
            }
            refused => (None, Reservation::Refused(refused)),
        }
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

    #[test]
    fn reservation_counts_in_advance_and_refuses_while_locked() {
        let mut r = LockRecord::default();
        let (next, ans) = r.reserve(Step::Password, 0, &P);
        assert_eq!(
            ans,
            Reservation::Granted {
                record: next.unwrap(),
                imposed_lock: false
            }
        );
        r = next.unwrap();
        assert_eq!(r.failures, 1, "counted before anything is checked");
        let (next, ans) = r.reserve(Step::Password, 0, &P);
        assert!(matches!(
            ans,
            Reservation::Granted {
                imposed_lock: true,
                ..
            }
        ));
        r = next.unwrap();
        let (unchanged, ans) = r.reserve(Step::Password, 500, &P);
        assert_eq!(unchanged, None, "a refused attempt changes nothing");
        assert_eq!(
            ans,
            Reservation::Refused(LockState::Locked {
                retry_after_ms: 1500
            })
        );
        assert!(matches!(
            r.reserve(Step::Password, 2000, &P).1,
            Reservation::Granted { .. }
        ));
    }

    #[test]
    fn durations_table_matches_the_doubling() {
        assert_eq!(P.lock_durations_ms(), vec![2000, 4000, 5000]);
        for n in 1..70 {
            let table = P.lock_durations_ms();
            let i = (n as usize).min(table.len()) - 1;
            assert_eq!(table[i], P.lock_duration_ms(n));
        }
        let zero = LockPolicy {
            duration_ms: 0,
            ..P
        };
        assert_eq!(zero.lock_durations_ms(), vec![0]);
    }

    #[test]
    fn only_password_records_expire_and_only_max_duration_after_their_lock_ends() {
        let r = LockRecord {
            locked_until_ms: 100 + 9000,
            ..Default::default()
        };
        assert_eq!(P.record_ttl_ms(Step::Password, &r, 100), Some(9000 + 5000));
        assert_eq!(
            P.record_ttl_ms(Step::Password, &LockRecord::default(), 100),
            Some(5000)
        );
        assert_eq!(P.record_ttl_ms(Step::Code, &r, 100), None);
    }
}
