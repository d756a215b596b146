//! The provider: codes, tokens, refresh, revocation, introspection, userinfo. One instance per process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use super::authorize::redirect_with;
use super::discovery::{self, Endpoints};
use super::error::{AuthorizeError, ErrorCode, TokenError, UserinfoError};
use super::token::{AuthMethod, ClientCredentials};
use super::{AuthorizationRequest, Client, ClientRegistry, Identity, Params, Scopes};
use crate::clock::Clock;
use crate::keys::{KeySet, half_hash, pkce_s256};
use crate::random::Random;
use crate::seal::Sealer;
use crate::store::{Family, Rotation, Store};

/// RFC 6749 §4.1.2 recommends at most ten minutes; one is plenty for a browser redirect.
const CODE_TTL_SECONDS: u64 = 60;
const ACCESS_TOKEN_PURPOSE: &str = "access_token.v1";
const REFRESH_TOKEN_PURPOSE: &str = "refresh_token.v1";
/// Logout tokens are short-lived (OIDC Back-Channel Logout §2.4 recommends at most two minutes).
const LOGOUT_TOKEN_TTL_SECONDS: u64 = 120;
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub issuer: String,
    /// Upper bound on codes held at once; the oldest are evicted first, so a flood cannot grow memory.
    pub code_capacity: usize,
    /// Claim names beyond the standard ones that identities may carry (listed in discovery).
    pub extra_claims: Vec<String>,
}

/// What the login flow attaches to a grant beyond the identity: the provider session it belongs to and
/// an opaque upstream credential the flow needs to re-check access at refresh time.
#[derive(Debug, Clone, Default)]
pub struct GrantContext {
    pub session_id: Option<String>,
    pub upstream: Option<String>,
}

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
    context: GrantContext,
    expires_at: u64,
    redeemed: AtomicBool,
}

impl CodeEntry {
    fn redeemed_marker(&self) -> CodeEntry {
        CodeEntry {
            grant_id: self.grant_id.clone(),
            client_id: self.client_id.clone(),
            redirect_uri: String::new(),
            scopes: self.scopes,
            nonce: None,
            code_challenge: None,
            identity: Identity::default(),
            auth_time: self.auth_time,
            context: GrantContext::default(),
            expires_at: self.expires_at,
            redeemed: AtomicBool::new(true),
        }
    }
}

/// The sealed content of an access token: opaque to clients, verifiable without server state, so tokens
/// survive restarts and scale-to-zero.
#[derive(Serialize, Deserialize)]
struct AccessTokenBody {
    g: String,
    c: String,
    s: u8,
    e: u64,
    #[serde(default)]
    t: u64,
    i: Identity,
}

/// The sealed content of a refresh token: which family, which generation.
#[derive(Serialize, Deserialize)]
struct RefreshTokenBody {
    f: String,
    n: u64,
}

/// What a family keeps (stored by [`Store`] as an opaque payload).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshPayload {
    pub identity: Identity,
    pub scopes: u8,
    pub auth_time: u64,
    pub grant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// A refresh request that passed every protocol check; the flow re-checks access before completing it.
#[derive(Debug)]
pub struct RefreshGrant {
    pub client: Arc<Client>,
    pub family: Family,
    pub payload: RefreshPayload,
    pub scopes: Scopes,
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
    /// For the audit log, never sent.
    #[serde(skip)]
    pub subject: String,
    #[serde(skip)]
    pub username: Option<String>,
}

/// The parts of a verified `id_token_hint` logout needs.
#[derive(Debug, Clone)]
pub struct IdTokenHint {
    pub client_id: String,
    pub subject: String,
    pub session_id: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    at_hash: String,
    #[serde(flatten)]
    claims: Map<String, Value>,
}

struct Mint<'a> {
    client: &'a Client,
    grant_id: &'a str,
    scopes: Scopes,
    identity: &'a Identity,
    auth_time: u64,
    nonce: Option<&'a str>,
    context: &'a GrantContext,
}

pub struct Provider {
    issuer: String,
    endpoints: Endpoints,
    registry: ClientRegistry,
    keys: Arc<KeySet>,
    sealer: Arc<Sealer>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    codes: Arc<Cache<String, Arc<CodeEntry>>>,
    discovery_json: String,
}

impl Provider {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: ProviderSettings,
        registry: ClientRegistry,
        keys: Arc<KeySet>,
        sealer: Arc<Sealer>,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Provider {
        let endpoints = Endpoints::for_issuer(&settings.issuer);
        let discovery_json =
            discovery::document(&settings.issuer, &endpoints, &settings.extra_claims).to_string();
        Provider {
            issuer: settings.issuer,
            endpoints,
            registry,
            keys,
            sealer,
            store,
            clock,
            random,
            codes: Arc::new(Cache::new(settings.code_capacity.max(16))),
            discovery_json,
        }
    }

    /// Keeps the codes already issued by `previous` redeemable (config reload).
    pub fn adopt_state_of(mut self, previous: &Provider) -> Provider {
        self.codes = previous.codes.clone();
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
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

    pub fn store(&self) -> &Store {
        &self.store
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
        context: GrantContext,
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
            context,
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
        let used_basic = credentials.method == AuthMethod::Basic;
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

    fn authenticate_confidential(
        &self,
        credentials: &ClientCredentials,
    ) -> Result<Arc<Client>, TokenError> {
        let client = self.authenticate(credentials)?;
        if client.is_public() {
            return Err(TokenError::UnauthorizedClient(
                "only confidential clients may use this endpoint".into(),
            ));
        }
        Ok(client)
    }

    /// The `authorization_code` grant (RFC 6749 §4.1.3, OIDC Core §3.1.3).
    pub fn exchange_code(
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
        let client = self.authenticate(credentials)?;
        let code = form
            .get("code")
            .map_err(invalid_request)?
            .ok_or_else(|| TokenError::InvalidRequest("code is missing".into()))?;
        let now = self.clock.unix_seconds();
        let entry = match self.codes.get(code) {
            Some(entry) if entry.expires_at > now => entry,
            _ => {
                return Err(TokenError::InvalidGrant(
                    "the code is invalid or expired".into(),
                ));
            }
        };
        if entry.client_id != client.id {
            return Err(TokenError::InvalidGrant(
                "the code was issued to another client".into(),
            ));
        }
        // A used code is refused (and its grant revoked) before anything else is compared, so the
        // marker left behind needs nothing but the grant id.
        if entry.redeemed.load(Ordering::Acquire) {
            return Err(self.replayed(&entry.grant_id, &client, now));
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
        // Two redemptions racing past the check above: only one wins the swap.
        if entry.redeemed.swap(true, Ordering::AcqRel) {
            return Err(self.replayed(&entry.grant_id, &client, now));
        }
        // Until it expires, a redeemed code only needs to recognise a replay: keep that, drop the rest.
        self.codes
            .insert(code.to_owned(), Arc::new(entry.redeemed_marker()));
        let mut response = self.mint(
            &Mint {
                client: &client,
                grant_id: &entry.grant_id,
                scopes: entry.scopes,
                identity: &entry.identity,
                auth_time: entry.auth_time,
                nonce: entry.nonce.as_deref(),
                context: &entry.context,
            },
            now,
        )?;
        if entry.scopes.offline_access || client.refresh_tokens {
            let family = Family {
                id: self.random.token(16),
                client_id: client.id.clone(),
                session_id: entry.context.session_id.clone(),
                generation: 0,
                expires_at: now + client.refresh_token_ttl.as_secs(),
                payload: serde_json::to_string(&RefreshPayload {
                    identity: entry.identity.clone(),
                    scopes: entry.scopes.to_bits(),
                    auth_time: entry.auth_time,
                    grant_id: entry.grant_id.clone(),
                    upstream: entry.context.upstream.clone(),
                })
                .map_err(|e| TokenError::Server(e.to_string()))?,
            };
            let token = self.refresh_token(&family.id, 0)?;
            self.store
                .put(family)
                .map_err(|e| TokenError::Server(e.to_string()))?;
            response.refresh_token = Some(token);
        }
        Ok(response)
    }

    /// RFC 6749 §4.1.2: a code used twice is refused and the tokens issued from it are revoked.
    fn replayed(&self, grant_id: &str, client: &Client, now: u64) -> TokenError {
        self.revoke_grant(grant_id, client, now);
        tracing::warn!(client_id = %client.id, "authorization code replayed; its tokens are revoked");
        TokenError::InvalidGrant("the code was already used".into())
    }

    fn refresh_token(&self, family: &str, generation: u64) -> Result<String, TokenError> {
        let body = serde_json::to_vec(&RefreshTokenBody {
            f: family.to_owned(),
            n: generation,
        })
        .map_err(|e| TokenError::Server(e.to_string()))?;
        Ok(self.sealer.seal(REFRESH_TOKEN_PURPOSE, &body))
    }

    fn open_refresh_token(&self, token: &str) -> Option<RefreshTokenBody> {
        let plain = self.sealer.open(REFRESH_TOKEN_PURPOSE, token)?;
        serde_json::from_slice(&plain).ok()
    }

    /// First half of the `refresh_token` grant (RFC 6749 §6): every protocol check, but no rotation yet,
    /// so the caller can re-check the user's access before anything is issued.
    pub fn begin_refresh(
        &self,
        credentials: &ClientCredentials,
        form: &Params,
    ) -> Result<RefreshGrant, TokenError> {
        let invalid_request = |e: super::ParamError| TokenError::InvalidRequest(e.to_string());
        form.check_unique(&[
            "grant_type",
            "refresh_token",
            "scope",
            "client_id",
            "client_secret",
        ])
        .map_err(invalid_request)?;
        let client = self.authenticate(credentials)?;
        let token = form
            .get("refresh_token")
            .map_err(invalid_request)?
            .ok_or_else(|| TokenError::InvalidRequest("refresh_token is missing".into()))?;
        let invalid = || TokenError::InvalidGrant("the refresh token is invalid or expired".into());
        let body = self.open_refresh_token(token).ok_or_else(invalid)?;
        let family = self.store.get(&body.f).ok_or_else(invalid)?;
        let now = self.clock.unix_seconds();
        if family.client_id != client.id {
            return Err(TokenError::InvalidGrant(
                "the refresh token was issued to another client".into(),
            ));
        }
        if family.expires_at <= now {
            return Err(invalid());
        }
        let payload: RefreshPayload =
            serde_json::from_str(&family.payload).map_err(|_| invalid())?;
        if body.n != family.generation {
            self.end_family(&family, &payload, &client);
            tracing::warn!(client_id = %client.id, "a rotated refresh token was reused; the whole grant is revoked");
            return Err(TokenError::InvalidGrant(
                "the refresh token was already used; all tokens of this grant are revoked".into(),
            ));
        }
        let granted = Scopes::from_bits(payload.scopes);
        let scopes = match form.get("scope").map_err(invalid_request)? {
            None => granted,
            Some(asked) => {
                let asked = Scopes::parse(asked);
                if asked.intersect(granted) != asked {
                    return Err(TokenError::InvalidScope(
                        "a refresh cannot widen the scopes of the grant".into(),
                    ));
                }
                asked
            }
        };
        Ok(RefreshGrant {
            client,
            family,
            payload,
            scopes,
        })
    }

    /// Second half: rotates the refresh token and issues fresh tokens with the re-checked `identity`.
    pub fn complete_refresh(
        &self,
        grant: RefreshGrant,
        identity: &Identity,
    ) -> Result<TokenResponse, TokenError> {
        let now = self.clock.unix_seconds();
        let expires_at = now + grant.client.refresh_token_ttl.as_secs();
        let rotated = self
            .store
            .rotate(&grant.family.id, grant.family.generation, expires_at)
            .map_err(|e| TokenError::Server(e.to_string()))?;
        let family = match rotated {
            Rotation::Rotated(f) => f,
            Rotation::Reused(f) => {
                self.end_family(&f, &grant.payload, &grant.client);
                return Err(TokenError::InvalidGrant(
                    "the refresh token was already used; all tokens of this grant are revoked"
                        .into(),
                ));
            }
            Rotation::Unknown => {
                return Err(TokenError::InvalidGrant(
                    "the refresh token is invalid or expired".into(),
                ));
            }
        };
        let context = GrantContext {
            session_id: family.session_id.clone(),
            upstream: grant.payload.upstream.clone(),
        };
        let mut response = self.mint(
            &Mint {
                client: &grant.client,
                grant_id: &grant.payload.grant_id,
                scopes: grant.scopes,
                identity,
                auth_time: grant.payload.auth_time,
                nonce: None,
                context: &context,
            },
            now,
        )?;
        response.refresh_token = Some(self.refresh_token(&family.id, family.generation)?);
        Ok(response)
    }

    /// Ends a refresh grant whose user lost access: the family and its access tokens are revoked.
    pub fn revoke_refresh(&self, grant: &RefreshGrant) {
        self.end_family(&grant.family, &grant.payload, &grant.client);
    }

    fn end_family(&self, family: &Family, payload: &RefreshPayload, client: &Client) {
        if let Err(e) = self.store.remove(&family.id) {
            tracing::error!(error = %e, "cannot remove a refresh-token family");
        }
        self.revoke_grant(&payload.grant_id, client, self.clock.unix_seconds());
    }

    fn revoke_grant(&self, grant_id: &str, client: &Client, now: u64) {
        let until = now + client.access_token_ttl.as_secs().max(CODE_TTL_SECONDS);
        if let Err(e) = self.store.revoke_grant(grant_id, until) {
            tracing::error!(error = %e, "cannot persist a grant revocation");
        }
    }

    /// Ends every refresh grant of a provider session; returns the clients that took part.
    pub fn end_session_grants(&self, session_id: &str) -> Vec<String> {
        let families = match self.store.remove_session(session_id) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot remove a session's refresh tokens");
                return Vec::new();
            }
        };
        let now = self.clock.unix_seconds();
        let mut clients = Vec::new();
        for family in families {
            if let (Some(client), Ok(payload)) = (
                self.registry.get(&family.client_id),
                serde_json::from_str::<RefreshPayload>(&family.payload),
            ) {
                self.revoke_grant(&payload.grant_id, client, now);
            }
            clients.push(family.client_id);
        }
        clients
    }

    fn mint(&self, m: &Mint<'_>, now: u64) -> Result<TokenResponse, TokenError> {
        let access_ttl = m.client.access_token_ttl.as_secs();
        let body = AccessTokenBody {
            g: m.grant_id.to_owned(),
            c: m.client.id.clone(),
            s: m.scopes.to_bits(),
            e: now + access_ttl,
            t: now,
            i: m.identity.clone(),
        };
        let plaintext = serde_json::to_vec(&body).map_err(|e| TokenError::Server(e.to_string()))?;
        let access_token = self.sealer.seal(ACCESS_TOKEN_PURPOSE, &plaintext);
        let mut claims = Map::new();
        m.identity.scoped_claims(m.scopes, &mut claims);
        let id_claims = IdTokenClaims {
            iss: &self.issuer,
            sub: &m.identity.subject,
            aud: &m.client.id,
            azp: &m.client.id,
            exp: now + m.client.id_token_ttl.as_secs(),
            iat: now,
            auth_time: m.auth_time,
            nonce: m.nonce,
            sid: m.context.session_id.as_deref(),
            at_hash: half_hash(&access_token),
            claims,
        };
        let id_token = self
            .keys
            .signer_at(now)
            .sign_jwt(&id_claims)
            .map_err(|e| TokenError::Server(e.to_string()))?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: access_ttl,
            id_token,
            scope: m.scopes.to_string(),
            refresh_token: None,
            subject: m.identity.subject.clone(),
            username: m.identity.preferred_username.clone(),
        })
    }

    fn open_access_token(&self, token: &str) -> Option<AccessTokenBody> {
        let plaintext = self.sealer.open(ACCESS_TOKEN_PURPOSE, token)?;
        let body: AccessTokenBody = serde_json::from_slice(&plaintext).ok()?;
        let now = self.clock.unix_seconds();
        (body.e > now && !self.store.is_grant_revoked(&body.g, now)).then_some(body)
    }

    /// Userinfo (OIDC Core §5.3): the same claims as the ID token, for the token's scopes.
    pub fn userinfo(&self, access_token: &str) -> Result<Map<String, Value>, UserinfoError> {
        let invalid =
            || UserinfoError::InvalidToken("the access token is invalid or expired".into());
        let body = self.open_access_token(access_token).ok_or_else(invalid)?;
        if self.registry.get(&body.c).is_none() {
            return Err(invalid());
        }
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(body.i.subject.clone()));
        body.i.scoped_claims(Scopes::from_bits(body.s), &mut claims);
        Ok(claims)
    }

    /// RFC 7009. Unknown, foreign and already-invalid tokens are answered like valid ones (§2.2).
    pub fn revoke(&self, credentials: &ClientCredentials, form: &Params) -> Result<(), TokenError> {
        let client = self.authenticate_confidential(credentials)?;
        let token = form
            .get("token")
            .map_err(|e| TokenError::InvalidRequest(e.to_string()))?
            .ok_or_else(|| TokenError::InvalidRequest("token is missing".into()))?;
        if let Some(body) = self.open_refresh_token(token)
            && let Some(family) = self.store.get(&body.f)
            && family.client_id == client.id
            && let Ok(payload) = serde_json::from_str::<RefreshPayload>(&family.payload)
        {
            self.end_family(&family, &payload, &client);
        } else if let Some(body) = self.open_access_token(token)
            && body.c == client.id
        {
            self.revoke_grant(&body.g, &client, self.clock.unix_seconds());
        }
        Ok(())
    }

    /// RFC 7662, for the calling client's own tokens; everything else is `{"active": false}`.
    pub fn introspect(
        &self,
        credentials: &ClientCredentials,
        form: &Params,
    ) -> Result<Value, TokenError> {
        let client = self.authenticate_confidential(credentials)?;
        let token = form
            .get("token")
            .map_err(|e| TokenError::InvalidRequest(e.to_string()))?
            .ok_or_else(|| TokenError::InvalidRequest("token is missing".into()))?;
        let now = self.clock.unix_seconds();
        if let Some(body) = self.open_access_token(token)
            && body.c == client.id
        {
            return Ok(json!({
                "active": true,
                "token_type": "Bearer",
                "scope": Scopes::from_bits(body.s).to_string(),
                "client_id": body.c,
                "sub": body.i.subject,
                "username": body.i.preferred_username,
                "exp": body.e,
                "iat": body.t,
                "iss": self.issuer,
                "aud": body.c,
            }));
        }
        if let Some(body) = self.open_refresh_token(token)
            && let Some(family) = self.store.get(&body.f)
            && family.client_id == client.id
            && family.generation == body.n
            && family.expires_at > now
            && let Ok(payload) = serde_json::from_str::<RefreshPayload>(&family.payload)
        {
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": Scopes::from_bits(payload.scopes).to_string(),
                "client_id": family.client_id,
                "sub": payload.identity.subject,
                "exp": family.expires_at,
                "iss": self.issuer,
            }));
        }
        Ok(json!({ "active": false }))
    }

    /// Verifies an `id_token_hint` we issued (RP-Initiated Logout §2); an expired one is still a hint.
    pub fn verify_id_token_hint(&self, token: &str) -> Option<IdTokenHint> {
        let claims = self.keys.verify_jwt(token).ok()?;
        if claims.get("iss")?.as_str()? != self.issuer {
            return None;
        }
        Some(IdTokenHint {
            client_id: claims.get("aud")?.as_str()?.to_owned(),
            subject: claims.get("sub")?.as_str()?.to_owned(),
            session_id: claims.get("sid").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// A signed logout token (OIDC Back-Channel Logout 1.0 §2.4).
    pub fn logout_token(
        &self,
        client_id: &str,
        subject: &str,
        session_id: Option<&str>,
    ) -> Result<String, TokenError> {
        let now = self.clock.unix_seconds();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL_SECONDS,
            "jti": self.random.token(16),
            "sub": subject,
            "events": { BACKCHANNEL_EVENT: {} },
        });
        if let Some(sid) = session_id {
            claims["sid"] = json!(sid);
        }
        self.keys
            .signer_at(now)
            .sign_jwt(&claims)
            .map_err(|e| TokenError::Server(e.to_string()))
    }

    /// Whether `uri` is registered for `client_id` as a post-logout redirect (exact match).
    pub fn post_logout_redirect_allowed(&self, client_id: &str, uri: &str) -> bool {
        self.registry
            .get(client_id)
            .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri))
    }
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn is_valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}
