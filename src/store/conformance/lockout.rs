//! Lockout checks of the conformance suite (SPEC §6): every backend applies
//! [`LockRecord::reserve`] atomically — the same answers as the pure model, exactly
//! `max_failures` attempts let through however many arrive at once, and password-step
//! records expiring while code-step records stay.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::lockout::{LockPolicy, LockRecord, LockState, Reservation, Step};
use crate::core::store::Store;

/// Small limits, so that locks and blocks come quickly.
const P: LockPolicy = LockPolicy {
    max_failures: 2,
    duration_ms: 1000,
    max_duration_ms: 4000,
    code_max_failures: 3,
};

/// Runs every lockout check against `s`.
pub(super) async fn run_all(s: Arc<dyn Store>) {
    reservations_count_lock_and_unlock(&*s).await;
    reservations_follow_the_core_model(&*s).await;
    concurrent_reservations_let_exactly_max_failures_through(s.clone()).await;
    password_records_expire_and_code_records_stay(&*s).await;
}

/// The record and lock flag of a granted reservation (panics on a refusal).
fn granted(r: Reservation) -> (LockRecord, bool) {
    match r {
        Reservation::Granted {
            record,
            imposed_lock,
        } => (record, imposed_lock),
        Reservation::Refused(state) => panic!("expected a granted attempt, got {state:?}"),
    }
}

/// Counting in advance, locking, refusing, resetting and unlocking, step by step.
async fn reservations_count_lock_and_unlock(s: &dyn Store) {
    let (r, imposed) = granted(s.lock_reserve("jo", Step::Password, 0, &P).await.unwrap());
    assert!(!imposed && r.failures == 1, "counted before any check");
    let (r, imposed) = granted(s.lock_reserve("jo", Step::Password, 0, &P).await.unwrap());
    assert!(imposed, "the attempt reaching the limit imposes the lock");
    assert_eq!(
        s.lock_reserve("jo", Step::Password, 500, &P).await.unwrap(),
        Reservation::Refused(LockState::Locked {
            retry_after_ms: 500
        }),
        "locked: refused, even before looking at the input"
    );
    assert_eq!(r.locked_until_ms, 1000);
    let (c, _) = granted(s.lock_reserve("jo", Step::Code, 500, &P).await.unwrap());
    assert_eq!(c.failures, 1, "steps count separately");
    for at in [10_000, 20_000] {
        granted(s.lock_reserve("jo", Step::Code, at, &P).await.unwrap());
    }
    assert_eq!(
        s.lock_reserve("jo", Step::Code, u64::MAX / 4, &P)
            .await
            .unwrap(),
        Reservation::Refused(LockState::Blocked),
        "the code step blocks for good after code_max_failures"
    );
    s.lock_reset("jo", Step::Password).await.unwrap();
    let (r, _) = granted(s.lock_reserve("jo", Step::Password, 600, &P).await.unwrap());
    assert_eq!(r.failures, 1, "a right answer's reset lifts the lock");
    s.unlock("jo").await.unwrap();
    let (c, _) = granted(s.lock_reserve("jo", Step::Code, 30_000, &P).await.unwrap());
    assert_eq!(c.failures, 1, "users unlock clears the block");
    s.unlock("jo").await.unwrap();
}

/// A small deterministic generator: the sequence is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// The backend's answers equal `LockRecord::reserve` on every step of a long mixed
/// sequence (the Redis script re-states that arithmetic; this keeps them one).
async fn reservations_follow_the_core_model(s: &dyn Store) {
    let mut model: HashMap<&str, LockRecord> = HashMap::new();
    let mut rng = Lcg(17);
    let mut now = 1_000_000u64;
    for i in 0..400 {
        // Time advances by less than max_duration between two operations, so the
        // records never expire here (expiry has its own check).
        now += rng.next(700);
        let step = if rng.next(2) == 0 {
            Step::Password
        } else {
            Step::Code
        };
        let name = step.as_str();
        let cur = model.get(name).copied().unwrap_or_default();
        if rng.next(9) == 0 {
            s.lock_reset("model", step).await.unwrap();
            model.remove(name);
            continue;
        }
        let (next, expected) = cur.reserve(step, now, &P);
        let got = s.lock_reserve("model", step, now, &P).await.unwrap();
        assert_eq!(got, expected, "operation {i}: {step:?} at {now}");
        if let Some(next) = next {
            model.insert(name, next);
        }
    }
    s.unlock("model").await.unwrap();
}

/// 64 attempts at once, on one record: exactly `max_failures` are let through and
/// exactly one of them imposes the lock (SPEC §6: checking and counting are one step).
async fn concurrent_reservations_let_exactly_max_failures_through(s: Arc<dyn Store>) {
    let p = LockPolicy {
        max_failures: 5,
        duration_ms: 3_600_000,
        max_duration_ms: 3_600_000,
        code_max_failures: 7,
    };
    for (step, allowed) in [(Step::Password, 5), (Step::Code, 5)] {
        let now = crate::core::clock::now_ms();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.lock_reserve("crowd", step, now, &p).await })
            })
            .collect();
        let (mut through, mut imposed) = (0, 0);
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Reservation::Granted { imposed_lock, .. } => {
                    through += 1;
                    imposed += usize::from(imposed_lock);
                }
                Reservation::Refused(state) => {
                    assert!(matches!(state, LockState::Locked { .. }), "{state:?}")
                }
            }
        }
        assert_eq!(through, allowed, "{step:?}: attempts let through");
        assert_eq!(imposed, 1, "{step:?}: one lock imposed");
    }
    // The code step's permanent block, raced the same way: 7 - 5 = 2 more, then blocked.
    s.lock_reserve("crowd", Step::Code, u64::MAX / 4, &p)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.lock_reserve("crowd", Step::Code, u64::MAX / 4, &p).await })
        })
        .collect();
    let mut through = 0;
    for t in tasks {
        if let Reservation::Granted { record, .. } = t.await.unwrap().unwrap() {
            through += 1;
            assert!(record.failures <= 7);
        }
    }
    assert_eq!(through, 1, "the seventh failure blocks; nothing after it");
    s.unlock("crowd").await.unwrap();
}

/// Password-step records expire `max_duration` after their last change (known and
/// invented names alike); code-step records never do. Backends may expire by wall
/// clock (Redis TTLs), so this check runs on real time.
async fn password_records_expire_and_code_records_stay(s: &dyn Store) {
    let p = LockPolicy {
        max_failures: 3,
        duration_ms: 100,
        max_duration_ms: 300,
        code_max_failures: 100,
    };
    let start = crate::core::clock::now_ms();
    for _ in 0..2 {
        s.lock_reserve("fleeting", Step::Password, start, &p)
            .await
            .unwrap();
        s.lock_reserve("fleeting", Step::Code, start, &p)
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let now = crate::core::clock::now_ms();
    let (pw, _) = granted(
        s.lock_reserve("fleeting", Step::Password, now, &p)
            .await
            .unwrap(),
    );
    assert_eq!(pw.failures, 1, "the password record expired");
    let (code, _) = granted(
        s.lock_reserve("fleeting", Step::Code, now, &p)
            .await
            .unwrap(),
    );
    assert_eq!(code.failures, 3, "the code record is never reset by time");
    s.unlock("fleeting").await.unwrap();
}
