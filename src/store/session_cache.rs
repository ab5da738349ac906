//! Recently read sessions, kept in the serving process so that an authenticated request
//! costs a map lookup and one `fstat` instead of a SQLite read (two lock syscalls and a
//! B-tree walk).
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

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::change_marker::{ChangeMarker, MarkerView};
use crate::core::store::{Fingerprint, SessionRecord};

/// Past this many entries the cache starts over: it bounds memory (about 150 bytes an
/// entry) while any working set of a clinic fits.
const CAPACITY: usize = 65_536;

/// The cache's state when a database read began; see [`SessionCache::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

struct State {
    entries: HashMap<Fingerprint, SessionRecord>,
    /// Raised by every invalidation; a ticket from before it is void.
    generation: u64,
    /// `None` when the marker could not be read: nothing is cached then.
    view: Option<MarkerView>,
}

/// The serving process's session cache for the embedded store.
pub struct SessionCache {
    marker: ChangeMarker,
    state: Mutex<State>,
}

impl State {
    fn forget_all(&mut self) {
        self.entries.clear();
        self.generation += 1;
    }

    /// Empties the cache if another process may have ended sessions since the last
    /// look. Returns false when the marker is unreadable (then nothing may be cached).
    fn check_marker(&mut self, marker: &ChangeMarker) -> bool {
        if self.view.as_ref().is_some_and(MarkerView::unchanged) {
            return true;
        }
        self.forget_all();
        self.view = marker.view().ok();
        self.view.is_some()
    }
}

impl SessionCache {
    /// A cache watching `marker`.
    pub fn new(marker: ChangeMarker) -> Self {
        let view = marker.view().ok();
        Self {
            marker,
            state: Mutex::new(State {
                entries: HashMap::new(),
                generation: 0,
                view,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update: start over.
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut st = poisoned.into_inner();
            st.forget_all();
            st
        })
    }

    /// The cached record, or a ticket to present with the database's answer.
    pub fn get(&self, id: &Fingerprint) -> Result<SessionRecord, Option<Ticket>> {
        let mut st = self.lock();
        if !st.check_marker(&self.marker) {
            return Err(None);
        }
        match st.entries.get(id) {
            Some(rec) => Ok(rec.clone()),
            None => Err(Some(Ticket(st.generation))),
        }
    }

    /// Caches what the database answered for a lookup that began at `ticket`, unless
    /// something was invalidated meanwhile.
    pub fn insert(&self, ticket: Ticket, id: &Fingerprint, rec: &SessionRecord) {
        let mut st = self.lock();
        // The marker first: a change there raises the generation too.
        if !st.check_marker(&self.marker) || st.generation != ticket.0 {
            return;
        }
        if st.entries.len() >= CAPACITY {
            st.entries.clear();
        }
        st.entries.insert(*id, rec.clone());
    }

    /// Records a new last-seen time (the database write follows).
    pub fn touch(&self, id: &Fingerprint, last_seen_ms: u64) {
        if let Some(rec) = self.lock().entries.get_mut(id) {
            rec.last_seen_ms = last_seen_ms;
        }
    }

    /// Forgets one session: call before deleting or replacing it.
    pub fn remove(&self, id: &Fingerprint) {
        let mut st = self.lock();
        st.entries.remove(id);
        st.generation += 1;
    }

    /// Forgets every session: call before deletions that are not by id.
    pub fn clear(&self) {
        self.lock().forget_all();
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
        let len = c.lock().entries.len();
        assert!(len <= CAPACITY, "{len} entries");
    }
}
