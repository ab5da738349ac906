//! The dependency rules of docs/architecture.md, checked on the source: the domain core
//! knows nothing of HTTP, storage or the wiring; the sign-in service knows nothing of
//! HTTP, pages or the proxy; the proxy never renders pages or touches the store; the
//! pages never forward; the stores know nothing of HTTP or pages; the error type does
//! not render pages; configuration imports neither pages nor proxy; the listeners take
//! a handler, not the wiring. A `use` that breaks a rule fails this test, so the
//! layering cannot erode one convenient import at a time.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// Lines of code (not comments) in `module` that mention any of `forbidden`.
fn violations(module: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let target = root.join(module);
    let files = if target.is_dir() {
        rust_files(&target)
    } else {
        vec![target.with_extension("rs")]
    };
    assert!(!files.is_empty(), "no files for module {module}");
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for bad in forbidden {
                if code.contains(bad) {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn core_knows_nothing_of_http_storage_or_sockets() {
    let v = violations(
        "core",
        &[
            "crate::http",
            "crate::store",
            "crate::proxy",
            "crate::pages",
            "crate::session",
            "crate::accept",
            "crate::app",
            "crate::signin",
            "crate::pipeline",
            "crate::audit",
            "crate::metrics",
            "crate::keys",
            "hyper::",
            "http::",
            "redis::",
            "rusqlite::",
            "cookie::",
            "tokio::",
        ],
    );
    assert!(
        v.is_empty(),
        "core must stay free of HTTP and storage:\n{}",
        v.join("\n")
    );
}

#[test]
fn proxy_never_renders_pages_nor_touches_the_store_or_sessions() {
    let v = violations(
        "proxy",
        &[
            "crate::pages",
            "crate::session",
            "crate::store",
            "crate::core::store",
        ],
    );
    assert!(v.is_empty(), "{}", v.join("\n"));
}

#[test]
fn pages_never_forward() {
    let v = violations("pages", &["crate::proxy"]);
    assert!(v.is_empty(), "{}", v.join("\n"));
}

#[test]
fn stores_know_nothing_of_http_pages_or_the_wiring() {
    let v = violations(
        "store",
        &[
            "crate::http",
            "crate::pages",
            "crate::proxy",
            "crate::app",
            "crate::signin",
            "crate::pipeline",
            "hyper::",
        ],
    );
    assert!(v.is_empty(), "{}", v.join("\n"));
}

#[test]
fn signin_knows_nothing_of_http_pages_or_the_proxy() {
    let v = violations(
        "signin",
        &[
            "crate::http",
            "crate::pages",
            "crate::proxy",
            "crate::pipeline",
            "crate::app",
            "crate::session",
            "hyper::",
            "http::",
            "cookie::",
        ],
    );
    assert!(
        v.is_empty(),
        "the sign-in service must stay free of HTTP:\n{}",
        v.join("\n")
    );
}

#[test]
fn the_error_type_does_not_render_pages() {
    let v = violations("http/error", &["crate::pages", "askama"]);
    assert!(v.is_empty(), "{}", v.join("\n"));
}

#[test]
fn configuration_imports_neither_pages_nor_proxy() {
    let v = violations("config", &["crate::pages", "crate::proxy"]);
    assert!(v.is_empty(), "{}", v.join("\n"));
}

#[test]
fn listeners_take_a_handler_not_the_wiring() {
    let v = violations("accept", &["crate::app", "crate::pages", "crate::pipeline"]);
    assert!(v.is_empty(), "{}", v.join("\n"));
}

/// The routing table decides whose request it is and how it is forwarded; it never
/// answers, reads sessions or the store (SPEC §8; docs/architecture.md).
#[test]
fn the_apps_table_neither_answers_nor_reads_sessions_or_the_store() {
    let v = violations(
        "apps",
        &[
            "crate::pages",
            "crate::pipeline",
            "crate::session",
            "crate::store",
            "crate::core::store",
        ],
    );
    assert!(v.is_empty(), "{}", v.join("\n"));
}
