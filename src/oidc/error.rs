//! Protocol errors. `Display` of [`ErrorCode`] is the RFC 6749 / OIDC Core wire string.

use std::fmt;

/// RFC 6749 §4.1.2.1 / §5.2, RFC 6750 §3.1 and OIDC Core §3.1.2.6 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    LoginRequired,
    InvalidToken,
    RequestNotSupported,
    RequestUriNotSupported,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong with an authorization request. The first group cannot be sent back to the client
/// (RFC 6749 §4.1.2.1: never redirect to an unverified URI) and is shown to the person instead.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error("the request has no client_id")]
    MissingClientId,
    #[error("unknown client_id \"{0}\"")]
    UnknownClient(String),
    #[error("redirect_uri is missing and client \"{0}\" has more than one registered")]
    MissingRedirectUri(String),
    #[error("redirect_uri \"{redirect_uri}\" is not registered for client \"{client_id}\"")]
    UnregisteredRedirectUri {
        client_id: String,
        redirect_uri: String,
    },
    #[error("{0}")]
    MalformedRequest(String),
    /// Sent back to the client's verified redirect URI.
    #[error("{code}: {description}")]
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        code: ErrorCode,
        description: String,
    },
}

/// Token endpoint errors (RFC 6749 §5.2).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// `used_basic` decides whether the 401 carries `WWW-Authenticate: Basic` (RFC 6749 §5.2).
    #[error("invalid_client: {description}")]
    InvalidClient {
        description: String,
        used_basic: bool,
    },
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    #[error("server_error: {0}")]
    Server(String),
    /// The client's request budget is spent (answered 429 with Retry-After).
    #[error("temporarily_unavailable: too many requests")]
    RateLimited(std::time::Duration),
    /// Not in RFC 6749 §5.2, but a refresh that cannot be checked now must not look like a revoked grant.
    #[error("temporarily_unavailable: {0}")]
    TemporarilyUnavailable(String),
}

impl TokenError {
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            TokenError::InvalidClient { .. } => ErrorCode::InvalidClient,
            TokenError::InvalidGrant(_) => ErrorCode::InvalidGrant,
            TokenError::UnauthorizedClient(_) => ErrorCode::UnauthorizedClient,
            TokenError::UnsupportedGrantType(_) => ErrorCode::UnsupportedGrantType,
            TokenError::InvalidScope(_) => ErrorCode::InvalidScope,
            TokenError::Server(_) => ErrorCode::ServerError,
            TokenError::TemporarilyUnavailable(_) | TokenError::RateLimited(_) => {
                ErrorCode::TemporarilyUnavailable
            }
        }
    }

    pub fn description(&self) -> &str {
        match self {
            TokenError::InvalidRequest(d)
            | TokenError::InvalidGrant(d)
            | TokenError::UnauthorizedClient(d)
            | TokenError::UnsupportedGrantType(d)
            | TokenError::InvalidScope(d)
            | TokenError::Server(d)
            | TokenError::TemporarilyUnavailable(d) => d,
            TokenError::InvalidClient { description, .. } => description,
            TokenError::RateLimited(_) => "too many requests; retry later",
        }
    }
}

/// Userinfo errors (RFC 6750 §3.1).
#[derive(Debug, thiserror::Error)]
pub enum UserinfoError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("invalid_token: {0}")]
    InvalidToken(String),
}

impl UserinfoError {
    pub fn code(&self) -> ErrorCode {
        match self {
            UserinfoError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            UserinfoError::InvalidToken(_) => ErrorCode::InvalidToken,
        }
    }
}
