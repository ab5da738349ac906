//! Lockout counters on Redis: one script per reservation, so that checking whether a
//! step is open and counting the attempt are a single atomic step on every instance
//! (no optimistic retries that could give up after the secret was checked).

use crate::core::lockout::{LockPolicy, LockRecord, Reservation, Step};
use crate::core::store::{StoreError, StoreResult};

use super::{RedisStore, hex};

impl RedisStore {
    pub(super) fn lock_key(&self, key: &str, step: Step) -> String {
        format!("{}l:{}:{}", self.prefix, hex(key.as_bytes()), step.as_str())
    }

    /// `LockRecord::reserve` in one script; the durations table and the expiry floor
    /// come from `core::lockout`, so the arithmetic is defined in one place.
    pub(super) async fn reserve(
        &self,
        key: &str,
        step: Step,
        now_ms: u64,
        policy: &LockPolicy,
    ) -> StoreResult<Reservation> {
        // The record's time to live past the end of its lock (if any): the script adds
        // the lock's remaining time, as `LockPolicy::record_ttl_ms` does.
        let ttl_floor = policy
            .record_ttl_ms(step, &LockRecord::default(), now_ms)
            .unwrap_or(0);
        let mut inv = self.scripts.lock_reserve.prepare_invoke();
        inv.key(self.lock_key(key, step))
            .arg(step.as_str())
            .arg(now_ms)
            .arg(policy.max_failures)
            .arg(policy.code_max_failures)
            .arg(ttl_floor);
        for d in policy.lock_durations_ms() {
            inv.arg(d);
        }
        let v: Vec<i64> = self.call(inv.invoke_async(&mut self.conn())).await?;
        let [granted, failures, locks, until, blocked, imposed] = v[..] else {
            return Err(StoreError::Corrupt(format!(
                "lockout script answered {} values",
                v.len()
            )));
        };
        let record = LockRecord {
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            locks: u32::try_from(locks).unwrap_or(u32::MAX),
            locked_until_ms: u64::try_from(until).unwrap_or(0),
            blocked: blocked == 1,
        };
        Ok(if granted == 1 {
            Reservation::Granted {
                record,
                imposed_lock: imposed == 1,
            }
        } else {
            Reservation::Refused(record.state(now_ms))
        })
    }
}
