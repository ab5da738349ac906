//! Security keys and WebAuthn ceremonies in the embedded database (SPEC §10): table
//! `webauthn_keys` (credential id → the key's JSON, indexed by user) and
//! `webauthn_ceremonies` (a ceremony handle's fingerprint → its state, with an expiry).
//! Every read-modify-write is one immediate transaction, so it is atomic for every
//! process that opens the database; a ceremony is taken with `DELETE … RETURNING`.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{EmbeddedStore, corrupt};
use crate::core::store::*;

impl EmbeddedStore {
    pub(super) async fn wa_key_add(&self, rec: &KeyRecord) -> StoreResult<bool> {
        let rec = rec.clone();
        self.write(move |c| {
            let data = serde_json::to_string(&rec).map_err(corrupt)?;
            let n = c.execute(
                "INSERT OR IGNORE INTO webauthn_keys(id,user,data) VALUES(?1,?2,?3)",
                params![rec.id, rec.user, data],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub(super) fn wa_keys_list(&self, user: &str) -> StoreResult<Vec<KeyRecord>> {
        let rows: Vec<String> = self.read(|c| {
            c.prepare_cached("SELECT data FROM webauthn_keys WHERE user=?1")?
                .query_map([user], |r| r.get(0))?
                .collect()
        })?;
        let mut keys = rows
            .iter()
            .map(|d| key_from_json(d))
            .collect::<StoreResult<Vec<_>>>()?;
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(keys)
    }

    pub(super) fn wa_key_find(&self, id: &[u8]) -> StoreResult<Option<KeyRecord>> {
        let row: Option<String> = self.read(|c| {
            c.prepare_cached("SELECT data FROM webauthn_keys WHERE id=?1")?
                .query_row([id], |r| r.get(0))
                .optional()
        })?;
        row.as_deref().map(key_from_json).transpose()
    }

    pub(super) async fn wa_key_use(
        &self,
        user: &str,
        id: &[u8],
        seen: u32,
        new: u32,
        now_ms: u64,
    ) -> StoreResult<bool> {
        let (user, id) = (user.to_string(), id.to_vec());
        self.write(move |c| {
            // An immediate transaction: the read and the write are one step for every
            // process that opens the database.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut rec) = read_key(&tx, &user, &id)? else {
                return Ok(false);
            };
            if rec.counter != seen {
                return Ok(false);
            }
            rec.counter = new;
            rec.last_used_ms = Some(now_ms);
            write_key(&tx, &rec)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn wa_key_rename(
        &self,
        user: &str,
        id: &[u8],
        name: &str,
    ) -> StoreResult<bool> {
        let (user, id, name) = (user.to_string(), id.to_vec(), name.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut rec) = read_key(&tx, &user, &id)? else {
                return Ok(false);
            };
            rec.name = name;
            write_key(&tx, &rec)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn wa_key_remove(
        &self,
        user: &str,
        id: &[u8],
        keep_a_factor: bool,
    ) -> StoreResult<KeyRemoval> {
        let (user, id) = (user.to_string(), id.to_vec());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if read_key(&tx, &user, &id)?.is_none() {
                return Ok(KeyRemoval::NotFound);
            }
            if keep_a_factor {
                let others: i64 = tx.query_row(
                    "SELECT (SELECT COUNT(*) FROM webauthn_keys WHERE user=?1 AND id<>?2)
                          + (SELECT COUNT(*) FROM mfa WHERE user=?1)",
                    params![user, id],
                    |r| r.get(0),
                )?;
                if others == 0 {
                    return Ok(KeyRemoval::LastFactor);
                }
            }
            tx.execute(
                "DELETE FROM webauthn_keys WHERE user=?1 AND id=?2",
                params![user, id],
            )?;
            tx.commit()?;
            Ok(KeyRemoval::Removed)
        })
        .await
    }

    pub(super) async fn wa_ceremony_put(
        &self,
        handle: &Fingerprint,
        state: &[u8],
        expires_ms: u64,
    ) -> StoreResult<()> {
        let (handle, state) = (*handle, state.to_vec());
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO webauthn_ceremonies(handle,state,expires_ms) VALUES(?1,?2,?3)",
                params![&handle[..], state, expires_ms as i64],
            )
            .map(|_| ())
        })
        .await
    }

    pub(super) async fn wa_ceremony_take(
        &self,
        handle: &Fingerprint,
        now_ms: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        let handle = *handle;
        self.write(move |c| {
            // DELETE … RETURNING: the row goes to exactly one caller.
            let row: Option<(Vec<u8>, i64)> = c
                .prepare_cached(
                    "DELETE FROM webauthn_ceremonies WHERE handle=?1 RETURNING state, expires_ms",
                )?
                .query_row([&handle[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(row.and_then(|(state, exp)| (exp as u64 >= now_ms).then_some(state)))
        })
        .await
    }
}

/// A key row's JSON, read back.
fn key_from_json(data: &str) -> StoreResult<KeyRecord> {
    serde_json::from_str(data).map_err(|e| StoreError::Corrupt(format!("webauthn key: {e}")))
}

/// The key `id` of `user`, inside a transaction.
fn read_key(c: &Connection, user: &str, id: &[u8]) -> rusqlite::Result<Option<KeyRecord>> {
    let data: Option<String> = c
        .query_row(
            "SELECT data FROM webauthn_keys WHERE user=?1 AND id=?2",
            params![user, id],
            |r| r.get(0),
        )
        .optional()?;
    data.map(|d| serde_json::from_str(&d).map_err(corrupt))
        .transpose()
}

/// Writes back a key row changed inside a transaction.
fn write_key(c: &Connection, rec: &KeyRecord) -> rusqlite::Result<()> {
    let data = serde_json::to_string(rec).map_err(corrupt)?;
    c.execute(
        "UPDATE webauthn_keys SET data=?3 WHERE user=?1 AND id=?2",
        params![rec.user, rec.id, data],
    )
    .map(|_| ())
}
