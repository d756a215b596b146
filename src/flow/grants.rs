//! Returning users, refresh, and logout: where the provider session and Plex access meet the protocol.

use super::access::Access;
use super::login::{LoginFlow, LoginState};
use super::session::Session;
use crate::oidc::{
    AuthorizationRequest, ClientCredentials, ErrorCode, GrantContext, Params, Prompt, TokenError,
    TokenResponse,
};

/// What `/authorize` should do for a validated request.
#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// Straight back to the client (a code, or an error such as `login_required`).
    Redirect {
        url: String,
        /// A refreshed session cookie to set; `clear_session` removes it instead.
        session: Option<String>,
        clear_session: bool,
    },
    /// Show the sign-in page and start a pending login.
    SignIn { clear_session: bool },
    /// Show the page in a terminal state (denied, unavailable) without starting a login.
    Page {
        state: LoginState,
        account: Option<String>,
        clear_session: bool,
    },
}

#[derive(Debug, Default)]
pub struct LogoutRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

#[derive(Debug)]
pub enum LogoutOutcome {
    Redirect(String),
    SignedOut,
}

#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error("id_token_hint is not a token this provider issued")]
    InvalidHint,
    #[error("client_id does not match the id_token_hint's audience")]
    ClientMismatch,
    #[error("unknown client_id \"{0}\"")]
    UnknownClient(String),
    #[error("post_logout_redirect_uri needs client_id or id_token_hint to know whose URI it is")]
    UnidentifiedClient,
    #[error("post_logout_redirect_uri \"{uri}\" is not registered for client \"{client_id}\"")]
    UnregisteredRedirect { client_id: String, uri: String },
}

impl LoginFlow {
    /// The front door for a validated request: a returning user with a live session and confirmed access
    /// goes straight back with a code; everyone else sees the page (or gets the `prompt=none` error).
    pub async fn authorize(
        &self,
        request: &AuthorizationRequest,
        session_cookie: Option<&str>,
    ) -> AuthorizeOutcome {
        let now = self.clock.unix_seconds();
        let session = session_cookie.and_then(|c| self.sessions.open(c, now));
        let had_cookie = session_cookie.is_some();
        let error =
            |code: ErrorCode, description: &str, clear_session: bool| AuthorizeOutcome::Redirect {
                url: self.provider.error_redirect(
                    &request.redirect_uri,
                    request.state.as_deref(),
                    code,
                    description,
                ),
                session: None,
                clear_session,
            };
        if request.prompt == Prompt::Login {
            return AuthorizeOutcome::SignIn {
                clear_session: false,
            };
        }
        let Some(mut session) = session else {
            // A cookie that no longer opens (expired, tampered, old key) is removed on the way.
            return if request.prompt == Prompt::None {
                error(
                    ErrorCode::LoginRequired,
                    "the user must sign in",
                    had_cookie,
                )
            } else {
                AuthorizeOutcome::SignIn {
                    clear_session: had_cookie,
                }
            };
        };
        if let Some(max_age) = request.max_age
            && now.saturating_sub(session.auth_time) > max_age
        {
            return if request.prompt == Prompt::None {
                error(
                    ErrorCode::LoginRequired,
                    "the sign-in is older than max_age",
                    false,
                )
            } else {
                AuthorizeOutcome::SignIn {
                    clear_session: false,
                }
            };
        }
        let access = self
            .access
            .recheck(
                &session.identity.subject,
                &session.identity,
                &session.plex_token,
                session.auth_time,
            )
            .await;
        match access {
            Access::Allowed(identity) => {
                self.live_sessions
                    .seen(&session.sid, session.expires_at, now);
                session.identity = identity;
                if !session.clients.contains(&request.client.id) {
                    session.clients.push(request.client.id.clone());
                }
                let context = GrantContext {
                    session_id: Some(session.sid.clone()),
                    upstream: Some(self.sessions.seal_upstream(&session.plex_token)),
                };
                let url = self.provider.issue_code(
                    request,
                    &session.identity,
                    session.auth_time,
                    context,
                );
                metrics::counter!("plex_oidc_logins_total", "result" => "session").increment(1);
                tracing::info!(
                    target: "plex_oidc::audit",
                    event = "login",
                    result = "session",
                    client_id = %request.client.id,
                    plex_user_id = %session.identity.subject,
                    plex_username = %session.account,
                );
                AuthorizeOutcome::Redirect {
                    url,
                    session: self.sessions.seal(&session),
                    clear_session: false,
                }
            }
            Access::Denied { account } => {
                self.end_session(&session);
                tracing::info!(
                    target: "plex_oidc::audit",
                    event = "access_withdrawn",
                    plex_user_id = %session.identity.subject,
                    plex_username = %account,
                );
                if request.prompt == Prompt::None {
                    error(
                        ErrorCode::AccessDenied,
                        "the account no longer has access",
                        true,
                    )
                } else {
                    AuthorizeOutcome::Page {
                        state: LoginState::Denied,
                        account: Some(account),
                        clear_session: true,
                    }
                }
            }
            Access::TokenRejected => {
                if request.prompt == Prompt::None {
                    error(
                        ErrorCode::LoginRequired,
                        "the user must sign in again",
                        true,
                    )
                } else {
                    AuthorizeOutcome::SignIn {
                        clear_session: true,
                    }
                }
            }
            Access::Unavailable => {
                if request.prompt == Prompt::None {
                    error(
                        ErrorCode::TemporarilyUnavailable,
                        "Plex is unavailable",
                        false,
                    )
                } else {
                    AuthorizeOutcome::Page {
                        state: LoginState::Unavailable,
                        account: None,
                        clear_session: false,
                    }
                }
            }
        }
    }

    /// The token endpoint: codes go straight to the provider; refreshes re-check Plex access first.
    pub async fn token(
        &self,
        credentials: &ClientCredentials,
        form: &Params,
    ) -> Result<TokenResponse, TokenError> {
        let grant_type = form
            .get("grant_type")
            .map_err(|e| TokenError::InvalidRequest(e.to_string()))?;
        match grant_type {
            Some("authorization_code") => self.provider.exchange_code(credentials, form),
            Some("refresh_token") => self.refresh(credentials, form).await,
            Some(other) => Err(TokenError::UnsupportedGrantType(format!(
                "grant_type \"{}\" is not supported",
                other.chars().take(64).collect::<String>()
            ))),
            None => Err(TokenError::InvalidRequest("grant_type is missing".into())),
        }
    }

    async fn refresh(
        &self,
        credentials: &ClientCredentials,
        form: &Params,
    ) -> Result<TokenResponse, TokenError> {
        let grant = self.provider.begin_refresh(credentials, form)?;
        let Some(token) = grant
            .payload
            .upstream
            .as_deref()
            .and_then(|u| self.sessions.open_upstream(u))
        else {
            self.provider.revoke_refresh(&grant);
            return Err(TokenError::InvalidGrant(
                "the grant can no longer be checked; sign in again".into(),
            ));
        };
        // Each rotation implied a confirmed access, at expiry minus the sliding lifetime.
        let last_allowed = grant
            .family
            .expires_at
            .saturating_sub(grant.client.refresh_token_ttl.as_secs());
        let access = self
            .access
            .recheck(
                &grant.payload.identity.subject,
                &grant.payload.identity,
                &token,
                last_allowed,
            )
            .await;
        match access {
            Access::Allowed(identity) => self.provider.complete_refresh(grant, &identity),
            Access::Denied { .. } | Access::TokenRejected => {
                self.provider.revoke_refresh(&grant);
                if let Some(sid) = &grant.family.session_id {
                    self.end_grants(sid, &grant.payload.identity.subject);
                }
                Err(TokenError::InvalidGrant(
                    "the user no longer has access to this server".into(),
                ))
            }
            Access::Unavailable => Err(TokenError::TemporarilyUnavailable(
                "Plex is unavailable; try again later".into(),
            )),
        }
    }

    /// RP-Initiated Logout 1.0. A bad request is refused before anything is ended.
    pub fn logout(
        &self,
        request: &LogoutRequest,
        session_cookie: Option<&str>,
    ) -> Result<LogoutOutcome, LogoutError> {
        let hint = match &request.id_token_hint {
            Some(h) => Some(
                self.provider
                    .verify_id_token_hint(h)
                    .ok_or(LogoutError::InvalidHint)?,
            ),
            None => None,
        };
        let client_id = match (&hint, &request.client_id) {
            (Some(h), Some(c)) if &h.client_id != c => return Err(LogoutError::ClientMismatch),
            (Some(h), _) => Some(h.client_id.clone()),
            (None, Some(c)) => Some(c.clone()),
            (None, None) => None,
        };
        if let Some(c) = &client_id
            && self.provider.client(c).is_none()
        {
            return Err(LogoutError::UnknownClient(c.clone()));
        }
        let redirect = match &request.post_logout_redirect_uri {
            Some(uri) => {
                let Some(c) = &client_id else {
                    return Err(LogoutError::UnidentifiedClient);
                };
                if !self.provider.post_logout_redirect_allowed(c, uri) {
                    return Err(LogoutError::UnregisteredRedirect {
                        client_id: c.clone(),
                        uri: uri.clone(),
                    });
                }
                Some(uri.clone())
            }
            None => None,
        };
        let now = self.clock.unix_seconds();
        match session_cookie.and_then(|c| self.sessions.open(c, now)) {
            Some(session) => self.end_session(&session),
            None => {
                if let Some(HintSession { sid, sub }) = hint.as_ref().and_then(|h| {
                    h.session_id.clone().map(|sid| HintSession {
                        sid,
                        sub: h.subject.clone(),
                    })
                }) {
                    self.end_grants(&sid, &sub);
                }
            }
        }
        Ok(match redirect {
            Some(uri) => {
                let mut params = Vec::new();
                if let Some(state) = &request.state {
                    params.push(("state", state.as_str()));
                }
                LogoutOutcome::Redirect(if params.is_empty() {
                    uri
                } else {
                    crate::oidc::append_query(&uri, &params)
                })
            }
            None => LogoutOutcome::SignedOut,
        })
    }

    /// Ends a provider session: its refresh tokens are revoked and every client that took part is told.
    pub(super) fn end_session(&self, session: &Session) {
        let mut clients = self.end_grants_quiet(&session.sid);
        for c in &session.clients {
            if !clients.contains(c) {
                clients.push(c.clone());
            }
        }
        self.notify_clients(&clients, &session.identity.subject, &session.sid);
    }

    fn end_grants(&self, sid: &str, subject: &str) {
        let clients = self.end_grants_quiet(sid);
        self.notify_clients(&clients, subject, sid);
    }

    fn end_grants_quiet(&self, sid: &str) -> Vec<String> {
        self.live_sessions.ended(sid);
        let mut clients = self.provider.end_session_grants(sid);
        clients.dedup();
        clients
    }

    fn notify_clients(&self, clients: &[String], subject: &str, sid: &str) {
        for client_id in clients {
            let Some(uri) = self
                .provider
                .client(client_id)
                .and_then(|c| c.backchannel_logout_uri.clone())
            else {
                continue;
            };
            match self.provider.logout_token(client_id, subject, Some(sid)) {
                Ok(token) => self.notifier.notify(client_id.clone(), uri, token),
                Err(e) => tracing::error!(error = %e, "cannot sign a logout token"),
            }
        }
    }
}

struct HintSession {
    sid: String,
    sub: String,
}
