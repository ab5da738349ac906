//! Recently read sessions, kept in the serving process so that an authenticated request
//! costs a map lookup under a shared lock and one `fstat` instead of a SQLite read (two
//! lock syscalls and a B-tree walk).
//!
//! Correctness rests on three rules:
//! - a session record never changes after it is written, except its last-seen time
//!   (a privilege change issues a new id), so a cached copy can only go stale by
//!   deletion or by a touch, and every touch passes through this process;
//! - deletions by this process remove the entry here; deletions by another process
//!   (the admin commands) are announced through the [`ChangeMarker`], and any change
//!   there empties the cache before the next lookup answers;
//! - a record read from the database is cached only if nothing was invalidated while
//!   it was being read (the [`Ticket`] check), so a read racing a revoke cannot put the
//!   revoked session back.
//!
//! Expiry stays with the caller, which checks the record's times on every request.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::change_marker::{ChangeMarker, MarkerView};
use crate::core::fast_map::FastMap;
use crate::core::store::{Fingerprint, SessionRecord};

/// Past this many entries the cache starts over: it bounds memory (about 150 bytes an
/// entry) while any working set of a clinic fits.
const CAPACITY: usize = 65_536;

/// The cache's state when a database read began; see [`SessionCache::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

struct State {
    entries: FastMap<Fingerprint, SessionRecord>,
    /// Raised by every invalidation; a ticket from before it is void.
    generation: u64,
}

/// The serving process's session cache for the embedded store.
///
/// Two locks, so that no system call runs while the entries are locked and lookups on
/// different workers never wait for each other: the marker's `fstat` happens under a
/// shared read lock of the view, the map lookup under a shared read lock of the
/// entries. Only a change (an insert, a touch, an invalidation) takes a write lock.
pub struct SessionCache {
    marker: ChangeMarker,
    /// `None` when the marker could not be read: nothing is cached then. Replaced
    /// (under its write lock) only after the marker changed.
    view: RwLock<Option<MarkerView>>,
    state: RwLock<State>,
}

impl State {
    fn forget_all(&mut self) {
        self.entries.clear();
        self.generation += 1;
    }
}

impl SessionCache {
    /// A cache watching `marker`.
    pub fn new(marker: ChangeMarker) -> Self {
        let view = marker.view().ok();
        Self {
            marker,
            view: RwLock::new(view),
            state: RwLock::new(State {
                entries: FastMap::default(),
                generation: 0,
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        if self.state.is_poisoned() {
            drop(self.write());
        }
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A poisoned lock only means a panic elsewhere mid-update: start over.
    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| {
            self.state.clear_poison();
            let mut st = poisoned.into_inner();
            st.forget_all();
            st
        })
    }

    /// Makes sure the cache holds nothing another process may have ended since the
    /// last look. Returns false when the marker is unreadable (then nothing may be
    /// cached or answered from the cache).
    fn check_marker(&self) -> bool {
        {
            let view = self.view.read().unwrap_or_else(PoisonError::into_inner);
            if view.as_ref().is_some_and(MarkerView::unchanged) {
                return true;
            }
        }
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        // Another worker may have caught up with the same change meanwhile.
        if view.as_ref().is_some_and(MarkerView::unchanged) {
            return true;
        }
        self.write().forget_all();
        *view = self.marker.view().ok();
        view.is_some()
    }

    /// The cached record, or a ticket to present with the database's answer.
    pub fn get(&self, id: &Fingerprint) -> Result<SessionRecord, Option<Ticket>> {
        if !self.check_marker() {
            return Err(None);
        }
        let st = self.read();
        match st.entries.get(id) {
            Some(rec) => Ok(rec.clone()),
            None => Err(Some(Ticket(st.generation))),
        }
    }

    /// Caches what the database answered for a lookup that began at `ticket`, unless
    /// something was invalidated meanwhile.
    pub fn insert(&self, ticket: Ticket, id: &Fingerprint, rec: &SessionRecord) {
        // The marker first: a change there raises the generation too.
        if !self.check_marker() {
            return;
        }
        let mut st = self.write();
        if st.generation != ticket.0 {
            return;
        }
        if st.entries.len() >= CAPACITY {
            st.entries.clear();
        }
        st.entries.insert(*id, rec.clone());
    }

    /// Records a new last-seen time (the database write follows).
    pub fn touch(&self, id: &Fingerprint, last_seen_ms: u64) {
        if let Some(rec) = self.write().entries.get_mut(id) {
            rec.last_seen_ms = last_seen_ms;
        }
    }

    /// Forgets one session: call before deleting or replacing it.
    pub fn remove(&self, id: &Fingerprint) {
        let mut st = self.write();
        st.entries.remove(id);
        st.generation += 1;
    }

    /// Forgets every session: call before deletions that are not by id.
    pub fn clear(&self) {
        self.write().forget_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth_flow::Stage;

    fn rec(user: &str) -> SessionRecord {
        SessionRecord {
            user: user.into(),
            stage: Stage::PasswordDone,
            created_ms: 1,
            last_seen_ms: 2,
            credential: [7; 8],
            meta: Default::default(),
        }
    }

    fn cache(dir: &std::path::Path) -> SessionCache {
        SessionCache::new(ChangeMarker::in_dir(dir))
    }

    #[test]
    fn a_read_is_cached_and_touched_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let Err(Some(t)) = c.get(&[1; 32]) else {
            panic!("an empty cache must ask for a database read")
        };
        c.insert(t, &[1; 32], &rec("pat"));
        assert_eq!(c.get(&[1; 32]), Ok(rec("pat")));
        c.touch(&[1; 32], 99);
        assert_eq!(c.get(&[1; 32]).unwrap().last_seen_ms, 99);
        assert!(c.get(&[2; 32]).is_err());
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let Err(Some(t)) = c.get(&[1; 32]) else {
            panic!()
        };
        c.remove(&[1; 32]);
        c.insert(t, &[1; 32], &rec("pat"));
        assert!(c.get(&[1; 32]).is_err(), "a revoked session came back");
        let Err(Some(t)) = c.get(&[1; 32]) else {
            panic!()
        };
        c.clear();
        c.insert(t, &[1; 32], &rec("pat"));
        assert!(c.get(&[1; 32]).is_err());
    }

    #[test]
    fn another_process_ending_sessions_empties_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let Err(Some(t)) = c.get(&[1; 32]) else {
            panic!()
        };
        c.insert(t, &[1; 32], &rec("pat"));
        assert!(c.get(&[1; 32]).is_ok());
        ChangeMarker::in_dir(dir.path()).bump().unwrap();
        assert!(
            c.get(&[1; 32]).is_err(),
            "a foreign deletion was not noticed"
        );
        // A read that began before the bump must not be cached after it either.
        let Err(Some(t)) = c.get(&[1; 32]) else {
            panic!()
        };
        ChangeMarker::in_dir(dir.path()).bump().unwrap();
        c.insert(t, &[1; 32], &rec("pat"));
        assert!(c.get(&[1; 32]).is_err());
    }

    #[test]
    fn workers_racing_a_foreign_revoke_never_bring_the_session_back() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(cache(dir.path()));
        for _round in 0..50 {
            // The "database": the session exists while this is true.
            let in_db = Arc::new(AtomicBool::new(true));
            let stop = Arc::new(AtomicBool::new(false));
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let (c, in_db, stop) = (c.clone(), in_db.clone(), stop.clone());
                    std::thread::spawn(move || {
                        while !stop.load(SeqCst) {
                            if let Err(Some(t)) = c.get(&[1; 32])
                                && in_db.load(SeqCst)
                            {
                                // The database read takes a while.
                                std::thread::yield_now();
                                c.insert(t, &[1; 32], &rec("pat"));
                            }
                        }
                    })
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_micros(300));
            // Another process deletes the session, then bumps the marker.
            in_db.store(false, SeqCst);
            ChangeMarker::in_dir(dir.path()).bump().unwrap();
            for _ in 0..2_000 {
                assert!(c.get(&[1; 32]).is_err(), "a revoked session came back");
            }
            stop.store(true, SeqCst);
            for w in workers {
                w.join().unwrap();
            }
        }
    }

    #[test]
    fn an_unreadable_marker_means_no_caching() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(&dir.path().join("missing-dir"));
        assert_eq!(c.get(&[1; 32]), Err(None));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        for i in 0..(CAPACITY + 10) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let Err(Some(t)) = c.get(&id) else { panic!() };
            c.insert(t, &id, &rec("pat"));
        }
        let len = c.read().entries.len();
        assert!(len <= CAPACITY, "{len} entries");
    }
}
