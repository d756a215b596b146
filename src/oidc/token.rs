//! Client authentication at the token endpoint (RFC 6749 §2.3.1, OIDC Core §9).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Params, TokenError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    Post,
    None,
}

/// Who the caller claims to be. The secret is kept out of `Debug`.
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Option<String>,
    pub method: AuthMethod,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("method", &self.method)
            .finish()
    }
}

impl ClientCredentials {
    /// From the `Authorization` header (Basic) or the form (post / none). Using both is refused
    /// (RFC 6749 §2.3: one method per request).
    pub fn from_request(
        authorization: Option<&str>,
        form: &Params,
    ) -> Result<ClientCredentials, TokenError> {
        let form_id = form
            .get("client_id")
            .map_err(|e| TokenError::InvalidRequest(e.to_string()))?;
        let form_secret = form
            .get("client_secret")
            .map_err(|e| TokenError::InvalidRequest(e.to_string()))?;
        if let Some(header) = authorization {
            let Some(encoded) = strip_prefix_ignore_case(header.trim(), "basic ") else {
                return Err(TokenError::InvalidClient {
                    description: "only Basic authorization is accepted here".into(),
                    used_basic: true,
                });
            };
            if form_secret.is_some() {
                return Err(TokenError::InvalidRequest(
                    "client credentials given both in the Authorization header and in the body"
                        .into(),
                ));
            }
            let (id, secret) = decode_basic(encoded.trim()).ok_or(TokenError::InvalidClient {
                description: "malformed Basic credentials".into(),
                used_basic: true,
            })?;
            if let Some(fid) = form_id
                && fid != id
            {
                return Err(TokenError::InvalidRequest(
                    "client_id in the body differs from the Authorization header".into(),
                ));
            }
            return Ok(ClientCredentials {
                client_id: id,
                secret: Some(secret),
                method: AuthMethod::Basic,
            });
        }
        let Some(id) = form_id else {
            return Err(TokenError::InvalidClient {
                description: "no client authentication was given".into(),
                used_basic: false,
            });
        };
        Ok(ClientCredentials {
            client_id: id.to_owned(),
            secret: form_secret.map(str::to_owned),
            method: if form_secret.is_some() {
                AuthMethod::Post
            } else {
                AuthMethod::None
            },
        })
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// RFC 6749 §2.3.1 form-encodes id and secret before base64; clients that skip that step (Authlib) still
/// work because a value without `%` or `+` decodes to itself.
fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(s: &str) -> Params {
        Params::from_urlencoded(s.as_bytes()).unwrap()
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20app:p%2Bw+d"));
        let c = ClientCredentials::from_request(Some(&header), &form("")).unwrap();
        assert_eq!(c.client_id, "my app");
        assert_eq!(c.secret.as_deref(), Some("p+w d"));
        assert_eq!(c.method, AuthMethod::Basic);
    }

    #[test]
    fn post_and_none_are_told_apart() {
        let c =
            ClientCredentials::from_request(None, &form("client_id=a&client_secret=b")).unwrap();
        assert_eq!(c.method, AuthMethod::Post);
        let c = ClientCredentials::from_request(None, &form("client_id=a")).unwrap();
        assert_eq!(c.method, AuthMethod::None);
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let header = format!("Basic {}", STANDARD.encode("a:b"));
        let e =
            ClientCredentials::from_request(Some(&header), &form("client_secret=b")).unwrap_err();
        assert!(matches!(e, TokenError::InvalidRequest(_)));
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = ClientCredentials::from_request(None, &form("client_id=a&client_secret=topsecret"))
            .unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
