//! Bursts of guesses (SPEC §6, "checking and counting are one atomic step"): however
//! many wrong codes or passwords arrive at once, on one instance or two, at most
//! `max_failures` of them are checked before the lock holds; when Redis stops
//! answering, an attempt is refused (503) before its code is checked, never a free
//! guess. And failure records of invented usernames cost the store bounded space.
//!
//! "Checked" is measured from outside: wrong codes by the gateway's
//! `vestibule_code_checks_total{result="failure"}` (counted where the code is
//! compared), wrong passwords by 401 answers and `login.failure` audit events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;

use crate::flows::*;
use crate::harness::*;
use crate::redis::{Redis, enroll, pair, user, users};

const MAX_FAILURES: usize = 5;
const LOCKOUT: &str = "[lockout]\nmax_failures = 5\nduration = \"10m\"\nmax_duration = \"1h\"\n";
/// The same, without the per-address brake (its pauses only slow these tests).
const LOCKOUT_NO_BRAKE: &str = "[lockout]\nmax_failures = 5\nduration = \"10m\"\nmax_duration = \"1h\"\nip_failures_per_minute = 1000000\n";
const MAX_DURATION_MS: i64 = 3_600_000;
const DURATION_MS: i64 = 600_000;

/// Wrong codes checked so far by `gw`.
async fn codes_checked(gw: &Gateway) -> u64 {
    let text = gw
        .client()
        .get(gw.url(&p("/metrics")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("vestibule_code_checks_total{")
                && l.contains("result=\"failure\"")
                && !l.contains("remembered_device")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Audit events `event` about `who` in the gateways' output.
fn events(gws: &[&Gateway], event: &str, who: &str, reason: Option<&str>) -> usize {
    gws.iter()
        .flat_map(|g| audit_events(&g.logs()))
        .filter(|e| e["event"] == event && e["user"] == who)
        .filter(|e| reason.is_none_or(|r| e["reason"] == r))
        .count()
}

/// A six-digit code that is none of the codes valid around now.
fn wrong_code(phone: &Authenticator) -> String {
    let now = phone.step_now();
    let valid: Vec<String> = (now - 3..=now + 3).map(|s| phone.code_at(s)).collect();
    (1u64..)
        .map(|n| format!("{:06}", n * 7919 % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap()
}

/// A browser of its own (own connections) holding `src`'s cookies: a burst sent from
/// many connections at once, as an attacker would, not multiplexed on one.
fn twin(gw: &Gateway, src: &Browser) -> Browser {
    let b = Browser::new(gw);
    for pair in src.cookie_header().split("; ").filter(|p| !p.is_empty()) {
        if let Some((name, value)) = pair.split_once('=') {
            b.set_cookie(name, value);
        }
    }
    b
}

/// `n` submissions of `fields` to `action` at once, each on its own connection,
/// spread over the (gateway, browser, form) triples; returns how many got each
/// status. `done` counts answers as they come.
async fn burst(
    forms: &[(&Gateway, &Browser, &Page)],
    action: &str,
    fields: &[(&str, &str)],
    n: usize,
    done: &AtomicUsize,
) -> BTreeMap<u16, usize> {
    let senders: Vec<(Browser, &Page)> = (0..n)
        .map(|i| {
            let (gw, browser, form) = forms[i % forms.len()];
            (twin(gw, browser), form)
        })
        .collect();
    // Connect (TLS handshake) first, so that the submissions themselves arrive at once.
    let health = p("/health");
    join_all(
        senders
            .iter()
            .map(|(b, _)| b.api(reqwest::Method::GET, &health)),
    )
    .await;
    let all = senders.iter().map(|(browser, form)| async move {
        let status = browser.submit(form, action, fields).await.status;
        done.fetch_add(1, Ordering::SeqCst);
        status
    });
    let mut tally = BTreeMap::new();
    for status in join_all(all).await {
        *tally.entry(status).or_insert(0) += 1;
    }
    tally
}

/// The doctor, enrolled on `gws[0]`, signed in with a password on every gateway and
/// standing at the code step there: one (browser, challenge form) per gateway.
async fn doctor_at_challenge(gws: &[&Gateway]) -> (Authenticator, Vec<(Browser, Page)>) {
    let phone = enroll(&Browser::new(gws[0])).await;
    let first = Browser::new(gws[0]);
    let next = first.login_ok(&user("doctor"), "/").await;
    assert!(next.contains("/challenge"), "{next}");
    let sid = first.cookie(SESSION_COOKIE).unwrap();
    let mut out = vec![];
    for gw in gws {
        let b = Browser::new(gw);
        b.set_cookie(SESSION_COOKIE, &sid);
        let form = b.get(&p("/challenge")).await;
        assert_eq!(form.status, 200, "{}", form.describe());
        out.push((b, form));
    }
    (phone, out)
}

/// 300 wrong codes and 100 wrong passwords at once over `gws`: at most `max_failures`
/// of each are checked.
async fn bursts_are_checked_at_most_max_failures_times(gws: &[&Gateway]) {
    let (phone, at) = doctor_at_challenge(gws).await;
    let forms: Vec<(&Gateway, &Browser, &Page)> =
        gws.iter().zip(&at).map(|(g, (b, f))| (*g, b, f)).collect();
    let mut before = 0;
    for gw in gws {
        before += codes_checked(gw).await;
    }
    let wrong = wrong_code(&phone);
    let done = AtomicUsize::new(0);
    let tally = burst(&forms, &p("/challenge"), &[("code", &wrong)], 300, &done).await;
    let mut checked = 0;
    for gw in gws {
        checked += codes_checked(gw).await;
    }
    let checked = checked - before;
    eprintln!("300 concurrent wrong codes: {checked} checked, answers {tally:?}");
    assert!(
        checked <= MAX_FAILURES as u64,
        "{checked} wrong codes checked at once (limit {MAX_FAILURES}); answers {tally:?}"
    );
    assert_eq!(
        tally
            .keys()
            .copied()
            .filter(|s| ![401, 429].contains(s))
            .count(),
        0,
        "only 401 (checked, wrong) and 429 (locked): {tally:?}"
    );
    assert_eq!(
        events(gws, "mfa.locked", "doctor", None),
        1,
        "one lock, audited once"
    );

    let pat = user("patient");
    let mut forms = vec![];
    for gw in gws {
        let b = Browser::new(gw);
        let form = b.get(&p("/login")).await;
        forms.push((b, form));
    }
    let forms: Vec<(&Gateway, &Browser, &Page)> = gws
        .iter()
        .zip(&forms)
        .map(|(g, (b, f))| (*g, b, f))
        .collect();
    let tally = burst(
        &forms,
        &p("/login"),
        &[("username", &pat.name), ("password", "not the password!")],
        100,
        &done,
    )
    .await;
    let checked = events(gws, "login.failure", &pat.name, Some("wrong_password"));
    eprintln!("100 concurrent wrong passwords: {checked} checked, answers {tally:?}");
    assert!(
        checked <= MAX_FAILURES && tally.get(&401).copied().unwrap_or(0) < MAX_FAILURES,
        "{checked} wrong passwords checked at once (limit {MAX_FAILURES}); answers {tally:?}"
    );
    assert_eq!(events(gws, "login.locked", &pat.name, None), 1);
    let right = forms[0].1.login(&pat.name, &pat.password, "/").await;
    assert_eq!(right.status, 429, "the lock holds: {}", right.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_are_checked_at_most_max_failures_times_embedded() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(&users()))
        .extra(LOCKOUT)
        .start()
        .await;
    bursts_are_checked_at_most_max_failures_times(&[&gw]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_on_two_instances_are_checked_at_most_max_failures_times_redis() {
    let redis = Redis::start();
    let up = Upstream::start().await;
    let (a, b) = pair(&up, &redis.url(), LOCKOUT).await;
    bursts_are_checked_at_most_max_failures_times(&[&a, &b]).await;
}

/// Redis stops answering writes (scripts included; reads still pass): every code is
/// refused with 503 and none is checked. Then Redis is killed in the middle of a
/// burst: every code checked was counted first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_never_checked_without_being_counted_when_redis_fails() {
    let mut redis = Redis::start();
    let up = Upstream::start().await;
    let (a, _b) = pair(&up, &redis.url(), LOCKOUT).await;
    let (phone, at) = doctor_at_challenge(&[&a]).await;
    let (doc, form) = (&at[0].0, &at[0].1);
    let wrong = wrong_code(&phone);

    let before = codes_checked(&a).await;
    assert!(
        redis
            .cli(&["CLIENT", "PAUSE", "6000", "WRITE"])
            .contains("OK")
    );
    let done = AtomicUsize::new(0);
    let tally = burst(
        &[(&a, doc, form)],
        &p("/challenge"),
        &[("code", &wrong)],
        50,
        &done,
    )
    .await;
    redis.cli(&["CLIENT", "UNPAUSE"]);
    let checked = codes_checked(&a).await - before;
    eprintln!("50 wrong codes while Redis took no writes: {checked} checked, answers {tally:?}");
    assert_eq!(
        checked, 0,
        "codes checked although their failure could not be counted: {tally:?}"
    );
    assert_eq!(tally.get(&503), Some(&50), "all refused: {tally:?}");
    // The refused attempts may have been counted once Redis resumed: start afresh.
    let out = admin(&a, &["users", "unlock", "doctor"], None).await;
    assert_eq!(out.code, Some(0), "{out}");

    let before = codes_checked(&a).await;
    let failures_before = events(&[&a], "mfa.challenge.failure", "doctor", None);
    let done = Arc::new(AtomicUsize::new(0));
    let killer = {
        let done = done.clone();
        async move {
            while done.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            redis.kill();
        }
    };
    let (forms, action, fields) = (
        [(&a, doc, form)],
        p("/challenge"),
        [("code", wrong.as_str())],
    );
    let (tally, ()) = tokio::join!(burst(&forms, &action, &fields, 300, &done), killer);
    let checked = codes_checked(&a).await - before;
    // Audit lines are written as the answers go out; wait for them, not a clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut counted = 0;
    while std::time::Instant::now() < deadline {
        counted = events(&[&a], "mfa.challenge.failure", "doctor", None) - failures_before;
        if counted as u64 >= checked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "300 wrong codes, Redis killed mid-way: {checked} checked, {counted} counted, answers {tally:?}"
    );
    assert_eq!(
        counted as u64, checked,
        "every code checked was counted first: {tally:?}"
    );
    assert!(
        checked <= MAX_FAILURES as u64,
        "{checked} checked: {tally:?}"
    );
    assert!(
        tally.keys().all(|s| [401, 429, 503].contains(s)),
        "{tally:?}"
    );
}

/// Wrong passwords for invented names: the form answers exactly as for a wrong
/// password; a name longer than 64 characters stores nothing; every other record
/// expires within `max_duration` after its lock (Redis: a TTL on every key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_usernames_cost_redis_bounded_space() {
    let redis = Redis::start();
    let up = Upstream::start().await;
    let (a, _b) = pair(&up, &redis.url(), LOCKOUT_NO_BRAKE).await;
    let long = "x".repeat(65);
    let b = Browser::new(&a);
    let known = b.login("patient", "not the password!", "/").await;
    let refused = b.login(&long, "not the password!", "/").await;
    assert_eq!(refused.status, 401, "{}", refused.describe());
    assert_eq!(known.status, 401, "{}", known.describe());
    assert!(known.text_by_id("login-error").is_some());
    assert_eq!(
        refused.text_by_id("login-error"),
        known.text_by_id("login-error"),
        "the same message as a wrong password"
    );
    for n in 0..20 {
        for _ in 0..(n % 7) + 1 {
            b.login(&format!("ghost{n:0>59}"), "not the password!", "/")
                .await;
        }
    }
    let keys = redis.cli(&["--scan", "--pattern", "vestibule:l:*"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        !keys.iter().any(|k| k.contains(&hex(long.as_bytes()))),
        "a 65-character name was stored: {keys:?}"
    );
    assert_eq!(keys.len(), 21, "{keys:?}");
    for k in keys {
        let ttl: i64 = redis.cli(&["PTTL", k]).trim().parse().unwrap();
        assert!(
            ttl > 0 && ttl <= MAX_DURATION_MS + DURATION_MS,
            "{k}: {ttl} ms to live"
        );
    }
}

/// The same bound on the embedded store: no row for a name that cannot exist, and
/// every password-step row carries an expiry within the lock window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_usernames_cost_the_embedded_store_bounded_space() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(&users()))
        .extra(LOCKOUT_NO_BRAKE)
        .start()
        .await;
    let b = Browser::new(&gw);
    let long = "y".repeat(65);
    assert_eq!(b.login(&long, "not the password!", "/").await.status, 401);
    for n in 0..10 {
        for _ in 0..(n % 7) + 1 {
            b.login(&format!("ghost{n:0>59}"), "not the password!", "/")
                .await;
        }
    }
    let db = rusqlite::Connection::open(gw.p.dir.path().join("data/vestibule.sqlite3")).unwrap();
    let long_rows: i64 = db
        .query_row("SELECT COUNT(*) FROM lockouts WHERE key=?1", [&long], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(long_rows, 0, "a 65-character name was stored");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut stmt = db
        .prepare("SELECT key, expires_ms FROM lockouts WHERE step='password'")
        .unwrap();
    let rows: Vec<(String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 10);
    for (key, expires) in rows {
        assert!(
            expires > now && expires <= now + MAX_DURATION_MS + DURATION_MS,
            "{key}: expires at {expires}, now {now}"
        );
    }
}
