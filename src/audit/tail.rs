//! The last line of an audit file, read from its end: the chain resumes from it after a
//! restart or when another process (an admin command) wrote since, and the file may be
//! many gigabytes, so only its last few kilobytes are read.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// The first window read from the end; audit lines are a few hundred bytes.
const FIRST_WINDOW: u64 = 4096;
/// No line is searched for further back than this (a line this long is not ours).
const MAX_WINDOW: u64 = 1 << 20;

/// What the end of the file holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tail {
    /// The last complete (newline-terminated) line, without its `\n`; `None` when
    /// there is none or it is longer than [`MAX_WINDOW`].
    pub last: Option<Vec<u8>>,
    /// The file ends in the middle of a line (a crash mid-write, a cut file): the next
    /// line must start on a new line.
    pub partial: bool,
}

/// Reads the end of the first `len` bytes of `file` (positioned reads: the file's
/// append offset is not moved).
pub fn read(file: &File, len: u64) -> std::io::Result<Tail> {
    if len == 0 {
        return Ok(Tail::default());
    }
    let mut window = FIRST_WINDOW;
    loop {
        let start = len.saturating_sub(window);
        let mut buf = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        let partial = buf.last() != Some(&b'\n');
        // The `\n` that ends the last complete line.
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            if start == 0 || window >= MAX_WINDOW {
                return Ok(Tail {
                    last: None,
                    partial,
                });
            }
            window *= 2;
            continue;
        };
        match buf[..end].iter().rposition(|&b| b == b'\n') {
            Some(before) => {
                return Ok(Tail {
                    last: Some(buf[before + 1..end].to_vec()),
                    partial,
                });
            }
            None if start == 0 => {
                return Ok(Tail {
                    last: Some(buf[..end].to_vec()),
                    partial,
                });
            }
            None if window >= MAX_WINDOW => {
                return Ok(Tail {
                    last: None,
                    partial,
                });
            }
            None => window *= 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tail_of(content: &[u8]) -> Tail {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        read(&f, content.len() as u64).unwrap()
    }

    #[test]
    fn finds_the_last_complete_line() {
        assert_eq!(tail_of(b""), Tail::default());
        assert_eq!(tail_of(b"one\n").last.as_deref(), Some(&b"one"[..]));
        let t = tail_of(b"one\ntwo\n");
        assert_eq!(t.last.as_deref(), Some(&b"two"[..]));
        assert!(!t.partial);
        let cut = tail_of(b"one\ntwo\nthr");
        assert_eq!(cut.last.as_deref(), Some(&b"two"[..]));
        assert!(cut.partial);
        assert_eq!(
            tail_of(b"no newline"),
            Tail {
                last: None,
                partial: true
            }
        );
    }

    #[test]
    fn lines_longer_than_the_first_window_are_found_and_far_ends_bounded() {
        let long = "x".repeat(10_000);
        let text = format!("a\n{long}\n");
        assert_eq!(
            tail_of(text.as_bytes()).last.as_deref(),
            Some(long.as_bytes())
        );
        let huge = "y".repeat(MAX_WINDOW as usize + 10);
        let t = tail_of(format!("a\n{huge}\n").as_bytes());
        assert_eq!(t.last, None, "not searched past MAX_WINDOW");
    }
}
