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
use crate::metrics::{FailureReason, LiveSessions, login_failure};
use crate::oidc::{AuthorizationRequest, GrantContext, Identity, Provider};
use crate::plex::{PinId, PlexClient, PlexError, PlexToken};
use crate::random::Random;

/// Consecutive failed PIN checks after which the page says "Plex is unavailable" instead of waiting on.
const MAX_CHECK_FAILURES: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Sessions the live-sessions gauge tracks before it saturates (about 100 bytes each).
const LIVE_SESSIONS_CAPACITY: usize = 10_000;
/// A waiting sign-in counts as abandoned this long after its PIN expired with nobody polling.
const ABANDON_GRACE: Duration = Duration::from_secs(60);

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
    /// `limits.max_pending_logins` sign-ins are in progress: newcomers wait rather than push people
    /// halfway through a sign-in out of the table.
    #[error("too many sign-ins are in progress")]
    Busy,
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
    /// The authorization request again, for "start again" once this login expired.
    pub restart_url: String,
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
    restart_url: String,
    /// The popup's landing page may ask for one immediate PIN check (see [`LoginFlow::nudge`]).
    nudged: std::sync::atomic::AtomicBool,
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
    pending: Arc<Cache<String, Arc<PendingLogin>>>,
    pub(super) live_sessions: Arc<LiveSessions>,
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
        // Twice the cap: `begin` enforces the cap itself, so the cache's own eviction (per shard) never
        // pushes out a sign-in in progress.
        let pending = Arc::new(Cache::new(parts.settings.capacity.max(16) * 2));
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
            live_sessions: Arc::new(LiveSessions::new(LIVE_SESSIONS_CAPACITY)),
        }
    }

    /// Carries `previous`'s pending sign-ins and session count over (config reload), so nobody halfway
    /// through a sign-in notices. Their authorization requests keep the client settings they began with.
    pub fn adopt_state_of(mut self, previous: &LoginFlow) -> LoginFlow {
        self.pending = previous.pending.clone();
        self.live_sessions = previous.live_sessions.clone();
        self
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    pub fn access_checker(&self) -> &AccessChecker {
        &self.access
    }

    /// Pending logins held (including ones that ended but were not yet evicted).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Provider sessions started or seen by this process that have neither expired nor ended.
    pub fn live_sessions(&self) -> usize {
        self.live_sessions.count(self.clock.unix_seconds())
    }

    /// Scrape-time bookkeeping. A sign-in whose page was left before any outcome (nobody polls, so no
    /// expiry is ever noticed) is counted once as `abandoned` after its deadline, and ends as expired
    /// (kept, so a returning page can still offer to start again). Returns the sign-ins in progress.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut in_progress = 0;
        for (_, login) in self.pending.iter() {
            // Locked: a request is working on it right now, so it is in progress.
            let Ok(mut stage) = login.stage.try_lock() else {
                in_progress += 1;
                continue;
            };
            let past_lifetime = self.expired(&login, now);
            let abandoned = match &*stage {
                Stage::Ready if past_lifetime => Some(FailureReason::NotStarted),
                // The grace leaves a page that still polls the time to notice the expiry itself.
                Stage::Waiting { expires_at, .. }
                    if *expires_at + ABANDON_GRACE <= now || past_lifetime =>
                {
                    Some(FailureReason::NotApproved)
                }
                Stage::Approved { .. } if past_lifetime => Some(FailureReason::NotContinued),
                Stage::Ready | Stage::Waiting { .. } | Stage::Approved { .. } => {
                    in_progress += 1;
                    None
                }
                // A retry after an outage may still succeed.
                Stage::Unavailable { .. } if !past_lifetime => {
                    in_progress += 1;
                    None
                }
                Stage::Unavailable { .. } | Stage::Denied { .. } | Stage::Expired | Stage::Done => {
                    None
                }
            };
            if let Some(reason) = abandoned {
                *stage = Stage::Expired;
                self.record_outcome(&login, Outcome::Abandoned(reason), None, "");
            }
        }
        in_progress
    }

    /// Records a validated request, bound to the browser's `binding` cookie value; returns the login id.
    pub fn begin(
        &self,
        request: AuthorizationRequest,
        binding: &str,
        restart_url: String,
    ) -> Result<String, LoginError> {
        if self.pending.len() >= self.settings.capacity {
            self.prune();
            if self.pending.len() >= self.settings.capacity {
                tracing::warn!(
                    capacity = self.settings.capacity,
                    "the pending sign-in table is full; refusing a new sign-in"
                );
                return Err(LoginError::Busy);
            }
        }
        let id = self.random.token(16);
        let login = PendingLogin {
            binding: binding.to_owned(),
            request,
            restart_url,
            nudged: std::sync::atomic::AtomicBool::new(false),
            created_at: self.clock.now(),
            started: Instant::now(),
            stage: Mutex::new(Stage::Ready),
        };
        self.pending.insert(id.clone(), Arc::new(login));
        Ok(id)
    }

    /// Drops sign-ins that ended (done, denied, expired), outlived their lifetime, or were never started:
    /// our page asks for a PIN as soon as it loads, so a login still `Ready` after a few seconds is a
    /// page nobody runs (a flood). Runs only when the table is full, so its linear cost is paid under
    /// pressure alone, and people halfway through a sign-in keep their place.
    fn prune(&self) {
        const NEVER_STARTED: Duration = Duration::from_secs(10);
        let now = self.clock.now();
        self.pending.retain(|_, login| {
            let Ok(stage) = login.stage.try_lock() else {
                return true;
            };
            let ended = matches!(&*stage, Stage::Done | Stage::Expired | Stage::Denied { .. });
            let unstarted = matches!(&*stage, Stage::Ready)
                && now
                    .duration_since(login.created_at)
                    .is_ok_and(|age| age > NEVER_STARTED);
            !ended && !unstarted && !self.expired(login, now)
        });
    }

    pub fn summary(&self, login_id: &str, binding: &str) -> Result<LoginSummary, LoginError> {
        let login = self.find(login_id, binding)?;
        Ok(LoginSummary {
            client_name: login.request.client.display_name().to_owned(),
            restart_url: login.restart_url.clone(),
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
                    if matches!(*stage, Stage::Ready | Stage::Waiting { .. }) {
                        let outcome = Outcome::Expired(FailureReason::LoginExpired);
                        self.record_outcome(&login, outcome, None, "");
                    }
                    *stage = Stage::Expired;
                    return Err(LoginError::UnknownLogin);
                }
                let pin = match self.plex.create_pin().await {
                    Ok(pin) => pin,
                    Err(e) => {
                        let outcome = Outcome::PlexUnavailable(plex_failure(&e));
                        self.record_outcome(&login, outcome, None, "");
                        return Err(LoginError::PlexUnavailable(e));
                    }
                };
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
        let popup_forward = format!("{base}/login/popup-done?login={login_id}");
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

    /// The Plex popup just landed on our page, so the PIN was approved a moment ago: check it now rather
    /// than at the next tick, once per login (so this cannot be used to hammer plex.tv).
    pub async fn nudge(&self, login_id: &str, binding: &str) {
        let Ok(login) = self.find(login_id, binding) else {
            return;
        };
        if login.nudged.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let mut stage = login.stage.lock().await;
        self.advance(&login, &mut stage, true).await;
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
            self.record_outcome(&login, Outcome::Success, Some(identity), account);
            let cookie = self.sessions.seal(&session);
            if cookie.is_some() {
                self.live_sessions.seen(
                    &session.sid,
                    session.expires_at,
                    self.clock.unix_seconds(),
                );
            }
            *stage = Stage::Done;
            // Its work is done: the memory goes now, not when the table next fills up.
            self.pending.remove(login_id);
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
            login_failure(FailureReason::WrongBrowser);
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
            self.record_outcome(login, Outcome::Expired(FailureReason::PinExpired), None, "");
            return;
        }
        if !force && *next_check > now {
            return;
        }
        let checked = self.plex.check_pin(*pin_id).await;
        // Intervals count from the answer, not the question: a check that took the whole timeout
        // must not leave the backoff already used up.
        let answered = self.clock.now();
        match checked {
            Ok(pin) => match pin.auth_token {
                Some(token) => {
                    let pin = Some((*pin_id, pin_code.clone(), *expires_at));
                    *stage = self.check_approval(login, token, pin).await;
                }
                None => {
                    *failures = 0;
                    *next_check = answered + self.settings.poll_interval;
                }
            },
            Err(PlexError::PinNotFound) => {
                *stage = Stage::Expired;
                self.record_outcome(
                    login,
                    Outcome::Expired(FailureReason::PinNotFound),
                    None,
                    "",
                );
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
                *next_check = answered + hinted.unwrap_or(backoff).max(backoff);
                tracing::warn!(error = %e, failures = *failures, "checking the Plex PIN failed");
                if *failures >= MAX_CHECK_FAILURES {
                    let pin = Some((*pin_id, pin_code.clone(), *expires_at));
                    *stage = Stage::Unavailable { token: None, pin };
                    self.record_outcome(
                        login,
                        Outcome::PlexUnavailable(plex_failure(&e)),
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
                self.record_outcome(login, Outcome::Denied, None, &account);
                Stage::Denied { account }
            }
            // The token plex.tv just handed out is refused: start over rather than call it an outage.
            Ok(Access::TokenRejected) => {
                let outcome = Outcome::Error(FailureReason::TokenRejected);
                self.record_outcome(login, outcome, None, "");
                Stage::Expired
            }
            unavailable @ (Ok(Access::Unavailable) | Err(_)) => {
                tracing::warn!("checking Plex access failed");
                let reason = match &unavailable {
                    Err(e) => plex_failure(e),
                    Ok(_) => FailureReason::PlexUnreachable,
                };
                self.record_outcome(login, Outcome::PlexUnavailable(reason), None, "");
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

    /// One audit event and the login metrics per outcome. Never a token, code or PIN.
    fn record_outcome(
        &self,
        login: &PendingLogin,
        outcome: Outcome,
        identity: Option<&Identity>,
        account: &str,
    ) {
        let elapsed = login.started.elapsed();
        let result = outcome.result();
        let reason = outcome.reason();
        metrics::counter!(crate::metrics::LOGINS_TOTAL, "result" => result).increment(1);
        metrics::histogram!(crate::metrics::LOGIN_DURATION, "result" => result)
            .record(elapsed.as_secs_f64());
        if let Some(reason) = reason {
            login_failure(reason);
        }
        tracing::info!(
            target: "plex_oidc::audit",
            event = "login",
            result,
            reason = reason.map_or("", FailureReason::as_str),
            client_id = %login.request.client.id,
            plex_user_id = identity.map_or("", |i| i.subject.as_str()),
            plex_username = account,
            duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        );
    }
}

/// How a sign-in ended: the `result` label, and for failures the finer `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Denied,
    PlexUnavailable(FailureReason),
    Expired(FailureReason),
    /// The page was left before any outcome; counted once its deadline has passed.
    Abandoned(FailureReason),
    Error(FailureReason),
}

impl Outcome {
    fn result(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::PlexUnavailable(_) => "plex_unavailable",
            Outcome::Expired(_) => "expired",
            Outcome::Abandoned(_) => "abandoned",
            Outcome::Error(_) => "error",
        }
    }

    fn reason(self) -> Option<FailureReason> {
        match self {
            Outcome::Success => None,
            Outcome::Denied => Some(FailureReason::NoServerAccess),
            Outcome::PlexUnavailable(r)
            | Outcome::Expired(r)
            | Outcome::Abandoned(r)
            | Outcome::Error(r) => Some(r),
        }
    }
}

/// The failure reason for a plex.tv error. `Unavailable` carries only a message, so its kind is read
/// from the prefixes the plex adapter writes ("plex.tv answered 502", "timed out: ...").
fn plex_failure(e: &PlexError) -> FailureReason {
    match e {
        PlexError::RateLimited { .. } => FailureReason::PlexRateLimited,
        PlexError::Unavailable(m) if m == "plex.tv answered 408" => FailureReason::PlexTimeout,
        PlexError::Unavailable(m) if m.starts_with("plex.tv answered") => FailureReason::Plex5xx,
        PlexError::Unavailable(m) if m.starts_with("timed out") || m.starts_with("no answer") => {
            FailureReason::PlexTimeout
        }
        PlexError::Unavailable(_) => FailureReason::PlexUnreachable,
        PlexError::PinNotFound => FailureReason::PinNotFound,
        PlexError::Unauthorized => FailureReason::TokenRejected,
        PlexError::UnexpectedResponse(_) | PlexError::Client(_) => FailureReason::PlexUnexpected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unsuccessful_outcome_names_a_reason_and_success_none() {
        assert_eq!(Outcome::Success.reason(), None);
        assert_eq!(
            Outcome::Denied.reason(),
            Some(FailureReason::NoServerAccess)
        );
        let reason = FailureReason::NotApproved;
        assert_eq!(Outcome::Abandoned(reason).result(), "abandoned");
        assert_eq!(Outcome::Abandoned(reason).reason(), Some(reason));
    }

    #[test]
    fn plex_errors_map_to_bounded_failure_reasons() {
        let unavailable = |m: &str| plex_failure(&PlexError::Unavailable(m.into()));
        assert_eq!(unavailable("plex.tv answered 502"), FailureReason::Plex5xx);
        assert_eq!(
            unavailable("plex.tv answered 408"),
            FailureReason::PlexTimeout
        );
        assert_eq!(
            unavailable("timed out: operation timed out"),
            FailureReason::PlexTimeout
        );
        assert_eq!(
            unavailable("no answer within the request timeout"),
            FailureReason::PlexTimeout
        );
        assert_eq!(
            unavailable("cannot connect: refused"),
            FailureReason::PlexUnreachable
        );
        assert_eq!(
            plex_failure(&PlexError::RateLimited { retry_after: None }),
            FailureReason::PlexRateLimited
        );
        assert_eq!(
            plex_failure(&PlexError::UnexpectedResponse("xml".into())),
            FailureReason::PlexUnexpected
        );
    }
}
