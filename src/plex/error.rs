use std::time::Duration;

/// What can go wrong talking to plex.tv. Messages name the failure, never a token or PIN code.
#[derive(Debug, thiserror::Error)]
pub enum PlexError {
    /// 429, code 1003. plex.tv's limits are undocumented; back off.
    #[error("plex.tv is rate limiting requests")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, timeout, refused connection, DNS failure. Shown as "Plex is unavailable", never as a denial.
    #[error("Plex is unavailable: {0}")]
    Unavailable(String),
    /// 404 code 1020: the PIN expired, is unknown, or was created under another client identifier.
    #[error("the Plex PIN is unknown or expired")]
    PinNotFound,
    /// 401 (code 1001) or 422 on a call made with a user's token.
    #[error("plex.tv did not accept the token")]
    Unauthorized,
    /// plex.tv answered, but not with what the protocol promises (bad JSON, XML, a redirect, odd status).
    #[error("unexpected answer from plex.tv: {0}")]
    UnexpectedResponse(String),
    /// Building the HTTP client failed (bad header value, TLS setup).
    #[error("cannot build the Plex client: {0}")]
    Client(String),
}

impl PlexError {
    /// Whether the user should be told "Plex is unavailable, try again" (as opposed to denied or
    /// asked to sign in again).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            PlexError::Unavailable(_)
                | PlexError::UnexpectedResponse(_)
                | PlexError::RateLimited { .. }
        )
    }

    /// The `outcome` metric label.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            PlexError::RateLimited { .. } => "rate_limited",
            PlexError::Unavailable(_) => "unavailable",
            PlexError::PinNotFound => "not_found",
            PlexError::Unauthorized => "unauthorized",
            PlexError::UnexpectedResponse(_) | PlexError::Client(_) => "unexpected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_trouble_counts_as_unavailable_but_a_rejected_token_does_not() {
        assert!(PlexError::Unavailable("x".into()).is_unavailable());
        assert!(PlexError::UnexpectedResponse("x".into()).is_unavailable());
        assert!(PlexError::RateLimited { retry_after: None }.is_unavailable());
        assert!(!PlexError::Unauthorized.is_unavailable());
        assert!(!PlexError::PinNotFound.is_unavailable());
        assert!(!PlexError::Client("x".into()).is_unavailable());
    }
}
