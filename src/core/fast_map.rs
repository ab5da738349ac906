//! The hash map of the request path's lookups (routing table, session caches, the
//! users directory): foldhash instead of the standard SipHash, whose cost showed in
//! the per-request instruction count (issue 26).
//!
//! Safe where it is used because no client decides which keys go in: hosts and
//! prefixes come from the configuration, usernames from the users file or the
//! directory, session fingerprints from tokens the gateway issued. A client only
//! chooses what is looked up, and with a per-process random seed (`RandomState`) it
//! cannot aim its lookups at one bucket either.

/// A `HashMap` with foldhash's fast, randomly seeded hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
