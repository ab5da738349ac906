//! Every way a request can fail: its status, its stable code and its catalogue entry.
//! The response each gets is made in exactly one place, `pipeline::respond` (a branded
//! page for browsers, JSON for everything else); conversions here do not log.

use http::StatusCode;

/// A request that cannot be served as asked.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("host not served here")]
    MisdirectedHost,
    #[error("forbidden by access rule")]
    Denied,
    #[error("user lacks a required role")]
    MissingRole,
    /// A `max_factor_age` rule, and the user has no second factor to prove.
    #[error("a second factor is required and the user has none")]
    NoSecondFactor,
    #[error("missing or invalid CSRF token")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("websocket origin not allowed")]
    ForeignOrigin,
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream sent no response headers in time")]
    UpstreamTimeout,
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// No directory server answered (SPEC §11); nothing is guessed.
    #[error("directory unavailable: {0}")]
    DirectoryUnavailable(String),
    #[error("too many attempts")]
    Locked { retry_after_secs: u64 },
    #[error("too many requests from one address")]
    RateLimited { retry_after_secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("stored second factor cannot be decrypted")]
    SecretUnreadable,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            BadRequest(_) => StatusCode::BAD_REQUEST,
            MisdirectedHost => StatusCode::MISDIRECTED_REQUEST,
            Denied | MissingRole | NoSecondFactor | Csrf | ForeignOrigin => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            StoreUnavailable(_) | DirectoryUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Locked { .. } | RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Internal(_) | SecretUnreadable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code in JSON answers.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            BadRequest(_) => "bad_request",
            MisdirectedHost => "misdirected_request",
            Denied | MissingRole | ForeignOrigin => "forbidden",
            NoSecondFactor => "second_factor_required",
            Csrf => "csrf_token_invalid",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            HeadersTooLarge => "request_header_fields_too_large",
            PayloadTooLarge => "payload_too_large",
            UpstreamUnreachable(_) => "upstream_unreachable",
            UpstreamTimeout => "upstream_timeout",
            StoreUnavailable(_) => "service_unavailable",
            DirectoryUnavailable(_) => "directory_unavailable",
            Locked { .. } => "too_many_attempts",
            RateLimited { .. } => "too_many_requests",
            Internal(_) => "internal_error",
            SecretUnreadable => "second_factor_unreadable",
        }
    }

    /// The catalogue entry (`error.<name>.title` / `.message`) of this error's page.
    pub(crate) fn catalogue_name(&self) -> &'static str {
        use GatewayError::*;
        match self {
            BadRequest(_) => "bad_request",
            MisdirectedHost => "misdirected",
            Denied | ForeignOrigin => "denied",
            MissingRole => "missing_role",
            NoSecondFactor => "no_second_factor",
            Csrf => "csrf",
            NotFound => "not_found",
            MethodNotAllowed => "method",
            HeadersTooLarge => "headers_too_large",
            PayloadTooLarge => "payload_too_large",
            UpstreamUnreachable(_) => "upstream_unreachable",
            UpstreamTimeout => "upstream_timeout",
            StoreUnavailable(_) => "unavailable",
            DirectoryUnavailable(_) => "directory_unavailable",
            Locked { .. } => "locked",
            RateLimited { .. } => "rate_limited",
            Internal(_) => "internal",
            SecretUnreadable => "secret_unreadable",
        }
    }
}

/// Any store failure refuses the request (fail closed) with a 503. The conversion only
/// carries the detail; it is logged once, where the response is made.
impl From<crate::core::store::StoreError> for GatewayError {
    fn from(e: crate::core::store::StoreError) -> Self {
        GatewayError::StoreUnavailable(e.to_string())
    }
}

/// The sign-in service's refusals, as the gateway answers them.
impl From<crate::signin::SignInError> for GatewayError {
    fn from(e: crate::signin::SignInError) -> Self {
        use crate::signin::SignInError as S;
        match e {
            S::Store(e) => e.into(),
            S::Locked { retry_after_secs } => GatewayError::Locked { retry_after_secs },
            S::SecretUnreadable => GatewayError::SecretUnreadable,
            S::HashingBusy => GatewayError::RateLimited {
                retry_after_secs: 5,
            },
            S::HashingGone(d) | S::UsersFile(d) => GatewayError::Internal(d),
            S::DirectoryUnavailable(d) => GatewayError::DirectoryUnavailable(d),
            // The page offers no form then; a forged post is simply refused.
            S::PasswordElsewhere => GatewayError::Denied,
            S::KeysOff => GatewayError::NotFound,
            S::KeyCeremony(d) => GatewayError::Internal(d),
        }
    }
}

/// A session whose store read or holder check failed refuses the request (503).
impl From<crate::session::LoadError> for GatewayError {
    fn from(e: crate::session::LoadError) -> Self {
        match e {
            crate::session::LoadError::Store(e) => e.into(),
            crate::session::LoadError::Directory(d) => GatewayError::DirectoryUnavailable(d),
        }
    }
}
