//! Pending logins: from the landing page to the code.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use quick_cache::sync::Cache;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use super::access::{Access, AccessChecker};
use super::session::{Session, SessionCodec};
use crate::backchannel::BackchannelNotifier;
use crate::clock::Clock;
use crate::oidc::{AuthorizationRequest, GrantContext, Identity, Provider};
use crate::plex::{PinId, PlexClient, PlexError, PlexToken};
use crate::random::Random;

/// Consecutive failed PIN checks after which the page says "Plex is unavailable" instead of waiting on.
const MAX_CHECK_FAILURES: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub server_id: String,
    /// The issuer without a trailing slash: where Plex sends the browser back to.
    pub base_url: String,
    /// plex.tv is asked about a PIN at most this often (PLEX_API.md §4: ≥ 1 s).
    pub poll_interval: Duration,
    /// How long a pending login lives without a PIN, and the cap on one with a PIN.
    pub login_ttl: Duration,
    pub capacity: usize,
    pub session_ttl: Duration,
}

/// What the page shows. The strings are part of the page's HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginState {
    Ready,
    Waiting,
    Checking,
    Approved,
    Denied,
    Unavailable,
    Expired,
}

impl LoginState {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginState::Ready => "ready",
            LoginState::Waiting => "waiting",
            LoginState::Checking => "checking",
            LoginState::Approved => "approved",
            LoginState::Denied => "denied",
            LoginState::Unavailable => "unavailable",
            LoginState::Expired => "expired",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown id, evicted, or finished: the page offers to start again.
    #[error("this sign-in is unknown or has expired")]
    UnknownLogin,
    /// The login was started in another browser (login CSRF attempt, or cookies cleared).
    #[error("this sign-in belongs to another browser")]
    WrongBrowser,
    #[error("Plex is unavailable: {0}")]
    PlexUnavailable(#[source] PlexError),
}

#[derive(Debug, Clone)]
pub struct StartResult {
    pub popup_url: String,
    pub redirect_url: String,
    pub expires_in: u64,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct PollResult {
    pub state: LoginState,
    pub retry_after: Option<Duration>,
    pub account: Option<String>,
    pub continue_url: Option<String>,
}

#[derive(Debug)]
pub enum FinishOutcome {
    /// Send the browser to the relying party with the code, and start the provider session.
    Redirect {
        url: String,
        session: Option<String>,
    },
    /// Show the page in this state.
    Page(PollResult),
}

/// What the page needs to greet the person.
#[derive(Debug, Clone)]
pub struct LoginSummary {
    pub client_name: String,
}

enum Stage {
    Ready,
    Waiting {
        pin_id: PinId,
        pin_code: String,
        expires_at: SystemTime,
        next_check: SystemTime,
        failures: u32,
    },
    /// The PIN was approved but checking access failed upstream; a retry re-checks with the same token.
    Unavailable {
        token: Option<PlexToken>,
        pin: Option<(PinId, String, SystemTime)>,
    },
    Approved {
        identity: Identity,
        account: String,
        auth_time: u64,
        token: PlexToken,
    },
    Denied {
        account: String,
    },
    Expired,
    Done,
}

struct PendingLogin {
    binding: String,
    request: AuthorizationRequest,
    created_at: SystemTime,
    started: Instant,
    stage: Mutex<Stage>,
}

pub struct LoginFlow {
    pub(super) provider: Arc<Provider>,
    pub(super) plex: PlexClient,
    pub(super) access: AccessChecker,
    pub(super) sessions: SessionCodec,
    pub(super) notifier: BackchannelNotifier,
    pub(super) settings: LoginSettings,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) random: Arc<dyn Random>,
    pending: Cache<String, Arc<PendingLogin>>,
}

/// What the flow is built from.
pub struct FlowParts {
    pub provider: Arc<Provider>,
    pub plex: PlexClient,
    pub access: AccessChecker,
    pub sessions: SessionCodec,
    pub notifier: BackchannelNotifier,
    pub settings: LoginSettings,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

impl LoginFlow {
    pub fn new(parts: FlowParts) -> LoginFlow {
        let pending = Cache::new(parts.settings.capacity.max(16));
        LoginFlow {
            provider: parts.provider,
            plex: parts.plex,
            access: parts.access,
            sessions: parts.sessions,
            notifier: parts.notifier,
            settings: parts.settings,
            clock: parts.clock,
            random: parts.random,
            pending,
        }
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// Pending logins held (including ones that ended but were not yet evicted).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Records a validated request, bound to the browser's `binding` cookie value; returns the login id.
    pub fn begin(&self, request: AuthorizationRequest, binding: &str) -> String {
        let id = self.random.token(16);
        let login = PendingLogin {
            binding: binding.to_owned(),
            request,
            created_at: self.clock.now(),
            started: Instant::now(),
            stage: Mutex::new(Stage::Ready),
        };
        self.pending.insert(id.clone(), Arc::new(login));
        id
    }

    pub fn summary(&self, login_id: &str, binding: &str) -> Result<LoginSummary, LoginError> {
        let login = self.find(login_id, binding)?;
        Ok(LoginSummary {
            client_name: login.request.client.display_name().to_owned(),
        })
    }

    /// Creates the Plex PIN (or reuses the live one) and returns the auth app URLs for both modes.
    /// `restart` throws the current PIN away ("use another Plex account").
    pub async fn start(
        &self,
        login_id: &str,
        binding: &str,
        restart: bool,
    ) -> Result<StartResult, LoginError> {
        let login = self.find(login_id, binding)?;
        let mut stage = login.stage.lock().await;
        let now = self.clock.now();
        let reusable = match &*stage {
            Stage::Waiting {
                pin_id,
                pin_code,
                expires_at,
                ..
            } if !restart && *expires_at > now => Some((*pin_id, pin_code.clone(), *expires_at)),
            Stage::Unavailable { pin: Some(pin), .. } if !restart && pin.2 > now => {
                Some(pin.clone())
            }
            Stage::Done => return Err(LoginError::UnknownLogin),
            _ => None,
        };
        let (pin_id, pin_code, expires_at) = match reusable {
            Some(pin) => pin,
            None => {
                if self.expired(&login, now) {
                    *stage = Stage::Expired;
                    return Err(LoginError::UnknownLogin);
                }
                let pin = self
                    .plex
                    .create_pin()
                    .await
                    .map_err(LoginError::PlexUnavailable)?;
                let expires_at = pin
                    .expires_at
                    .unwrap_or(now + Duration::from_secs(900))
                    .min(login.created_at + self.settings.login_ttl.max(Duration::from_secs(60)));
                (pin.id, pin.code, expires_at)
            }
        };
        // A retry after an upstream failure that already had the user's token re-checks access first.
        let retry_token = match &mut *stage {
            Stage::Unavailable { token, .. } if !restart => token.take(),
            _ => None,
        };
        *stage = Stage::Waiting {
            pin_id,
            pin_code: pin_code.clone(),
            expires_at,
            next_check: now,
            failures: 0,
        };
        if let Some(token) = retry_token {
            *stage = self
                .check_approval(&login, token, Some((pin_id, pin_code.clone(), expires_at)))
                .await;
        }
        let base = &self.settings.base_url;
        let popup_forward = format!("{base}/login/popup-done");
        let redirect_forward = format!("{base}/login/continue?login={login_id}");
        Ok(StartResult {
            popup_url: self.plex.auth_app_url(&pin_code, Some(&popup_forward)),
            redirect_url: self.plex.auth_app_url(&pin_code, Some(&redirect_forward)),
            expires_in: expires_at
                .duration_since(now)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            poll_interval: self.settings.poll_interval,
        })
    }

    /// The page's poll: asks plex.tv about the PIN when due, and on approval checks access at once.
    pub async fn poll(&self, login_id: &str, binding: &str) -> Result<PollResult, LoginError> {
        let login = self.find(login_id, binding)?;
        let mut stage = login.stage.lock().await;
        self.advance(&login, &mut stage, false).await;
        Ok(self.describe(login_id, &stage))
    }

    /// Where the browser lands after Plex (redirect mode) or after an approved poll: issues the code.
    pub async fn finish(&self, login_id: &str, binding: &str) -> Result<FinishOutcome, LoginError> {
        let login = self.find(login_id, binding)?;
        let mut stage = login.stage.lock().await;
        // Plex just sent the browser back, so the approval is fresh: check now, not at the next tick.
        self.advance(&login, &mut stage, true).await;
        if let Stage::Approved {
            identity,
            account,
            auth_time,
            token,
        } = &*stage
        {
            let session = Session {
                sid: self.random.token(16),
                identity: identity.clone(),
                account: account.clone(),
                plex_token: token.clone(),
                auth_time: *auth_time,
                expires_at: auth_time + self.settings.session_ttl.as_secs(),
                clients: vec![login.request.client.id.clone()],
            };
            let context = GrantContext {
                session_id: Some(session.sid.clone()),
                upstream: Some(self.sessions.seal_upstream(token)),
            };
            let url = self
                .provider
                .issue_code(&login.request, identity, *auth_time, context);
            self.record_outcome(
                &login,
                "success",
                &login.request.client.id,
                Some(identity),
                account,
            );
            let cookie = self.sessions.seal(&session);
            *stage = Stage::Done;
            return Ok(FinishOutcome::Redirect {
                url,
                session: cookie,
            });
        }
        Ok(FinishOutcome::Page(self.describe(login_id, &stage)))
    }

    fn find(&self, login_id: &str, binding: &str) -> Result<Arc<PendingLogin>, LoginError> {
        let login = self.pending.get(login_id).ok_or(LoginError::UnknownLogin)?;
        if !bool::from(login.binding.as_bytes().ct_eq(binding.as_bytes())) {
            tracing::warn!(
                "a sign-in was continued from another browser; refused (possible login CSRF)"
            );
            return Err(LoginError::WrongBrowser);
        }
        Ok(login)
    }

    fn expired(&self, login: &PendingLogin, now: SystemTime) -> bool {
        now.duration_since(login.created_at)
            .map(|age| age > self.settings.login_ttl)
            .unwrap_or(false)
    }

    async fn advance(&self, login: &PendingLogin, stage: &mut Stage, force: bool) {
        let now = self.clock.now();
        let Stage::Waiting {
            pin_id,
            pin_code,
            expires_at,
            next_check,
            failures,
        } = stage
        else {
            return;
        };
        if *expires_at <= now {
            *stage = Stage::Expired;
            self.record_outcome(login, "expired", &login.request.client.id, None, "");
            return;
        }
        if !force && *next_check > now {
            return;
        }
        match self.plex.check_pin(*pin_id).await {
            Ok(pin) => match pin.auth_token {
                Some(token) => {
                    let pin = Some((*pin_id, pin_code.clone(), *expires_at));
                    *stage = self.check_approval(login, token, pin).await;
                }
                None => {
                    *failures = 0;
                    *next_check = now + self.settings.poll_interval;
                }
            },
            Err(PlexError::PinNotFound) => {
                *stage = Stage::Expired;
                self.record_outcome(login, "expired", &login.request.client.id, None, "");
            }
            Err(e) => {
                *failures += 1;
                let hinted = match &e {
                    PlexError::RateLimited { retry_after } => *retry_after,
                    _ => None,
                };
                let backoff = self
                    .settings
                    .poll_interval
                    .saturating_mul(1 << (*failures).min(5))
                    .min(MAX_BACKOFF);
                *next_check = now + hinted.unwrap_or(backoff).max(backoff);
                tracing::warn!(error = %e, failures = *failures, "checking the Plex PIN failed");
                if *failures >= MAX_CHECK_FAILURES {
                    let pin = Some((*pin_id, pin_code.clone(), *expires_at));
                    *stage = Stage::Unavailable { token: None, pin };
                    self.record_outcome(
                        login,
                        "plex_unavailable",
                        &login.request.client.id,
                        None,
                        "",
                    );
                }
            }
        }
    }

    /// With the user's token: the account and its resources, fetched concurrently (two round trips after
    /// the PIN check would otherwise be three).
    async fn check_approval(
        &self,
        login: &PendingLogin,
        token: PlexToken,
        pin: Option<(PinId, String, SystemTime)>,
    ) -> Stage {
        let client_id = &login.request.client.id;
        match self.access.fetch(&token).await {
            Ok(Access::Allowed(identity)) => {
                let account = identity
                    .preferred_username
                    .clone()
                    .unwrap_or_else(|| identity.subject.clone());
                Stage::Approved {
                    identity,
                    account,
                    auth_time: self.clock.unix_seconds(),
                    token,
                }
            }
            Ok(Access::Denied { account }) => {
                self.record_outcome(login, "denied", client_id, None, &account);
                Stage::Denied { account }
            }
            // The token plex.tv just handed out is refused: start over rather than call it an outage.
            Ok(Access::TokenRejected) => {
                self.record_outcome(login, "error", client_id, None, "");
                Stage::Expired
            }
            Ok(Access::Unavailable) | Err(_) => {
                tracing::warn!("checking Plex access failed");
                self.record_outcome(login, "plex_unavailable", client_id, None, "");
                Stage::Unavailable {
                    token: Some(token),
                    pin,
                }
            }
        }
    }

    fn describe(&self, login_id: &str, stage: &Stage) -> PollResult {
        let now = self.clock.now();
        let plain = |state| PollResult {
            state,
            retry_after: None,
            account: None,
            continue_url: None,
        };
        match stage {
            Stage::Ready => plain(LoginState::Ready),
            Stage::Waiting { next_check, .. } => PollResult {
                retry_after: Some(
                    next_check
                        .duration_since(now)
                        .unwrap_or(Duration::ZERO)
                        .max(self.settings.poll_interval),
                ),
                ..plain(LoginState::Waiting)
            },
            Stage::Approved { .. } => PollResult {
                continue_url: Some(format!(
                    "{}/login/continue?login={login_id}",
                    self.settings.base_url
                )),
                ..plain(LoginState::Approved)
            },
            Stage::Denied { account } => PollResult {
                account: Some(account.clone()),
                ..plain(LoginState::Denied)
            },
            Stage::Unavailable { .. } => plain(LoginState::Unavailable),
            Stage::Expired | Stage::Done => plain(LoginState::Expired),
        }
    }

    /// One audit event and the login metrics per outcome. Never a token or code.
    fn record_outcome(
        &self,
        login: &PendingLogin,
        result: &'static str,
        client_id: &str,
        identity: Option<&Identity>,
        account: &str,
    ) {
        let elapsed = login.started.elapsed();
        metrics::counter!("plex_oidc_logins_total", "result" => result).increment(1);
        metrics::histogram!("plex_oidc_login_duration_seconds", "result" => result)
            .record(elapsed.as_secs_f64());
        tracing::info!(
            target: "plex_oidc::audit",
            event = "login",
            result,
            client_id,
            plex_user_id = identity.map(|i| i.subject.as_str()).unwrap_or(""),
            plex_username = account,
            duration_ms = elapsed.as_millis() as u64,
        );
    }
}
