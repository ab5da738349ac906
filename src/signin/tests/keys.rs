//! Security keys in-process (SPEC §10): real WebAuthn ceremonies between the sign-in
//! service and a software authenticator (1Password's `passkey` crates: a CTAP2
//! authenticator with P-256 keys and a WebAuthn client that builds the browser's
//! answer), the embedded store in a temporary directory, and a fake clock.

use passkey_authenticator::{Authenticator, MemoryStore, UiHint, UserCheck, UserValidationMethod};
use passkey_client::{Client, DefaultClientData};
use passkey_types::{Passkey, ctap2::Aaguid, ctap2::Ctap2Error, webauthn};
use url::Url;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::*;
use crate::config::{UserVerification, WebauthnConfig};
use crate::signin::security_keys::{KeyEngine, Registered};

const RP: &str = "clinic.example";

/// A person who touches the key and unlocks it (PIN or fingerprint) every time.
struct Person;

#[async_trait::async_trait]
impl UserValidationMethod for Person {
    type PasskeyItem = Passkey;
    async fn check_user<'a>(
        &self,
        _: UiHint<'a, Passkey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck {
            presence,
            verification,
        })
    }
    fn is_presence_enabled(&self) -> bool {
        true
    }
    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }
}

type Key = Client<
    MemoryStore,
    Person,
    passkey_crypto::AvailableBackend,
    public_suffix::PublicSuffixList,
    (),
>;

/// A software key holding `creds`, counting signatures as hardware keys do.
fn key_with(creds: MemoryStore) -> Key {
    let mut auth = Authenticator::new(
        Aaguid::new_empty(),
        creds,
        Person,
        passkey_crypto::AvailableBackend,
    );
    auth.set_make_credentials_with_signature_counter(true);
    Client::new(auth)
}

fn origin() -> Url {
    Url::parse(&format!("https://{RP}")).unwrap()
}

fn engine(uv: UserVerification, passwordless: bool) -> KeyEngine {
    KeyEngine::new(&WebauthnConfig {
        enabled: true,
        rp_id: RP.into(),
        rp_name: "Clinic".into(),
        user_verification: uv,
        passwordless,
    })
    .unwrap()
    .unwrap()
}

fn keys_fixture(uv: UserVerification) -> Fixture {
    super::fixture_full(None, Some(engine(uv, false)))
}

/// Registers `key` for `user` under `name`.
async fn register(f: &Fixture, key: &mut Key, user: &User, name: &str) -> Registered {
    let started = f.signin.key_register_start(user, name).await.unwrap();
    let options: webauthn::CredentialCreationOptions =
        serde_json::from_value(started.options).unwrap();
    let made = key
        .register(&origin(), options, DefaultClientData)
        .await
        .unwrap();
    let answer: RegisterPublicKeyCredential =
        serde_json::from_value(serde_json::to_value(made).unwrap()).unwrap();
    f.signin
        .key_register_finish(user, &started.ceremony, &answer, IP)
        .await
        .unwrap()
}

/// Starts a challenge and lets `key` answer it: (ceremony handle, answer).
async fn answer_challenge(
    f: &Fixture,
    key: &mut Key,
    user: &User,
) -> (String, PublicKeyCredential) {
    let started = f.signin.key_challenge_start(user).await.unwrap().unwrap();
    let options: webauthn::CredentialRequestOptions =
        serde_json::from_value(started.options).unwrap();
    let signed = key
        .authenticate(&origin(), options, DefaultClientData)
        .await
        .unwrap();
    let answer: PublicKeyCredential =
        serde_json::from_value(serde_json::to_value(signed).unwrap()).unwrap();
    (started.ceremony, answer)
}

async fn challenge(
    f: &Fixture,
    user: &User,
    ceremony: &str,
    answer: &PublicKeyCredential,
) -> Challenged {
    f.signin
        .key_challenge_finish(user, ceremony, answer, IP)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_enrolls_a_staff_user_and_then_signs_in() {
    for uv in [
        UserVerification::Required,
        UserVerification::Preferred,
        UserVerification::Discouraged,
    ] {
        let f = keys_fixture(uv);
        let nurse = f.user("nurse");
        let mut key = key_with(MemoryStore::new());
        assert!(matches!(
            f.signin
                .next(Some((Stage::PasswordDone, &nurse)))
                .await
                .unwrap(),
            Next::Enroll
        ));
        assert!(
            matches!(
                register(&f, &mut key, &nurse, "blue key").await,
                Registered::Right { first: true }
            ),
            "{uv:?}"
        );
        // The key satisfies require_2fa_roles: the next sign-in is a challenge.
        assert!(matches!(
            f.signin
                .next(Some((Stage::PasswordDone, &nurse)))
                .await
                .unwrap(),
            Next::Challenge
        ));
        let keys = f.signin.keys_of(&nurse).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "blue key");
        assert_eq!(keys[0].last_used_ms, None);
        let (ceremony, answer) = answer_challenge(&f, &mut key, &nurse).await;
        match challenge(&f, &nurse, &ceremony, &answer).await {
            Challenged::Right(v) => assert_eq!(v.factor, SecondFactor::Webauthn),
            other => panic!("{uv:?}: {other:?}"),
        }
        let used = f.signin.keys_of(&nurse).await.unwrap().remove(0);
        assert_eq!(used.last_used_ms, Some(START_MS));
        assert!(used.counter > keys[0].counter, "the counter moved");
        let audit = f.audit_lines();
        assert!(audit.contains("\"event\":\"mfa.webauthn.registered\""));
        assert!(audit.contains("\"event\":\"mfa.webauthn.success\""));
        assert!(audit.contains("\"method\":\"webauthn\""));
    }
}

#[tokio::test]
async fn an_answer_is_good_for_one_ceremony_only() {
    let f = keys_fixture(UserVerification::Preferred);
    let nurse = f.user("nurse");
    let mut key = key_with(MemoryStore::new());
    register(&f, &mut key, &nurse, "k").await;
    let (ceremony, answer) = answer_challenge(&f, &mut key, &nurse).await;
    assert!(matches!(
        challenge(&f, &nurse, &ceremony, &answer).await,
        Challenged::Right(_)
    ));
    // The same ceremony again: its state was taken.
    assert!(matches!(
        challenge(&f, &nurse, &ceremony, &answer).await,
        Challenged::Wrong
    ));
    // The old answer to a new ceremony: the challenge differs.
    let fresh = f
        .signin
        .key_challenge_start(&nurse)
        .await
        .unwrap()
        .unwrap()
        .ceremony;
    assert!(matches!(
        challenge(&f, &nurse, &fresh, &answer).await,
        Challenged::Wrong
    ));
    // Another user's ceremony cannot be answered for this one.
    let pat = f.user("pat");
    let (theirs, answer) = answer_challenge(&f, &mut key, &nurse).await;
    assert!(matches!(
        challenge(&f, &pat, &theirs, &answer).await,
        Challenged::Wrong
    ));
    // A key registered to nobody here.
    let mut stranger = key_with(MemoryStore::new());
    let started = f.signin.key_challenge_start(&nurse).await.unwrap().unwrap();
    let options: webauthn::CredentialRequestOptions =
        serde_json::from_value(started.options).unwrap();
    assert!(
        stranger
            .authenticate(&origin(), options, DefaultClientData)
            .await
            .is_err(),
        "an authenticator without an allowed credential cannot answer"
    );
    assert!(f.audit_lines().contains("\"reason\":\"expired\""));
}

#[tokio::test]
async fn a_cloned_key_whose_counter_goes_back_is_refused_and_audited() {
    let f = keys_fixture(UserVerification::Preferred);
    let nurse = f.user("nurse");
    let mut key = key_with(MemoryStore::new());
    register(&f, &mut key, &nurse, "cloned").await;
    // Copy the key's private state now: the clone an attacker made.
    let snapshot: MemoryStore = key.authenticator().store().clone();
    for _ in 0..2 {
        let (c, a) = answer_challenge(&f, &mut key, &nurse).await;
        assert!(matches!(
            challenge(&f, &nurse, &c, &a).await,
            Challenged::Right(_)
        ));
    }
    let before = f.signin.keys_of(&nurse).await.unwrap().remove(0).counter;
    let mut clone = key_with(snapshot);
    let (c, a) = answer_challenge(&f, &mut clone, &nurse).await;
    assert!(
        matches!(challenge(&f, &nurse, &c, &a).await, Challenged::Wrong),
        "a signature counter below the stored one is refused"
    );
    assert_eq!(
        f.signin.keys_of(&nurse).await.unwrap().remove(0).counter,
        before,
        "the refused answer did not move the counter"
    );
    let audit = f.audit_lines();
    assert!(
        audit.contains("\"event\":\"mfa.webauthn.failure\"")
            && audit.contains("\"reason\":\"counter_regressed\""),
        "{audit}"
    );
    // It counts as a failed second factor (towards the code lockout).
    assert!(audit.contains("\"event\":\"mfa.challenge.failure\""));
    // The genuine key still works.
    let (c, a) = answer_challenge(&f, &mut key, &nurse).await;
    assert!(matches!(
        challenge(&f, &nurse, &c, &a).await,
        Challenged::Right(_)
    ));
}

#[tokio::test]
async fn the_last_factor_of_staff_stays_and_a_second_key_can_replace_the_first() {
    let f = keys_fixture(UserVerification::Preferred);
    let nurse = f.user("nurse");
    let (mut first, mut second) = (key_with(MemoryStore::new()), key_with(MemoryStore::new()));
    register(&f, &mut first, &nurse, "first").await;
    let id1 = f.signin.keys_of(&nurse).await.unwrap()[0].id.clone();
    assert_eq!(
        f.signin.key_remove(&nurse, &id1, IP).await.unwrap(),
        crate::core::store::KeyRemoval::LastFactor
    );
    assert!(matches!(
        register(&f, &mut second, &nurse, "second").await,
        Registered::Right { first: false }
    ));
    // The options exclude the keys the user has, so one authenticator is not
    // registered twice (the store refuses a credential id twice: conformance suite).
    let started = f.signin.key_register_start(&nurse, "again").await.unwrap();
    let excluded = started.options["publicKey"]["excludeCredentials"].to_string();
    for k in f.signin.keys_of(&nurse).await.unwrap() {
        let id = data_encoding::BASE64URL_NOPAD.encode(&k.id);
        assert!(excluded.contains(&id), "{excluded} lacks {id}");
    }
    assert_eq!(
        f.signin.key_remove(&nurse, &id1, IP).await.unwrap(),
        crate::core::store::KeyRemoval::Removed
    );
    assert!(
        f.signin
            .key_rename(
                &nurse,
                &f.signin.keys_of(&nurse).await.unwrap()[0].id,
                "spare"
            )
            .await
            .unwrap()
    );
    let keys = f.signin.keys_of(&nurse).await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["spare"]
    );
    // The removed key no longer signs in; the other does.
    let started = f.signin.key_challenge_start(&nurse).await.unwrap().unwrap();
    let options: webauthn::CredentialRequestOptions =
        serde_json::from_value(started.options).unwrap();
    assert!(
        first
            .authenticate(&origin(), options, DefaultClientData)
            .await
            .is_err()
    );
    let (c, a) = answer_challenge(&f, &mut second, &nurse).await;
    assert!(matches!(
        challenge(&f, &nurse, &c, &a).await,
        Challenged::Right(_)
    ));
    assert!(
        f.audit_lines()
            .contains("\"event\":\"mfa.webauthn.removed\"")
    );
    // A patient may remove their last key.
    let pat = f.user("pat");
    let mut pk = key_with(MemoryStore::new());
    register(&f, &mut pk, &pat, "mine").await;
    let id = f.signin.keys_of(&pat).await.unwrap()[0].id.clone();
    assert_eq!(
        f.signin.key_remove(&pat, &id, IP).await.unwrap(),
        crate::core::store::KeyRemoval::Removed
    );
}

#[tokio::test]
async fn wrong_key_answers_count_towards_the_code_lockout() {
    let f = keys_fixture(UserVerification::Preferred);
    let nurse = f.user("nurse");
    let mut key = key_with(MemoryStore::new());
    register(&f, &mut key, &nurse, "k").await;
    let (c, a) = answer_challenge(&f, &mut key, &nurse).await;
    // max_failures = 3 in the fixture: three answers to used ceremonies lock the step.
    assert!(matches!(
        challenge(&f, &nurse, &c, &a).await,
        Challenged::Right(_)
    ));
    for _ in 0..2 {
        assert!(matches!(
            challenge(&f, &nurse, &c, &a).await,
            Challenged::Wrong
        ));
    }
    let third = f.signin.key_challenge_finish(&nurse, &c, &a, IP).await;
    assert!(
        matches!(third, Err(SignInError::Locked { .. })),
        "{third:?}"
    );
    // Locked: even a right answer is refused unchecked.
    let (c, a) = answer_challenge(&f, &mut key, &nurse).await;
    assert!(matches!(
        f.signin.key_challenge_finish(&nurse, &c, &a, IP).await,
        Err(SignInError::Locked { .. })
    ));
}

/// A phone's passkey: one discoverable credential (the `MemoryStore` above looks
/// credentials up by id only, which a passwordless sign-in does not give).
type Phone = Client<
    Option<Passkey>,
    Person,
    passkey_crypto::AvailableBackend,
    public_suffix::PublicSuffixList,
    (),
>;

async fn passwordless(
    f: &Fixture,
    phone: &mut Phone,
) -> (Option<Arc<User>>, String, PublicKeyCredential) {
    let started = f.signin.passwordless_start().await.unwrap();
    assert_eq!(
        started.options["publicKey"]["userVerification"], "required",
        "{}",
        started.options
    );
    let options: webauthn::CredentialRequestOptions =
        serde_json::from_value(started.options).unwrap();
    let signed = phone
        .authenticate(&origin(), options, DefaultClientData)
        .await
        .unwrap();
    let answer: PublicKeyCredential =
        serde_json::from_value(serde_json::to_value(signed).unwrap()).unwrap();
    let who = f
        .signin
        .passwordless_finish(&started.ceremony, &answer, IP)
        .await
        .unwrap();
    (who, started.ceremony, answer)
}

#[tokio::test]
async fn a_passkey_alone_signs_in_its_owner_when_passwordless_is_on() {
    let f = super::fixture_full(None, Some(engine(UserVerification::Preferred, true)));
    let nurse = f.user("nurse");
    let mut auth = Authenticator::new(
        Aaguid::new_empty(),
        None::<Passkey>,
        Person,
        passkey_crypto::AvailableBackend,
    );
    auth.set_make_credentials_with_signature_counter(true);
    let mut phone: Phone = Client::new(auth);
    let started = f.signin.key_register_start(&nurse, "phone").await.unwrap();
    assert_eq!(
        started.options["publicKey"]["authenticatorSelection"]["residentKey"], "preferred",
        "a discoverable credential is asked for"
    );
    let options: webauthn::CredentialCreationOptions =
        serde_json::from_value(started.options).unwrap();
    let made = phone
        .register(&origin(), options, DefaultClientData)
        .await
        .unwrap();
    let answer: RegisterPublicKeyCredential =
        serde_json::from_value(serde_json::to_value(made).unwrap()).unwrap();
    assert!(matches!(
        f.signin
            .key_register_finish(&nurse, &started.ceremony, &answer, IP)
            .await
            .unwrap(),
        Registered::Right { first: true }
    ));

    let (who, ceremony, answer) = passwordless(&f, &mut phone).await;
    assert_eq!(who.map(|u| u.username.clone()).as_deref(), Some("nurse"));
    assert!(f.audit_lines().contains("\"passwordless\":true"));
    // The same answer again: the ceremony was used up.
    assert!(
        f.signin
            .passwordless_finish(&ceremony, &answer, IP)
            .await
            .unwrap()
            .is_none()
    );
    // After a 2FA reset the passkey names nobody.
    f.signin.store.mfa_remove("nurse").await.unwrap();
    let (who, _, _) = passwordless(&f, &mut phone).await;
    assert!(who.is_none());
    assert!(f.audit_lines().contains("\"reason\":\"unknown_key\""));
}

#[tokio::test]
async fn passwordless_is_refused_unless_configured() {
    let f = keys_fixture(UserVerification::Preferred);
    assert!(matches!(
        f.signin.passwordless_start().await,
        Err(SignInError::KeysOff)
    ));
    let off = super::fixture();
    assert!(matches!(
        off.signin.key_register_start(&off.user("nurse"), "k").await,
        Err(SignInError::KeysOff)
    ));
}
