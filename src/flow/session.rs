//! The provider session: a sealed cookie, so sessions survive restarts and scale-to-zero without a
//! server-side table. The Plex token inside stays sealed; nothing outside this process can read it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::oidc::Identity;
use crate::plex::PlexToken;
use crate::seal::Sealer;

const SESSION_PURPOSE: &str = "session.v1";
const UPSTREAM_PURPOSE: &str = "upstream.v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub sid: String,
    pub identity: Identity,
    pub account: String,
    pub plex_token: PlexToken,
    pub auth_time: u64,
    pub expires_at: u64,
    /// Clients that received a code in this session (for back-channel logout).
    #[serde(default)]
    pub clients: Vec<String>,
}

#[derive(Clone)]
pub struct SessionCodec {
    sealer: Arc<Sealer>,
}

impl SessionCodec {
    pub fn new(sealer: Arc<Sealer>) -> SessionCodec {
        SessionCodec { sealer }
    }

    pub fn seal(&self, session: &Session) -> Option<String> {
        let json = serde_json::to_vec(session).ok()?;
        Some(self.sealer.seal(SESSION_PURPOSE, &json))
    }

    /// A session from a cookie value; anything tampered, foreign, garbled or expired is simply none.
    pub fn open(&self, cookie: &str, now: u64) -> Option<Session> {
        if cookie.len() > 8192 {
            return None;
        }
        let json = self.sealer.open(SESSION_PURPOSE, cookie)?;
        let session: Session = serde_json::from_slice(&json).ok()?;
        (session.expires_at > now).then_some(session)
    }

    /// The Plex token as an opaque, sealed string a grant can carry to re-check access at refresh time.
    pub fn seal_upstream(&self, token: &PlexToken) -> String {
        self.sealer
            .seal(UPSTREAM_PURPOSE, token.expose().as_bytes())
    }

    pub fn open_upstream(&self, sealed: &str) -> Option<PlexToken> {
        let bytes = self.sealer.open(UPSTREAM_PURPOSE, sealed)?;
        String::from_utf8(bytes).ok().map(PlexToken::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> SessionCodec {
        SessionCodec::new(Arc::new(Sealer::from_key([7; 32])))
    }

    fn session() -> Session {
        Session {
            sid: "s".into(),
            identity: Identity {
                subject: "1".into(),
                preferred_username: None,
                name: None,
                picture: None,
                email: None,
                email_verified: false,
                groups: vec![],
                extra_profile: Default::default(),
            },
            account: "alice".into(),
            plex_token: PlexToken::new("plex-token-value"),
            auth_time: 10,
            expires_at: 100,
            clients: vec![],
        }
    }

    #[test]
    fn a_sealed_session_opens_until_it_expires_and_hides_the_token() {
        let c = codec();
        let cookie = c.seal(&session()).unwrap();
        assert!(!cookie.contains("plex-token-value"));
        assert_eq!(c.open(&cookie, 50).unwrap().sid, "s");
        assert!(c.open(&cookie, 100).is_none());
    }

    #[test]
    fn garbage_and_foreign_cookies_are_no_session() {
        let c = codec();
        assert!(c.open("", 0).is_none());
        assert!(c.open("not a cookie", 0).is_none());
        let other = SessionCodec::new(Arc::new(Sealer::from_key([8; 32])));
        let cookie = other.seal(&session()).unwrap();
        assert!(c.open(&cookie, 0).is_none());
        let upstream = c.seal_upstream(&PlexToken::new("x"));
        assert!(
            c.open(&upstream, 0).is_none(),
            "a token sealed for another purpose is not a session"
        );
    }
}
