//! Authorization requests (RFC 6749 §4.1.1, OIDC Core §3.1.2.1): validation and the redirect back.

use std::sync::Arc;

use super::error::{AuthorizeError, ErrorCode};
use super::{Client, ClientRegistry, Params, Scopes};

const KNOWN: [&str; 13] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "request",
    "request_uri",
];

/// OIDC Core §3.1.2.1 `prompt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Prompt {
    #[default]
    Default,
    /// Never show a page: answer from the existing session or fail with `login_required`.
    None,
    /// Always show the page, even with a valid session.
    Login,
}

/// A request that passed validation: the redirect URI is registered, so errors from here on go back to it.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client: Arc<Client>,
    pub redirect_uri: String,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<u64>,
}

impl AuthorizationRequest {
    pub fn parse(
        registry: &ClientRegistry,
        params: &Params,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let page = |e: super::ParamError| AuthorizeError::MalformedRequest(e.to_string());
        let client_id = params
            .get("client_id")
            .map_err(page)?
            .ok_or(AuthorizeError::MissingClientId)?;
        let client = registry
            .get(client_id)
            .ok_or_else(|| AuthorizeError::UnknownClient(client_id.to_owned()))?
            .clone();
        let redirect_uri = match params.get("redirect_uri").map_err(page)? {
            Some(uri) if client.has_redirect_uri(uri) => uri.to_owned(),
            Some(uri) => {
                return Err(AuthorizeError::UnregisteredRedirectUri {
                    client_id: client.id.clone(),
                    redirect_uri: uri.to_owned(),
                });
            }
            // RFC 6749 §3.1.2.3: optional when exactly one URI is registered.
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => return Err(AuthorizeError::MissingRedirectUri(client.id.clone())),
        };
        // The state is echoed in every error from here on, so read it before anything else can fail.
        let state = params.get("state").ok().flatten().map(str::to_owned);
        let fail = |code: ErrorCode, description: String| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            code,
            description,
        };
        if let Err(e) = params.check_unique(&KNOWN) {
            return Err(fail(ErrorCode::InvalidRequest, e.to_string()));
        }
        let get = |name: &str| params.get(name).ok().flatten();

        if get("request").is_some() {
            return Err(fail(
                ErrorCode::RequestNotSupported,
                "request objects are not supported".into(),
            ));
        }
        if get("request_uri").is_some() {
            return Err(fail(
                ErrorCode::RequestUriNotSupported,
                "request_uri is not supported".into(),
            ));
        }
        match get("response_type") {
            Some("code") => {}
            Some(other) => {
                return Err(fail(
                    ErrorCode::UnsupportedResponseType,
                    format!(
                        "response_type \"{}\" is not supported; use \"code\"",
                        clip(other)
                    ),
                ));
            }
            None => {
                return Err(fail(
                    ErrorCode::InvalidRequest,
                    "response_type is missing".into(),
                ));
            }
        }
        match get("response_mode") {
            None | Some("query") => {}
            Some(other) => {
                return Err(fail(
                    ErrorCode::InvalidRequest,
                    format!(
                        "response_mode \"{}\" is not supported; use \"query\"",
                        clip(other)
                    ),
                ));
            }
        }
        let scopes = Scopes::parse(get("scope").unwrap_or(""));
        if !scopes.openid {
            return Err(fail(
                ErrorCode::InvalidScope,
                "scope must include \"openid\"".into(),
            ));
        }
        let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
            (Some(challenge), Some("S256")) => {
                if !is_s256_challenge(challenge) {
                    return Err(fail(
                        ErrorCode::InvalidRequest,
                        "code_challenge must be 43 base64url characters (S256)".into(),
                    ));
                }
                Some(challenge.to_owned())
            }
            // RFC 7636 §4.3: an absent method means "plain", which we never accept.
            (Some(_), method) => {
                return Err(fail(
                    ErrorCode::InvalidRequest,
                    format!(
                        "code_challenge_method \"{}\" is not supported; use \"S256\"",
                        clip(method.unwrap_or("plain"))
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(fail(
                    ErrorCode::InvalidRequest,
                    "code_challenge_method without code_challenge".into(),
                ));
            }
            (None, None) => None,
        };
        if code_challenge.is_none() && client.pkce_required() {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "this client must use PKCE (code_challenge with S256)".into(),
            ));
        }
        let prompt = parse_prompt(get("prompt")).map_err(|d| fail(ErrorCode::InvalidRequest, d))?;
        let max_age = match get("max_age") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                fail(
                    ErrorCode::InvalidRequest,
                    "max_age must be a non-negative integer".into(),
                )
            })?),
        };
        Ok(AuthorizationRequest {
            client,
            redirect_uri: redirect_uri.clone(),
            scopes,
            state: state.clone(),
            nonce: get("nonce").map(str::to_owned),
            code_challenge,
            prompt,
            max_age,
        })
    }
}

fn parse_prompt(value: Option<&str>) -> Result<Prompt, String> {
    let Some(value) = value else {
        return Ok(Prompt::Default);
    };
    let words: Vec<&str> = value.split(' ').filter(|w| !w.is_empty()).collect();
    if words.contains(&"none") {
        if words.len() > 1 {
            return Err("prompt \"none\" cannot be combined with other values".into());
        }
        return Ok(Prompt::None);
    }
    if words.contains(&"login") {
        return Ok(Prompt::Login);
    }
    // consent and select_account need no page of their own: the Plex page is both.
    Ok(Prompt::Default)
}

fn is_s256_challenge(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Keeps user-supplied text in error descriptions short.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// `redirect_uri` with `params` appended to its query, built on the registered string itself so the
/// client gets back exactly the URI it registered.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(redirect_uri.len() + 128);
    out.push_str(redirect_uri);
    let mut sep = if redirect_uri.contains('?') { '&' } else { '?' };
    if redirect_uri.ends_with('?') || redirect_uri.ends_with('&') {
        sep = '\0';
    }
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    if sep != '\0' {
        out.push(sep);
    }
    out.push_str(&encoded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::ClientSecret;
    use std::time::Duration;

    fn registry() -> ClientRegistry {
        ClientRegistry::new([
            Client {
                id: "grafana".into(),
                name: None,
                secret: ClientSecret::plain("s"),
                redirect_uris: vec![
                    "https://g.example/cb".into(),
                    "https://g.example/cb2?x=1".into(),
                ],
                require_pkce: false,
                access_token_ttl: Duration::from_secs(3600),
                id_token_ttl: Duration::from_secs(3600),
                refresh_tokens: false,
                refresh_token_ttl: Duration::from_secs(86400),
                post_logout_redirect_uris: vec![],
                backchannel_logout_uri: None,
            },
            Client {
                id: "mobile".into(),
                name: None,
                secret: ClientSecret::None,
                redirect_uris: vec!["app.immich:///oauth-callback".into()],
                require_pkce: false,
                access_token_ttl: Duration::from_secs(3600),
                id_token_ttl: Duration::from_secs(3600),
                refresh_tokens: false,
                refresh_token_ttl: Duration::from_secs(86400),
                post_logout_redirect_uris: vec![],
                backchannel_logout_uri: None,
            },
        ])
    }

    fn parse(q: &str) -> Result<AuthorizationRequest, AuthorizeError> {
        AuthorizationRequest::parse(&registry(), &Params::from_urlencoded(q.as_bytes()).unwrap())
    }

    const OK: &str = "client_id=grafana&redirect_uri=https%3A%2F%2Fg.example%2Fcb&response_type=code&scope=openid+email&state=xyz";

    #[test]
    fn a_well_formed_request_is_accepted() {
        let r = parse(OK).unwrap();
        assert_eq!(r.redirect_uri, "https://g.example/cb");
        assert!(r.scopes.email);
        assert_eq!(r.state.as_deref(), Some("xyz"));
    }

    #[test]
    fn unknown_clients_and_unregistered_uris_are_never_redirected_to() {
        assert!(matches!(
            parse(
                "client_id=nope&redirect_uri=https%3A%2F%2Fevil.example&response_type=code&scope=openid"
            ),
            Err(AuthorizeError::UnknownClient(_))
        ));
        assert!(matches!(
            parse(
                "client_id=grafana&redirect_uri=https%3A%2F%2Fevil.example&response_type=code&scope=openid"
            ),
            Err(AuthorizeError::UnregisteredRedirectUri { .. })
        ));
        assert!(matches!(
            parse("client_id=grafana&response_type=code&scope=openid"),
            Err(AuthorizeError::MissingRedirectUri(_))
        ));
    }

    #[test]
    fn protocol_errors_go_back_with_the_state() {
        let Err(AuthorizeError::Redirect { code, state, .. }) =
            parse(&OK.replace("scope=openid+email", "scope=email"))
        else {
            panic!("expected a redirect error");
        };
        assert_eq!(code, ErrorCode::InvalidScope);
        assert_eq!(state.as_deref(), Some("xyz"));
    }

    #[test]
    fn plain_pkce_is_refused_and_public_clients_need_pkce() {
        let e = parse(&format!("{OK}&code_challenge=abc")).unwrap_err();
        assert!(matches!(
            e,
            AuthorizeError::Redirect {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ));
        let e = parse("client_id=mobile&response_type=code&scope=openid").unwrap_err();
        assert!(matches!(
            e,
            AuthorizeError::Redirect {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ));
        let ok = parse(&format!(
            "client_id=mobile&response_type=code&scope=openid&code_challenge={}&code_challenge_method=S256",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(ok.is_ok());
    }

    #[test]
    fn request_objects_get_their_own_error_codes() {
        let e = parse(&format!("{OK}&request=eyJ")).unwrap_err();
        assert!(matches!(
            e,
            AuthorizeError::Redirect {
                code: ErrorCode::RequestNotSupported,
                ..
            }
        ));
        let e = parse(&format!("{OK}&request_uri=https%3A%2F%2Fx")).unwrap_err();
        assert!(matches!(
            e,
            AuthorizeError::Redirect {
                code: ErrorCode::RequestUriNotSupported,
                ..
            }
        ));
    }

    #[test]
    fn prompt_and_max_age_are_understood_and_unknown_parameters_ignored() {
        let r = parse(&format!(
            "{OK}&prompt=login&max_age=60&login_hint=bob&foo=bar"
        ))
        .unwrap();
        assert_eq!(r.prompt, Prompt::Login);
        assert_eq!(r.max_age, Some(60));
        let e = parse(&format!("{OK}&prompt=none+login")).unwrap_err();
        assert!(matches!(
            e,
            AuthorizeError::Redirect {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ));
    }

    #[test]
    fn the_redirect_keeps_the_registered_uri_and_its_query() {
        assert_eq!(
            redirect_with(
                "https://g.example/cb2?x=1",
                &[("code", "a b"), ("state", "s")]
            ),
            "https://g.example/cb2?x=1&code=a+b&state=s"
        );
        assert_eq!(
            redirect_with("app.immich:///oauth-callback", &[("code", "c")]),
            "app.immich:///oauth-callback?code=c"
        );
    }
}
