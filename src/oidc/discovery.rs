//! The discovery document (OIDC Discovery 1.0 §3), built once at start.

use serde_json::{Value, json};

use super::Scopes;

/// Endpoint URLs, derived from the issuer exactly as configured (only a trailing slash is dropped when
/// joining, so `https://a.example/` does not produce `https://a.example//token`).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub userinfo: String,
    pub jwks: String,
    pub end_session: String,
    pub revocation: String,
    pub introspection: String,
}

impl Endpoints {
    pub fn for_issuer(issuer: &str) -> Endpoints {
        let base = issuer.trim_end_matches('/');
        Endpoints {
            authorization: format!("{base}/authorize"),
            token: format!("{base}/token"),
            userinfo: format!("{base}/userinfo"),
            jwks: format!("{base}/jwks"),
            end_session: format!("{base}/logout"),
            revocation: format!("{base}/revoke"),
            introspection: format!("{base}/introspect"),
        }
    }
}

/// `extra_claims` are the identity source's own claim names (released with `profile`).
pub fn document(issuer: &str, endpoints: &Endpoints, extra_claims: &[String]) -> Value {
    let mut claims: Vec<Value> = STANDARD_CLAIMS.iter().map(|c| Value::from(*c)).collect();
    claims.extend(extra_claims.iter().map(|c| Value::from(c.as_str())));
    json!({
        "issuer": issuer,
        "authorization_endpoint": endpoints.authorization,
        "token_endpoint": endpoints.token,
        "userinfo_endpoint": endpoints.userinfo,
        "jwks_uri": endpoints.jwks,
        "end_session_endpoint": endpoints.end_session,
        "revocation_endpoint": endpoints.revocation,
        "introspection_endpoint": endpoints.introspection,
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": Scopes::SUPPORTED,
        "claims_supported": claims,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    })
}

const STANDARD_CLAIMS: [&str; 15] = [
    "sub",
    "iss",
    "aud",
    "azp",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "preferred_username",
    "name",
    "picture",
    "email",
    "email_verified",
    "groups",
];
