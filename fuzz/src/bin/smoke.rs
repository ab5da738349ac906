//! A libFuzzer-free runner for the fuzz targets: replays `corpus/<target>/` and then
//! feeds mutations of it (bit flips, byte and token insertions, splices) for a fixed
//! time. No coverage feedback, so it finds less than `cargo fuzz run`, but it needs
//! only stable Rust and runs anywhere:
//!
//! ```text
//! cd fuzz && cargo run --release --no-default-features --features smoke --bin smoke -- [--secs N] [TARGET…]
//! ```
//!
//! A failing input is written to `artifacts/<target>/smoke-crash-<n>` and the runner
//! exits 1.

use std::panic;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vestibule_fuzz::TARGETS;

const TOKENS: &[&[u8]] = &[
    b"/",
    b"//",
    b"\\",
    b".",
    b"..",
    b"%2e",
    b"%2f",
    b"%2F",
    b"%5c",
    b"%00",
    b"%0a",
    b"%25",
    b"%",
    b";",
    b"=",
    b"\"",
    b" ",
    b"\t",
    b"\r\n",
    b"-",
    b"?",
    b"#",
    b":",
    b"@",
    b"&",
    b"+",
    b"csrf_token=",
    b"__Host-vestibule_session=",
    b"vestibule_session=",
    b"https://evil.example",
    b"\xff",
    b"\xc3\xa9",
    b"\xe3\x80\x82",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(input.len() + 1);
                input.insert(i, rng.next() as u8);
            }
            2 | 3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(input.len() + 1);
                input.splice(i..i, t.iter().copied());
            }
            4 if !input.is_empty() => {
                let a = rng.below(input.len());
                let b = (a + rng.below(8)).min(input.len());
                input.drain(a..b);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let i = rng.below(input.len() + 1);
                input.splice(i..i, other[from..].iter().take(16).copied());
            }
            _ => {
                let i = rng.below(input.len() + 1);
                let b = input.get(i).copied().unwrap_or(b'a');
                input.insert(i, b);
            }
        }
    }
    input.truncate(4096);
}

fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(b) = std::fs::read(e.path()) {
                out.push(b);
            }
        }
    }
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

fn main() {
    let mut secs = 20u64;
    let mut wanted: Vec<String> = vec![];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--secs" {
            secs = args.next().and_then(|s| s.parse().ok()).expect("--secs N");
        } else {
            wanted.push(a);
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for (name, f) in TARGETS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let seeds = read_corpus(&root.join("corpus").join(name));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let (mut execs, mut crashes) = (0u64, 0u32);
        let mut queue: Vec<Vec<u8>> = seeds.clone();
        while Instant::now() < deadline && crashes < 5 {
            let input = if execs < seeds.len() as u64 {
                seeds[execs as usize].clone()
            } else {
                let mut i = queue[rng.below(queue.len())].clone();
                mutate(&mut rng, &seeds, &mut i);
                i
            };
            execs += 1;
            if panic::catch_unwind(|| f(&input)).is_err() {
                crashes += 1;
                let dir = root.join("artifacts").join(name);
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!("smoke-crash-{crashes}"));
                let _ = std::fs::write(&path, &input);
                let _ = panic::take_hook();
                let r = panic::catch_unwind(|| f(&input));
                panic::set_hook(Box::new(|_| {}));
                eprintln!(
                    "{name}: CRASH on {:?} (saved to {}) {:?}",
                    String::from_utf8_lossy(&input),
                    path.display(),
                    r.err().and_then(|e| e.downcast_ref::<String>().cloned())
                );
                failed = true;
            } else if queue.len() < 10_000 && rng.below(64) == 0 {
                queue.push(input);
            }
        }
        println!("{name}: {execs} execs in {secs} s, {crashes} crashes");
    }
    std::process::exit(if failed { 1 } else { 0 });
}
