//! The sign-in service in-process: the embedded store in a temporary directory, a real
//! users file and key ring, and a fake clock — every step of the flow without a socket.

use crate::hash_pool::HashPool;
use crate::users::UsersHandle;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::code_step::{Challenged, Confirmed, Enrolled};
use super::password::{Credentials, PasswordOutcome};
use super::test_support::DownStore;
use super::*;
use crate::core::auth_flow::SecondFactor;
use crate::core::password::{Cost, hash};
use crate::core::totp::{Algorithm, code_at_step};
use crate::store::embedded::EmbeddedStore;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const START_MS: u64 = 1_900_000_000_000;
const PERIOD: u64 = 30;

/// A clock that moves only when told.
struct FakeClock(AtomicU64);

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

mod keys;

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<FakeClock>,
    signin: SignIn,
    users: Arc<UsersHandle>,
}

impl Fixture {
    fn user(&self, name: &str) -> Arc<User> {
        self.users.get().directory.find(name).unwrap().clone()
    }

    /// The audit events written so far (one JSON object per line).
    fn audit_lines(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("audit.log")).unwrap_or_default()
    }

    fn advance(&self, ms: u64) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
    }

    fn code(&self, secret: &[u8]) -> String {
        let step = self.clock.now_ms() / 1000 / PERIOD;
        code_at_step(&self.signin.settings.totp, secret, step)
    }

    async fn password(&self, user: &str, password: &str) -> Result<PasswordOutcome, SignInError> {
        self.signin
            .password(
                Credentials {
                    username: user,
                    password,
                    device_token: None,
                },
                IP,
                Duration::ZERO,
            )
            .await
    }
}

fn fixture_with(store: Option<Arc<dyn Store>>) -> Fixture {
    fixture_full(store, None)
}

/// A fixture whose sign-in service has `[webauthn]` set as `keys` says.
fn fixture_full(
    store: Option<Arc<dyn Store>>,
    keys_engine: Option<crate::signin::security_keys::KeyEngine>,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pw = hash(b"correct horse", Cost::DEFAULT).unwrap();
    let users = format!(
        "[[users]]\nusername = \"nurse\"\nroles = [\"staff\"]\npassword_hash = \"{pw}\"\n\n\
         [[users]]\nusername = \"pat\"\nroles = [\"patient\"]\npassword_hash = \"{pw}\"\n\n\
         [[users]]\nusername = \"gone\"\ndisabled = true\npassword_hash = \"{pw}\"\n"
    );
    let users_file = dir.path().join("users.toml");
    std::fs::write(&users_file, users).unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{}\n", crate::keys::generate_key())).unwrap();
    let keys = Arc::new(KeyringHandle::load(Some(&key_file)).unwrap());
    let store = store.unwrap_or_else(|| {
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).unwrap();
        Arc::new(EmbeddedStore::open(&db).unwrap())
    });
    let users = Arc::new(UsersHandle::load(&users_file).unwrap());
    let clock = Arc::new(FakeClock(AtomicU64::new(START_MS)));
    let file = Arc::new(crate::users::source::FileSource {
        handle: users.clone(),
        hashing: Arc::new(HashPool::new(2).unwrap()),
    });
    let signin = SignIn::new(
        Parts {
            store,
            users: file.clone(),
            password_file: Some(file),
            keys: keys.clone(),
            roles: RolePolicy {
                require_2fa_roles: vec!["staff".into()],
            },
            audit: Arc::new(
                Audit::open(Some(&dir.path().join("audit.log")), keys, "test".into()).unwrap(),
            ),
            metrics: Arc::new(Metrics::new("embedded", false).unwrap()),
            clock: clock.clone(),
        },
        Settings {
            totp: TotpSettings {
                issuer: "Test".into(),
                algorithm: Algorithm::Sha1,
                digits: 6,
                period: PERIOD,
                skew: 1,
            },
            backup_codes: 4,
            remember_for: Some(Duration::from_secs(86_400)),
            lock_policy: LockPolicy {
                max_failures: 3,
                duration_ms: 60_000,
                max_duration_ms: 600_000,
                code_max_failures: 8,
            },
            keys: keys_engine,
        },
    );
    Fixture {
        _dir: dir,
        clock,
        signin,
        users,
    }
}

fn fixture() -> Fixture {
    fixture_with(None)
}

#[tokio::test]
async fn a_right_password_leads_where_roles_say() {
    let f = fixture();
    match f.password("pat", "correct horse").await.unwrap() {
        PasswordOutcome::Right { next, .. } => assert_eq!(next, Next::Complete { factor: None }),
        other => panic!("{other:?}"),
    }
    match f.password("nurse", "correct horse").await.unwrap() {
        PasswordOutcome::Right { next, .. } => assert_eq!(next, Next::Enroll),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wrong_unknown_disabled_and_empty_are_all_just_wrong() {
    let f = fixture();
    for (u, p, checked) in [
        ("pat", "nope", true),
        ("nobody", "correct horse", true),
        ("gone", "correct horse", true),
        ("pat", "", false),
    ] {
        match f.password(u, p).await.unwrap() {
            PasswordOutcome::Wrong { checked: c, .. } => assert_eq!(c, checked, "{u}"),
            other => panic!("{u}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_password_lock_follows_the_fake_clock() {
    let f = fixture();
    for _ in 0..2 {
        assert!(matches!(
            f.password("pat", "nope").await,
            Ok(PasswordOutcome::Wrong {
                checked: true,
                locked_secs: None
            })
        ));
    }
    // The third wrong password imposes the lock and is answered with it.
    assert!(matches!(
        f.password("pat", "nope").await,
        Ok(PasswordOutcome::Wrong {
            checked: true,
            locked_secs: Some(60)
        })
    ));
    f.advance(30_000);
    assert!(matches!(
        f.password("pat", "correct horse").await,
        Err(SignInError::Locked {
            retry_after_secs: 30
        })
    ));
    f.advance(30_000);
    assert!(matches!(
        f.password("pat", "correct horse").await,
        Ok(PasswordOutcome::Right { .. })
    ));
}

#[tokio::test]
async fn a_store_that_is_down_refuses_the_password_step() {
    let f = fixture_with(Some(Arc::new(DownStore)));
    assert!(matches!(
        f.password("pat", "correct horse").await,
        Err(SignInError::Store(_))
    ));
}

#[tokio::test]
async fn next_step_of_each_session_state() {
    let f = fixture();
    let nurse = f.user("nurse");
    let pat = f.user("pat");
    let s = &f.signin;
    assert_eq!(s.next(None).await.unwrap(), Next::Login);
    assert_eq!(
        s.next(Some((Stage::PasswordDone, &nurse))).await.unwrap(),
        Next::Enroll
    );
    assert_eq!(
        s.next(Some((Stage::PasswordDone, &pat))).await.unwrap(),
        Next::SignInAgain
    );
    assert_eq!(
        s.next(Some((Stage::Complete { factor: None }, &pat)))
            .await
            .unwrap(),
        Next::Complete { factor: None }
    );
    assert_eq!(
        s.next(Some((Stage::Complete { factor: None }, &nurse)))
            .await
            .unwrap(),
        Next::Enroll
    );
    // Once enrolled, a password-done session goes to the challenge.
    let secret = s.pending_secret(&nurse, IP).await.unwrap();
    let code = f.code(&secret);
    assert!(matches!(
        s.enroll(&nurse, &code, &secret, IP).await.unwrap(),
        Enrolled::Right { .. }
    ));
    assert_eq!(
        s.next(Some((Stage::PasswordDone, &nurse))).await.unwrap(),
        Next::Challenge
    );
}

#[tokio::test]
async fn enroll_then_challenge_with_totp_once_per_step_and_backup_codes_once() {
    let f = fixture();
    let s = &f.signin;
    let nurse = f.user("nurse");
    let secret = s.pending_secret(&nurse, IP).await.unwrap();
    assert_eq!(
        *s.pending_secret(&nurse, IP).await.unwrap(),
        *secret,
        "the same secret until a code verifies it"
    );
    assert!(matches!(
        s.enroll(&nurse, "000000x", &secret, IP).await.unwrap(),
        Enrolled::Wrong
    ));
    let code = f.code(&secret);
    let Enrolled::Right { codes } = s.enroll(&nurse, &code, &secret, IP).await.unwrap() else {
        panic!("enrollment refused")
    };
    assert_eq!(codes.len(), 4);
    // The step the enrollment used cannot be used again.
    assert!(matches!(
        s.challenge(&nurse, &code, IP).await.unwrap(),
        Challenged::Wrong
    ));
    f.advance(PERIOD * 1000);
    let code = f.code(&secret);
    match s.challenge(&nurse, &code, IP).await.unwrap() {
        Challenged::Right(v) => assert_eq!(v.factor, SecondFactor::Totp),
        other => panic!("{other:?}"),
    }
    match s.challenge(&nurse, &codes[0], IP).await.unwrap() {
        Challenged::Right(v) => {
            assert_eq!(v.factor, SecondFactor::BackupCode);
            assert_eq!(v.backup_left, Some(3));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.challenge(&nurse, &codes[0], IP).await.unwrap(),
        Challenged::Wrong
    ));
    // The account page takes TOTP codes only.
    assert_eq!(
        s.confirm_code(&nurse, &codes[1], IP).await.unwrap(),
        Confirmed::Wrong
    );
    assert_eq!(
        s.confirm_code(&f.user("pat"), "123456", IP).await.unwrap(),
        Confirmed::NotOn
    );
}

#[tokio::test]
async fn a_remembered_browser_replaces_the_challenge_once() {
    let f = fixture();
    let s = &f.signin;
    let pat = f.user("pat");
    let secret = s.pending_secret(&pat, IP).await.unwrap();
    let code = f.code(&secret);
    assert!(matches!(
        s.enroll(&pat, &code, &secret, IP).await.unwrap(),
        Enrolled::Right { .. }
    ));
    let device = s
        .remember_browser(&pat, "Firefox on Linux".into(), IP)
        .await
        .unwrap()
        .unwrap();
    let with_token = |token: &str| {
        let token = token.to_string();
        async move {
            s.password(
                Credentials {
                    username: "pat",
                    password: "correct horse",
                    device_token: Some(&token),
                },
                IP,
                Duration::ZERO,
            )
            .await
            .unwrap()
        }
    };
    let PasswordOutcome::Right {
        next, new_device, ..
    } = with_token(&device.token).await
    else {
        panic!("password refused")
    };
    assert_eq!(
        next,
        Next::Complete {
            factor: Some(SecondFactor::RememberedDevice)
        }
    );
    let replacement = new_device.unwrap();
    // The old token was used up; the replacement works once more.
    let PasswordOutcome::Right { next, .. } = with_token(&device.token).await else {
        panic!("password refused")
    };
    assert_eq!(next, Next::Challenge);
    let PasswordOutcome::Right { next, .. } = with_token(&replacement.token).await else {
        panic!("password refused")
    };
    assert!(matches!(next, Next::Complete { .. }));
}

#[tokio::test]
async fn wrong_codes_lock_the_code_step_after_max_failures() {
    let f = fixture();
    let s = &f.signin;
    let nurse = f.user("nurse");
    let secret = s.pending_secret(&nurse, IP).await.unwrap();
    let code = f.code(&secret);
    assert!(matches!(
        s.enroll(&nurse, &code, &secret, IP).await.unwrap(),
        Enrolled::Right { .. }
    ));
    for _ in 0..2 {
        assert!(matches!(
            s.challenge(&nurse, "000000", IP).await,
            Ok(Challenged::Wrong)
        ));
    }
    assert!(matches!(
        s.challenge(&nurse, "000000", IP).await,
        Err(SignInError::Locked {
            retry_after_secs: 60
        })
    ));
    f.advance(PERIOD * 1000);
    assert!(
        matches!(
            s.challenge(&nurse, &f.code(&secret), IP).await,
            Err(SignInError::Locked { .. })
        ),
        "even a right code is refused unchecked while locked"
    );
}
