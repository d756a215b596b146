//! The provider: codes, tokens, userinfo. One instance per process, shared by all requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::authorize::redirect_with;
use super::discovery::{self, Endpoints};
use super::error::{AuthorizeError, ErrorCode, TokenError, UserinfoError};
use super::token::ClientCredentials;
use super::{AuthorizationRequest, Client, ClientRegistry, Identity, Params, Scopes};
use crate::clock::Clock;
use crate::keys::{KeySet, half_hash, pkce_s256};
use crate::random::Random;
use crate::seal::Sealer;

/// RFC 6749 §4.1.2 recommends at most ten minutes; one is plenty for a browser redirect.
const CODE_TTL_SECONDS: u64 = 60;
const ACCESS_TOKEN_PURPOSE: &str = "access_token.v1";

#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub issuer: String,
    /// Upper bound on codes held at once; the oldest are evicted first, so a flood cannot grow memory.
    pub code_capacity: usize,
    /// Claim names beyond the standard ones that identities may carry (listed in discovery).
    pub extra_claims: Vec<String>,
}

/// What a code stands for until it is redeemed.
#[derive(Debug)]
struct CodeEntry {
    grant_id: String,
    client_id: String,
    redirect_uri: String,
    scopes: Scopes,
    nonce: Option<String>,
    code_challenge: Option<String>,
    identity: Identity,
    auth_time: u64,
    expires_at: u64,
    redeemed: AtomicBool,
}

/// The sealed content of an access token: opaque to clients, verifiable without server state, so tokens
/// survive restarts and scale-to-zero.
#[derive(Serialize, Deserialize)]
struct AccessTokenBody {
    g: String,
    c: String,
    s: u8,
    e: u64,
    i: Identity,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub id_token: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    exp: u64,
    iat: u64,
    auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
    #[serde(flatten)]
    claims: Map<String, Value>,
}

pub struct Provider {
    issuer: String,
    registry: ClientRegistry,
    keys: Arc<KeySet>,
    sealer: Arc<Sealer>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    codes: Cache<String, Arc<CodeEntry>>,
    /// Grants revoked because their code was replayed (RFC 6749 §4.1.2), until their tokens expire.
    revoked_grants: Cache<String, u64>,
    discovery_json: String,
}

impl Provider {
    pub fn new(
        settings: ProviderSettings,
        registry: ClientRegistry,
        keys: Arc<KeySet>,
        sealer: Arc<Sealer>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Provider {
        let endpoints = Endpoints::for_issuer(&settings.issuer);
        let discovery_json =
            discovery::document(&settings.issuer, &endpoints, &settings.extra_claims).to_string();
        Provider {
            issuer: settings.issuer,
            registry,
            keys,
            sealer,
            clock,
            random,
            codes: Cache::new(settings.code_capacity.max(16)),
            revoked_grants: Cache::new(settings.code_capacity.max(16)),
            discovery_json,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn discovery_json(&self) -> &str {
        &self.discovery_json
    }

    pub fn jwks_json(&self) -> &str {
        self.keys.jwks_json()
    }

    pub fn client(&self, id: &str) -> Option<&Arc<Client>> {
        self.registry.get(id)
    }

    pub fn parse_authorization(
        &self,
        params: &Params,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        AuthorizationRequest::parse(&self.registry, params)
    }

    /// Mints a single-use code for `identity` and returns the URL that sends it to the client, with
    /// `state` and `iss` (RFC 9207).
    pub fn issue_code(
        &self,
        request: &AuthorizationRequest,
        identity: &Identity,
        auth_time: u64,
    ) -> String {
        let code = self.random.token(32);
        let entry = CodeEntry {
            grant_id: self.random.token(16),
            client_id: request.client.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            scopes: request.scopes,
            nonce: request.nonce.clone(),
            code_challenge: request.code_challenge.clone(),
            identity: identity.clone(),
            auth_time,
            expires_at: self.clock.unix_seconds() + CODE_TTL_SECONDS,
            redeemed: AtomicBool::new(false),
        };
        self.codes.insert(code.clone(), Arc::new(entry));
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = &request.state {
            params.push(("state", state));
        }
        params.push(("iss", &self.issuer));
        redirect_with(&request.redirect_uri, &params)
    }

    /// The URL that reports `code` to the client (RFC 6749 §4.1.2.1), with `iss` (RFC 9207).
    pub fn error_redirect(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        code: ErrorCode,
        description: &str,
    ) -> String {
        let mut params = vec![("error", code.as_str()), ("error_description", description)];
        if let Some(state) = state {
            params.push(("state", state));
        }
        params.push(("iss", &self.issuer));
        redirect_with(redirect_uri, &params)
    }

    /// Authenticates the client; a failure here never touches the code, so a client may retry the
    /// same code with another authentication method (golang/oauth2 does).
    pub fn authenticate(&self, credentials: &ClientCredentials) -> Result<Arc<Client>, TokenError> {
        let used_basic = credentials.method == super::token::AuthMethod::Basic;
        let invalid = |description: &str| TokenError::InvalidClient {
            description: description.to_owned(),
            used_basic,
        };
        let Some(client) = self.registry.get(&credentials.client_id) else {
            return Err(invalid("client authentication failed"));
        };
        match (&credentials.secret, client.is_public()) {
            (None, true) => Ok(client.clone()),
            (None, false) => Err(invalid("this client must authenticate with its secret")),
            (Some(_), true) => Err(invalid("public clients have no secret")),
            (Some(secret), false) => {
                if client.secret.verify(secret) {
                    Ok(client.clone())
                } else {
                    tracing::warn!(client_id = %client.id, "client authentication failed: wrong secret");
                    Err(invalid("client authentication failed"))
                }
            }
        }
    }

    /// The token endpoint (RFC 6749 §4.1.3, OIDC Core §3.1.3).
    pub fn token(
        &self,
        credentials: &ClientCredentials,
        form: &Params,
    ) -> Result<TokenResponse, TokenError> {
        let invalid_request = |e: super::ParamError| TokenError::InvalidRequest(e.to_string());
        form.check_unique(&[
            "grant_type",
            "code",
            "redirect_uri",
            "code_verifier",
            "client_id",
            "client_secret",
        ])
        .map_err(invalid_request)?;
        let grant_type = form
            .get("grant_type")
            .map_err(invalid_request)?
            .ok_or_else(|| TokenError::InvalidRequest("grant_type is missing".into()))?;
        if grant_type != "authorization_code" {
            return Err(TokenError::UnsupportedGrantType(format!(
                "grant_type \"{}\" is not supported",
                grant_type.chars().take(64).collect::<String>()
            )));
        }
        let client = self.authenticate(credentials)?;
        let code = form
            .get("code")
            .map_err(invalid_request)?
            .ok_or_else(|| TokenError::InvalidRequest("code is missing".into()))?;
        let now = self.clock.unix_seconds();
        let entry = match self.codes.get(code) {
            Some(entry) if entry.expires_at > now => entry,
            _ => return Err(TokenError::InvalidGrant("the code is invalid or expired".into())),
        };
        if entry.client_id != client.id {
            return Err(TokenError::InvalidGrant(
                "the code was issued to another client".into(),
            ));
        }
        match form.get("redirect_uri").map_err(invalid_request)? {
            Some(uri) if uri == entry.redirect_uri => {}
            Some(_) => {
                return Err(TokenError::InvalidGrant(
                    "redirect_uri does not match the authorization request".into(),
                ));
            }
            None if client.redirect_uris.len() == 1 => {}
            None => return Err(TokenError::InvalidRequest("redirect_uri is missing".into())),
        }
        let verifier = form.get("code_verifier").map_err(invalid_request)?;
        match (&entry.code_challenge, verifier) {
            (Some(challenge), Some(verifier)) => {
                if !is_valid_verifier(verifier) {
                    return Err(TokenError::InvalidRequest(
                        "code_verifier must be 43 to 128 unreserved characters".into(),
                    ));
                }
                if !bool::from(pkce_s256(verifier).as_bytes().ct_eq(challenge.as_bytes())) {
                    tracing::warn!(client_id = %client.id, "PKCE verification failed; may indicate an intercepted code");
                    return Err(TokenError::InvalidGrant("PKCE verification failed".into()));
                }
            }
            (Some(_), None) => {
                return Err(TokenError::InvalidGrant("code_verifier is missing".into()));
            }
            // RFC 9700 §4.8.2: a verifier without a challenge is a PKCE downgrade attempt.
            (None, Some(_)) => {
                return Err(TokenError::InvalidGrant(
                    "code_verifier given, but the authorization request had no code_challenge"
                        .into(),
                ));
            }
            (None, None) => {}
        }
        if entry.redeemed.swap(true, Ordering::AcqRel) {
            let until = now + client.access_token_ttl.as_secs().max(CODE_TTL_SECONDS);
            self.revoked_grants.insert(entry.grant_id.clone(), until);
            tracing::warn!(client_id = %client.id, "authorization code replayed; its tokens are revoked");
            return Err(TokenError::InvalidGrant("the code was already used".into()));
        }
        self.mint(&client, &entry.grant_id, entry.scopes, &entry.identity, entry.auth_time, entry.nonce.as_deref(), now)
    }

    #[allow(clippy::too_many_arguments)]
    fn mint(
        &self,
        client: &Client,
        grant_id: &str,
        scopes: Scopes,
        identity: &Identity,
        auth_time: u64,
        nonce: Option<&str>,
        now: u64,
    ) -> Result<TokenResponse, TokenError> {
        let access_ttl = client.access_token_ttl.as_secs();
        let body = AccessTokenBody {
            g: grant_id.to_owned(),
            c: client.id.clone(),
            s: scopes.to_bits(),
            e: now + access_ttl,
            i: identity.clone(),
        };
        let plaintext = serde_json::to_vec(&body).map_err(|e| TokenError::Server(e.to_string()))?;
        let access_token = self.sealer.seal(ACCESS_TOKEN_PURPOSE, &plaintext);
        let mut claims = Map::new();
        identity.scoped_claims(scopes, &mut claims);
        let id_claims = IdTokenClaims {
            iss: &self.issuer,
            sub: &identity.subject,
            aud: &client.id,
            azp: &client.id,
            exp: now + client.id_token_ttl.as_secs(),
            iat: now,
            auth_time,
            nonce,
            at_hash: half_hash(&access_token),
            claims,
        };
        let id_token = self
            .keys
            .signer()
            .sign_jwt(&id_claims)
            .map_err(|e| TokenError::Server(e.to_string()))?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: access_ttl,
            id_token,
            scope: scopes.to_string(),
            refresh_token: None,
        })
    }

    /// Userinfo (OIDC Core §5.3): the same claims as the ID token, for the token's scopes.
    pub fn userinfo(&self, access_token: &str) -> Result<Map<String, Value>, UserinfoError> {
        let invalid = || UserinfoError::InvalidToken("the access token is invalid or expired".into());
        let plaintext = self
            .sealer
            .open(ACCESS_TOKEN_PURPOSE, access_token)
            .ok_or_else(invalid)?;
        let body: AccessTokenBody = serde_json::from_slice(&plaintext).map_err(|_| invalid())?;
        if body.e <= self.clock.unix_seconds() || self.revoked_grants.get(&body.g).is_some() {
            return Err(invalid());
        }
        if self.registry.get(&body.c).is_none() {
            return Err(invalid());
        }
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(body.i.subject.clone()));
        body.i.scoped_claims(Scopes::from_bits(body.s), &mut claims);
        Ok(claims)
    }

    /// The lifetime a client's access tokens get; exposed for callers that report it.
    pub fn access_token_ttl(&self, client_id: &str) -> Option<Duration> {
        self.registry.get(client_id).map(|c| c.access_token_ttl)
    }
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn is_valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}
