//! The attempt regulator: one call that reserves an attempt at a step (password or
//! code), runs its check, and records the result — for every step alike, with the
//! clock injected. Compare Authelia's `internal/regulation/regulator.go`, which marks
//! and checks attempts around the verification; here the reservation comes first and
//! is atomic in the store, so however many attempts arrive at once, at most
//! `max_failures` wrong secrets are ever checked before the lock holds (SPEC §6).
//!
//! The lockout arithmetic is [`crate::core::lockout`]'s; the atomicity is the store's
//! ([`Store::lock_reserve`]). A reservation the store cannot make refuses the attempt
//! before anything is checked (fail closed: never a free guess).

use std::future::Future;
use std::sync::Arc;

use crate::core::clock::Clock;
use crate::core::lockout::{LockPolicy, LockRecord, LockState, Reservation, Step};
use crate::core::store::{Store, StoreError};

/// How one regulated attempt ended.
#[derive(Debug)]
pub enum Regulated<T> {
    /// Refused unchecked: the step is locked or blocked.
    Refused(LockState),
    /// The check said right; the counter is reset (lifting a lock this very attempt
    /// imposed in advance).
    Right(T),
    /// The check said wrong; the attempt was already counted.
    Wrong {
        /// The record as stored with this attempt counted.
        record: LockRecord,
        /// This attempt reached the limit and imposed a lock (or the code-step block).
        imposed_lock: bool,
        /// The step's state now, after the check.
        state: LockState,
    },
}

/// Reserves, checks and records attempts against the store's lockout counters.
#[derive(Clone)]
pub struct Regulator {
    store: Arc<dyn Store>,
    policy: LockPolicy,
    clock: Arc<dyn Clock>,
}

impl Regulator {
    /// A regulator over `store`'s counters with `policy`'s limits, reading `clock`.
    pub fn new(store: Arc<dyn Store>, policy: LockPolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            policy,
            clock,
        }
    }

    /// The limits in force.
    pub fn policy(&self) -> &LockPolicy {
        &self.policy
    }

    /// One attempt at `step` of `key`: reserved first (refused while locked; an error
    /// if it cannot be counted, `check` then never runs), then `check` (`Some`: right,
    /// `None`: wrong), then recorded. An error from `check` leaves the attempt counted.
    pub async fn attempt<T, E, F, Fut>(
        &self,
        key: &str,
        step: Step,
        check: F,
    ) -> Result<Regulated<T>, E>
    where
        E: From<StoreError>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let reservation = self
            .store
            .lock_reserve(key, step, self.clock.now_ms(), &self.policy)
            .await?;
        let (record, imposed_lock) = match reservation {
            Reservation::Granted {
                record,
                imposed_lock,
            } => (record, imposed_lock),
            Reservation::Refused(state) => return Ok(Regulated::Refused(state)),
        };
        match check().await? {
            Some(right) => {
                self.store.lock_reset(key, step).await?;
                Ok(Regulated::Right(right))
            }
            None => Ok(Regulated::Wrong {
                record,
                imposed_lock,
                state: record.state(self.clock.now_ms()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::*;
    use crate::store::embedded::EmbeddedStore;

    /// A clock that moves only when told.
    struct FakeClock(AtomicU64);

    impl Clock for FakeClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    const POLICY: LockPolicy = LockPolicy {
        max_failures: 5,
        duration_ms: 60_000,
        max_duration_ms: 600_000,
        code_max_failures: 20,
    };

    fn setup() -> (tempfile::TempDir, Regulator, Arc<FakeClock>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let clock = Arc::new(FakeClock(AtomicU64::new(1_000_000)));
        (dir, Regulator::new(store, POLICY, clock.clone()), clock)
    }

    async fn wrong(r: &Regulator, checked: &AtomicUsize) -> Regulated<()> {
        r.attempt("u", Step::Password, || async {
            checked.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StoreError>(None)
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sixty_four_concurrent_wrong_attempts_check_exactly_max_failures() {
        let (_dir, r, _clock) = setup();
        let checked = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (r, checked) = (r.clone(), checked.clone());
            tasks.push(tokio::spawn(async move { wrong(&r, &checked).await }));
        }
        let mut refused = 0;
        let mut imposed = 0;
        for t in tasks {
            match t.await.unwrap() {
                Regulated::Refused(LockState::Locked { .. }) => refused += 1,
                Regulated::Wrong { imposed_lock, .. } => imposed += usize::from(imposed_lock),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(checked.load(Ordering::SeqCst), POLICY.max_failures as usize);
        assert_eq!(refused, 64 - POLICY.max_failures as usize);
        assert_eq!(imposed, 1, "exactly one attempt imposes the lock");
    }

    #[tokio::test]
    async fn the_lock_ends_with_the_clock_and_a_right_answer_resets_the_count() {
        let (_dir, r, clock) = setup();
        let checked = AtomicUsize::new(0);
        for _ in 0..POLICY.max_failures {
            wrong(&r, &checked).await;
        }
        assert!(matches!(
            wrong(&r, &checked).await,
            Regulated::Refused(LockState::Locked {
                retry_after_ms: 60_000
            })
        ));
        clock.0.fetch_add(60_000, Ordering::SeqCst);
        let right = r
            .attempt("u", Step::Password, || async {
                Ok::<_, StoreError>(Some(7))
            })
            .await
            .unwrap();
        assert!(matches!(right, Regulated::Right(7)));
        // Counting starts again from zero: four more wrong answers impose nothing.
        for _ in 0..POLICY.max_failures - 1 {
            assert!(matches!(
                wrong(&r, &checked).await,
                Regulated::Wrong {
                    imposed_lock: false,
                    state: LockState::Open,
                    ..
                }
            ));
        }
    }

    /// A store that cannot count refuses before the check runs.
    #[tokio::test]
    async fn a_store_failure_refuses_before_the_check() {
        let store: Arc<dyn Store> = Arc::new(super::super::test_support::DownStore);
        let r = Regulator::new(store, POLICY, Arc::new(FakeClock(AtomicU64::new(0))));
        let checked = AtomicUsize::new(0);
        let out = r
            .attempt("u", Step::Code, || async {
                checked.fetch_add(1, Ordering::SeqCst);
                Ok::<Option<()>, StoreError>(Some(()))
            })
            .await;
        assert!(out.is_err());
        assert_eq!(checked.load(Ordering::SeqCst), 0);
    }
}
