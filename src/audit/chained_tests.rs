//! The chained file and its verifier together: what one writes, the other accepts,
//! across reopen, restart and two writers; and each kind of tampering is named.

use std::sync::Arc;

use serde_json::json;

use super::Audit;
use super::chain::PURPOSE;
use super::verify::{Broken, VerifyError, verify_texts};
use crate::keys::{KeyringHandle, generate_key};

struct Setup {
    dir: tempfile::TempDir,
    keys: Arc<KeyringHandle>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("encryption.key");
    std::fs::write(&key_file, format!("{}\n", generate_key())).unwrap();
    let keys = Arc::new(KeyringHandle::load(Some(&key_file)).unwrap());
    Setup { dir, keys }
}

impl Setup {
    fn audit(&self, name: &str, instance: &str) -> Audit {
        Audit::open(
            Some(&self.dir.path().join(name)),
            self.keys.clone(),
            instance.into(),
        )
        .unwrap()
    }

    fn keys(&self) -> Vec<[u8; 32]> {
        self.keys.get().derive_all(PURPOSE)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    fn verify(&self, names: &[&str]) -> Result<super::verify::Summary, VerifyError> {
        let texts: Vec<(String, Vec<u8>)> = names
            .iter()
            .map(|n| (n.to_string(), self.read(n)))
            .collect();
        let files: Vec<(&str, &[u8])> = texts
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_slice()))
            .collect();
        verify_texts(&self.keys(), &files)
    }
}

fn login(a: &Audit, user: &str) {
    a.write("login.success", user, None, json!({ "mfa": "none" }));
}

fn lines(text: &[u8]) -> Vec<String> {
    String::from_utf8(text.to_vec())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn broken(r: Result<super::verify::Summary, VerifyError>) -> Broken {
    match r {
        Err(VerifyError::Broken(b)) => b,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn lines_carry_seq_instance_and_chain_last_and_verify() {
    let s = setup();
    let a = s.audit("audit.log", "gw1:8443");
    for u in ["a", "b", "c"] {
        login(&a, u);
    }
    // A caller cannot forge the chain's own members through the details.
    a.write(
        "x",
        "d",
        None,
        json!({ "seq": 99, "chain": "f00", "instance": "evil" }),
    );
    let ls = lines(&s.read("audit.log"));
    assert_eq!(ls.len(), 4);
    for (i, l) in ls.iter().enumerate() {
        assert!(
            l.starts_with(&format!("{{\"seq\":{},\"instance\":\"gw1:8443\",", i + 1)),
            "{l}"
        );
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["chain"].as_str().unwrap().len(), 64);
        assert!(l.ends_with("\"}"));
        assert!(l.contains(",\"chain\":\""));
    }
    let sum = s.verify(&["audit.log"]).unwrap();
    assert_eq!(sum.events, 4);
    assert_eq!((sum.first_seq, sum.last_seq), (Some(1), Some(4)));
    assert!(sum.notes.is_empty());
}

#[test]
fn the_chain_continues_across_reopen_and_restart() {
    let s = setup();
    let a = s.audit("audit.log", "gw1:8443");
    login(&a, "a");
    login(&a, "b");
    std::fs::rename(
        s.dir.path().join("audit.log"),
        s.dir.path().join("audit.log.1"),
    )
    .unwrap();
    login(&a, "between");
    a.reopen();
    login(&a, "c");
    drop(a);
    // A restart resumes from the file's last line.
    let b = s.audit("audit.log", "gw1:8443");
    login(&b, "d");
    assert_eq!(lines(&s.read("audit.log.1")).len(), 3);
    assert_eq!(lines(&s.read("audit.log")).len(), 2);
    let sum = s.verify(&["audit.log.1", "audit.log"]).unwrap();
    assert_eq!((sum.events, sum.last_seq), (5, Some(5)));
    // Today's file alone: its first line is the anchor, and that is said.
    let alone = s.verify(&["audit.log"]).unwrap();
    assert_eq!(alone.events, 2);
    assert!(
        alone.notes[0].contains("starts at seq 4"),
        "{:?}",
        alone.notes
    );
}

#[test]
fn reopen_before_any_event_still_chains_from_the_old_file() {
    let s = setup();
    let a = s.audit("audit.log", "gw1:8443");
    login(&a, "a");
    drop(a);
    let b = s.audit("audit.log", "gw1:8443");
    std::fs::rename(
        s.dir.path().join("audit.log"),
        s.dir.path().join("audit.log.1"),
    )
    .unwrap();
    b.reopen();
    login(&b, "b");
    assert!(s.verify(&["audit.log.1", "audit.log"]).is_ok());
}

#[test]
fn two_writers_on_one_file_keep_one_chain() {
    let s = setup();
    let gw = s.audit("audit.log", "gw1:8443");
    let admin = s.audit("audit.log", "gw1:admin");
    login(&gw, "a");
    admin.record("a", None, &super::AuditEvent::UserUnlocked);
    login(&gw, "b");
    login(&gw, "c");
    admin.record("b", None, &super::AuditEvent::UserUnlocked);
    let sum = s.verify(&["audit.log"]).unwrap();
    assert_eq!(sum.events, 5);
    // And concurrently: four writers, each with its own open file as separate
    // processes would have, on their own threads.
    drop((gw, admin));
    let start = Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let w = s.audit("audit.log", &format!("w{i}"));
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                (0..500).for_each(|_| login(&w, "t"))
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(s.verify(&["audit.log"]).unwrap().events, 2005);
}

#[test]
fn lines_removed_behind_the_writer_show_as_a_gap() {
    let s = setup();
    let a = s.audit("audit.log", "gw1:8443");
    for u in ["a", "b", "c"] {
        login(&a, u);
    }
    let ls = lines(&s.read("audit.log"));
    std::fs::write(s.dir.path().join("audit.log"), format!("{}\n", ls[0])).unwrap();
    login(&a, "d");
    let b = broken(s.verify(&["audit.log"]));
    assert_eq!(b.line, 2);
    assert!(
        b.what.contains("seq 4 follows seq 1: 2 lines removed"),
        "{b}"
    );
}

#[test]
fn a_file_cut_mid_line_is_continued_on_a_new_line_and_reported() {
    let s = setup();
    let a = s.audit("audit.log", "gw1:8443");
    login(&a, "a");
    login(&a, "b");
    drop(a);
    let text = s.read("audit.log");
    std::fs::write(s.dir.path().join("audit.log"), &text[..text.len() - 20]).unwrap();
    let b = broken(s.verify(&["audit.log"]));
    assert_eq!(b.line, 2);
    assert!(b.what.contains("middle of this line"), "{b}");
    let a = s.audit("audit.log", "gw1:8443");
    login(&a, "c");
    let ls = lines(&s.read("audit.log"));
    assert_eq!(ls.len(), 3, "the new line starts on its own line");
    assert!(
        ls[2].starts_with("{\"seq\":2,"),
        "chains from the last whole line"
    );
}

#[test]
fn every_kind_of_tampering_names_the_first_bad_line() {
    let s = setup();
    let a = s.audit("audit.log", "gw1:8443");
    for u in ["a", "b", "c", "d", "e"] {
        login(&a, u);
    }
    let ls = lines(&s.read("audit.log"));
    let keys = s.keys();
    let check = |edited: Vec<String>| {
        let text = edited.join("\n") + "\n";
        broken(verify_texts(&keys, &[("f", text.as_bytes())]))
    };
    let mut changed = ls.clone();
    changed[2] = changed[2].replace("\"user\":\"c\"", "\"user\":\"x\"");
    let b = check(changed);
    assert_eq!(b.line, 3);
    assert!(b.what.contains("seq 3 was changed"), "{b}");

    let mut removed = ls.clone();
    removed.remove(1);
    let b = check(removed);
    assert_eq!(b.line, 2);
    assert!(
        b.what
            .contains("seq 3 follows seq 1: 1 line removed before line 2"),
        "{b}"
    );

    let mut swapped = ls.clone();
    swapped.swap(1, 2);
    let b = check(swapped);
    assert_eq!(b.line, 2);
    assert!(b.what.contains("reordered"), "{b}");

    let mut inserted = ls.clone();
    let forged = ls[1]
        .replace("\"user\":\"b\"", "\"user\":\"z\"")
        .replace("\"seq\":2,", "\"seq\":3,");
    inserted.insert(2, forged);
    let b = check(inserted);
    assert_eq!(b.line, 3);
    assert!(b.what.contains("seq 3 was changed or inserted"), "{b}");

    let mut plain = ls.clone();
    plain.insert(1, r#"{"ts":"x","event":"login.success","user":"z"}"#.into());
    let b = check(plain);
    assert_eq!(b.line, 2);
    assert!(b.what.contains("not a chained audit line"), "{b}");

    let mut first = ls.clone();
    first[0] = first[0].replace("\"user\":\"a\"", "\"user\":\"q\"");
    assert_eq!(check(first).line, 1);

    // A wrong key is not a pass.
    let text = ls.join("\n") + "\n";
    assert!(verify_texts(&[[0; 32]], &[("f", text.as_bytes())]).is_err());
}

#[test]
fn rotated_keys_still_verify_old_lines() {
    let s = setup();
    let a = s.audit("audit.log", "gw1:8443");
    login(&a, "before");
    // rotate-key puts a new primary in front of the old key; the handle reloads it.
    let key_file = s.dir.path().join("encryption.key");
    let old = std::fs::read_to_string(&key_file).unwrap();
    std::fs::write(&key_file, format!("{}\n{old}", generate_key())).unwrap();
    s.keys.reload_if_changed();
    login(&a, "after");
    assert_eq!(s.keys().len(), 2);
    assert_eq!(s.verify(&["audit.log"]).unwrap().events, 2);
    // Drop the old key: the line it sealed no longer verifies.
    let new_only = &s.keys()[..1];
    let text = s.read("audit.log");
    assert!(verify_texts(new_only, &[("f", &text)]).is_err());
}

#[test]
fn several_files_given_out_of_order_are_refused() {
    let s = setup();
    let a = s.audit("audit.log", "gw1:8443");
    login(&a, "a");
    std::fs::rename(s.dir.path().join("audit.log"), s.dir.path().join("old")).unwrap();
    a.reopen();
    login(&a, "b");
    assert!(s.verify(&["old", "audit.log"]).is_ok());
    let b = broken(s.verify(&["audit.log", "old"]));
    assert_eq!((b.file.as_str(), b.line), ("old", 1));
    assert!(b.what.contains("new chain starts here"), "{b}");
}
