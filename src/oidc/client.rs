//! Registered relying parties and how they authenticate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

pub enum ClientSecret {
    /// SHA-256 of the secret: comparing digests in constant time leaks neither content nor length.
    Plain([u8; 32]),
    /// An argon2id PHC string. A secret that verified once is remembered by digest, because argon2 costs
    /// tens of milliseconds and the token endpoint must stay fast.
    Argon2 {
        phc: String,
        verified: Mutex<Option<[u8; 32]>>,
    },
    /// Public client (PKCE only, `token_endpoint_auth_method=none`).
    None,
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientSecret::Plain(_) => "ClientSecret::Plain(***)",
            ClientSecret::Argon2 { .. } => "ClientSecret::Argon2(***)",
            ClientSecret::None => "ClientSecret::None",
        })
    }
}

impl ClientSecret {
    pub fn plain(secret: &str) -> ClientSecret {
        ClientSecret::Plain(sha256(secret))
    }

    pub fn argon2(phc: String) -> ClientSecret {
        ClientSecret::Argon2 {
            phc,
            verified: Mutex::new(None),
        }
    }

    pub fn verify(&self, presented: &str) -> bool {
        let presented_digest = sha256(presented);
        match self {
            ClientSecret::Plain(expected) => expected.ct_eq(&presented_digest).into(),
            ClientSecret::Argon2 { phc, verified } => {
                let mut cached = verified.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(known) = cached.as_ref()
                    && bool::from(known.ct_eq(&presented_digest))
                {
                    return true;
                }
                let ok = verify_argon2(phc, presented);
                if ok {
                    *cached = Some(presented_digest);
                }
                ok
            }
            ClientSecret::None => false,
        }
    }
}

fn verify_argon2(phc: &str, presented: &str) -> bool {
    use argon2::PasswordVerifier as _;
    match argon2::PasswordHash::new(phc) {
        Ok(hash) => argon2::Argon2::default()
            .verify_password(presented.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

fn sha256(s: &str) -> [u8; 32] {
    let d = digest(&SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[derive(Debug)]
pub struct Client {
    pub id: String,
    pub name: Option<String>,
    pub secret: ClientSecret,
    pub redirect_uris: Vec<String>,
    pub require_pkce: bool,
    pub access_token_ttl: Duration,
    pub id_token_ttl: Duration,
    /// Issue refresh tokens even without `offline_access` (Grafana needs them to stay signed in).
    pub refresh_tokens: bool,
    /// Sliding: each rotation extends the family by this much.
    pub refresh_token_ttl: Duration,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        matches!(self.secret, ClientSecret::None)
    }

    /// Public clients cannot keep a secret, so PKCE is their only proof (RFC 9700 §2.1.1).
    pub fn pkce_required(&self) -> bool {
        self.require_pkce || self.is_public()
    }

    /// Exact string comparison, as RFC 9700 §4.1.3 requires.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Debug, Default)]
pub struct ClientRegistry {
    by_id: HashMap<String, Arc<Client>>,
}

impl ClientRegistry {
    pub fn new(clients: impl IntoIterator<Item = Client>) -> ClientRegistry {
        ClientRegistry {
            by_id: clients
                .into_iter()
                .map(|c| (c.id.clone(), Arc::new(c)))
                .collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Client>> {
        self.by_id.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_secret_verifies_only_itself() {
        let s = ClientSecret::plain("correct horse battery staple");
        assert!(s.verify("correct horse battery staple"));
        assert!(!s.verify("correct horse battery stapl"));
        assert!(!s.verify(""));
    }

    #[test]
    fn an_argon2_secret_verifies_and_is_remembered() {
        use argon2::PasswordHasher as _;
        let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let phc = argon2::Argon2::default()
            .hash_password(b"s3cret-s3cret-s3cret", &salt)
            .unwrap()
            .to_string();
        let s = ClientSecret::argon2(phc);
        assert!(!s.verify("wrong"));
        assert!(s.verify("s3cret-s3cret-s3cret"));
        assert!(s.verify("s3cret-s3cret-s3cret"));
        assert!(!s.verify("wrong"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = ClientSecret::plain("hunter2hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
