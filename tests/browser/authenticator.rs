//! Chromium's virtual authenticator (WebAuthn Level 2 §11, the WebDriver extension
//! commands `POST /session/{id}/webauthn/authenticator` and its credentials), sent as
//! raw WebDriver commands through fantoccini's `issue_cmd`: a security key that needs
//! no hardware and whose stored credentials a test can read and put back.

use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{Value, json};

use crate::chrome::Chrome;

/// One raw command of the WebAuthn WebDriver extension.
#[derive(Debug)]
struct Cmd {
    method: http::Method,
    /// Below `/session/{id}/webauthn/`.
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for Cmd {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// A virtual authenticator attached to one browser.
pub struct VirtualKey {
    pub id: String,
}

async fn issue(b: &Chrome, method: http::Method, path: String, body: Option<Value>) -> Value {
    b.c.issue_cmd(Cmd { method, path, body })
        .await
        .unwrap_or_else(|e| panic!("webauthn WebDriver command failed: {e}"))
}

impl VirtualKey {
    /// A CTAP2 USB key with a PIN or fingerprint that the person always passes, that
    /// can keep discoverable credentials (passkeys).
    pub async fn attach(b: &Chrome) -> VirtualKey {
        let id = issue(
            b,
            http::Method::POST,
            "authenticator".into(),
            Some(json!({
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserConsenting": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            })),
        )
        .await;
        VirtualKey {
            id: id.as_str().expect("authenticator id").to_string(),
        }
    }

    /// The credentials the key holds (with their private keys and `signCount`).
    pub async fn credentials(&self, b: &Chrome) -> Vec<Value> {
        let v = issue(
            b,
            http::Method::GET,
            format!("authenticator/{}/credentials", self.id),
            None,
        )
        .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Puts a credential (as [`VirtualKey::credentials`] returned it) into the key.
    pub async fn add_credential(&self, b: &Chrome, cred: &Value) {
        issue(
            b,
            http::Method::POST,
            format!("authenticator/{}/credential", self.id),
            Some(cred.clone()),
        )
        .await;
    }

    /// Empties the key.
    pub async fn remove_all(&self, b: &Chrome) {
        issue(
            b,
            http::Method::DELETE,
            format!("authenticator/{}/credentials", self.id),
            None,
        )
        .await;
    }

    /// Detaches the key from the browser (a key pulled out of the USB port).
    pub async fn detach(self, b: &Chrome) {
        issue(
            b,
            http::Method::DELETE,
            format!("authenticator/{}", self.id),
            None,
        )
        .await;
    }
}
