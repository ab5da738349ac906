//! `vestibule audit verify`: walks chained audit files in order and names the first
//! line that was changed, removed, inserted or reordered (SPEC §13). It streams the
//! files line by line, so a file of any size is checked in constant memory.
//!
//! Every configured key is tried for each line (the one that matched the previous line
//! first), so lines written before and after a `rotate-key` verify with the same key
//! file.

use std::io::BufRead;

use super::chain::{self, LineError};

/// The first bad line found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub file: String,
    /// 1-based line number within `file`.
    pub line: u64,
    pub what: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, line {}: {}", self.file, self.line, self.what)
    }
}

/// Why verification stopped.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Broken(Broken),
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
}

/// What an intact run of files holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The last line's `chain`: written down by an auditor, it lets a later check
    /// prove that nothing was cut from the end since.
    pub last_chain: Option<String>,
    /// Remarks that do not break the chain (a first file that does not start at seq 1).
    pub notes: Vec<String>,
}

/// The previous line.
struct Prev {
    seq: u64,
    chain: Vec<u8>,
}

/// Checks files one after the other, the chain running on from each to the next.
pub(crate) struct Verifier<'k> {
    keys: &'k [[u8; 32]],
    /// The key that matched last (tried first).
    hint: usize,
    prev: Option<Prev>,
    summary: Summary,
}

impl<'k> Verifier<'k> {
    /// `keys`: the audit key under every configured encryption key.
    pub fn new(keys: &'k [[u8; 32]]) -> Self {
        Self {
            keys,
            hint: 0,
            prev: None,
            summary: Summary {
                events: 0,
                first_seq: None,
                last_seq: None,
                last_chain: None,
                notes: Vec::new(),
            },
        }
    }

    /// Checks the next file, named `name` in messages.
    pub fn file(&mut self, name: &str, mut reader: impl BufRead) -> Result<(), VerifyError> {
        let io = |e| VerifyError::Io(name.to_string(), e);
        let mut buf = Vec::new();
        let mut n = 0u64;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
                break;
            }
            n += 1;
            let broken = |what: String| {
                VerifyError::Broken(Broken {
                    file: name.to_string(),
                    line: n,
                    what,
                })
            };
            let Some(line) = buf.strip_suffix(b"\n") else {
                return Err(broken(
                    "the file ends in the middle of this line: it was cut (or its writer stopped mid-line)".into(),
                ));
            };
            let link = match chain::parse(line) {
                Ok(l) => l,
                Err(LineError::NoChain) => {
                    return Err(broken(
                        "not a chained audit line (it does not end with a \"chain\" member): it was edited or inserted".into(),
                    ));
                }
                Err(LineError::NoSeq) => {
                    return Err(broken(
                        "no readable \"seq\" in this line: it was edited".into(),
                    ));
                }
            };
            let seq = link.seq;
            match self.prev.as_ref().map(|p| p.seq) {
                None if seq != 1 => self.summary.notes.push(format!(
                    "{name} starts at seq {seq}, not 1: the file before it was not given, so line {n} is taken as the anchor (the chain is checked from the line after it)"
                )),
                None => {
                    if !self.links(b"", &link) {
                        return Err(broken(
                            "seq 1 was changed: its chain does not match".into(),
                        ));
                    }
                }
                Some(p) if seq == p + 1 => {
                    let prev = self.prev.take().map(|p| p.chain).unwrap_or_default();
                    if !self.links(&prev, &link) {
                        return Err(broken(format!(
                            "seq {seq} was changed or inserted: its chain does not match the line before it"
                        )));
                    }
                }
                Some(p) if seq == 1 => {
                    return Err(broken(format!(
                        "a new chain starts here (seq 1 after seq {p}): the file was replaced or restarted, or the files are not given in order"
                    )));
                }
                Some(p) if seq > p + 1 => {
                    let what = match find_seq(&mut reader, p + 1, n) {
                        Some(at) => format!(
                            "seq {seq} follows seq {p}: lines were reordered, or this line was inserted (seq {} is at line {at})",
                            p + 1
                        ),
                        None => {
                            let gone = seq - p - 1;
                            let s = if gone == 1 { "" } else { "s" };
                            format!(
                                "seq {seq} follows seq {p}: {gone} line{s} removed before line {n}"
                            )
                        }
                    };
                    return Err(broken(what));
                }
                Some(p) => {
                    return Err(broken(format!(
                        "seq {seq} follows seq {p}: this line is out of order, a copy or inserted"
                    )));
                }
            }
            self.summary.first_seq.get_or_insert(seq);
            self.summary.last_seq = Some(seq);
            self.summary.events += 1;
            self.prev = Some(Prev {
                seq,
                chain: link.chain.to_vec(),
            });
        }
        if n == 0 {
            self.summary.notes.push(format!("{name} is empty"));
        }
        Ok(())
    }

    /// Whether `link` chains from `prev` under one of the keys.
    fn links(&mut self, prev: &[u8], link: &chain::Link<'_>) -> bool {
        let order =
            std::iter::once(self.hint).chain((0..self.keys.len()).filter(|&i| i != self.hint));
        for i in order {
            if self
                .keys
                .get(i)
                .is_some_and(|k| chain::links(k, prev, link))
            {
                self.hint = i;
                return true;
            }
        }
        false
    }

    /// The result once every file was checked.
    pub fn finish(mut self) -> Summary {
        self.summary.last_chain = self
            .prev
            .map(|p| String::from_utf8_lossy(&p.chain).into_owned());
        self.summary
    }
}

/// The line number (after `from`) of the first line of `reader` with `seq`, if any:
/// tells a reordering from a removal.
fn find_seq(reader: &mut impl BufRead, seq: u64, from: u64) -> Option<u64> {
    let mut buf = Vec::new();
    let mut n = from;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).ok()? == 0 {
            return None;
        }
        n += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if chain::parse(line).is_ok_and(|l| l.seq == seq) {
            return Some(n);
        }
    }
}

/// Verifies in-memory files in order (for tests): `(name, content)`.
pub fn verify_texts(keys: &[[u8; 32]], files: &[(&str, &[u8])]) -> Result<Summary, VerifyError> {
    let mut v = Verifier::new(keys);
    for (name, text) in files {
        v.file(name, *text)?;
    }
    Ok(v.finish())
}
