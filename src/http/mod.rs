//! The web layer: thin salvo routes that extract, call the flow or the provider once, and map the result.

mod error;
mod health;
mod login;
mod middleware;
mod oidc;
mod page;
mod preview;
mod rate_limit;
mod static_files;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use salvo::prelude::*;
use salvo::{Depot, Service};

use crate::assets::Assets;
use crate::flow::LoginFlow;

pub use page::PageSettings;
pub use rate_limit::RateLimiter;

/// Request bodies we accept are small forms and JSON; anything bigger is refused before it is buffered.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024;

/// The binding cookie ties a pending login to the browser that started it.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub secure: bool,
    pub max_age: Duration,
    /// The sealed provider session.
    pub session_name: String,
    pub session_ttl: Duration,
}

impl CookieSettings {
    /// `__Host-` where the browser allows it (https, path `/`), so a sibling subdomain cannot plant it.
    pub fn for_issuer(
        issuer_is_https: bool,
        max_age: Duration,
        session_ttl: Duration,
    ) -> CookieSettings {
        let prefix = if issuer_is_https { "__Host-" } else { "" };
        CookieSettings {
            name: format!("{prefix}plex-oidc-login"),
            secure: issuer_is_https,
            max_age,
            session_name: format!("{prefix}plex-oidc-session"),
            session_ttl,
        }
    }
}

/// What every page needs: the files and the operator's settings. Shared by the service and `preview`.
pub struct Pages {
    pub assets: Assets,
    pub settings: PageSettings,
}

pub struct AppState {
    pub flow: Arc<LoginFlow>,
    pub pages: Arc<Pages>,
    pub cookie: CookieSettings,
    pub state_dir: PathBuf,
    pub limiter: Arc<RateLimiter>,
    pub readiness: crate::telemetry::Readiness,
    /// No request may take longer (a stuck upstream must not pin connections for ever).
    pub request_deadline: Duration,
    /// Renders `/metrics` when the exporter is installed on the main listener.
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

/// The state requests see. A config reload builds a new one and swaps it in whole; a request keeps the
/// state it started with.
#[derive(Clone)]
pub struct StateCell(Arc<std::sync::RwLock<Arc<AppState>>>);

impl StateCell {
    pub fn new(state: Arc<AppState>) -> StateCell {
        StateCell(Arc::new(std::sync::RwLock::new(state)))
    }

    pub fn current(&self) -> Arc<AppState> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, state: Arc<AppState>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

/// Puts the current state into every request's depot, and answers 503 when a request outlives its
/// deadline (the handler's future is dropped, so nothing it held stays blocked).
struct Inject(StateCell);

#[salvo::async_trait]
impl Handler for Inject {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let state = self.0.current();
        let deadline = state.request_deadline;
        depot.insert_typed(state.pages.clone());
        depot.insert_typed(state.readiness);
        depot.insert_typed(state);
        if tokio::time::timeout(deadline, ctrl.call_next(req, depot, res))
            .await
            .is_err()
        {
            tracing::warn!(path = %req.uri().path(), "request exceeded its deadline");
            res.status_code(StatusCode::SERVICE_UNAVAILABLE);
            res.render(Text::Plain("the request took too long; try again"));
            ctrl.skip_rest();
        }
    }
}

/// Puts only the pages into the depot (the preview server has no flow).
struct InjectPages(Arc<Pages>);

#[salvo::async_trait]
impl Handler for InjectPages {
    async fn handle(
        &self,
        _req: &mut Request,
        depot: &mut Depot,
        _res: &mut Response,
        _ctrl: &mut FlowCtrl,
    ) {
        depot.insert_typed(self.0.clone());
    }
}

pub(crate) fn pages(depot: &Depot) -> Option<Arc<Pages>> {
    depot.get_typed::<Arc<Pages>>().ok().cloned()
}

/// `plex-oidc preview`: every page state with sample data, the operator's theme, and no Plex.
pub fn preview_service(pages: Arc<Pages>) -> Service {
    let router = Router::new()
        .hoop(InjectPages(pages))
        .push(Router::new().get(preview::index))
        .push(Router::with_path("assets/{**path}").get(static_files::asset))
        .push(Router::with_path("login/popup-done").get(preview::popup_done))
        .push(Router::with_path("login/popup-wait").get(preview::popup_wait))
        .push(Router::with_path("{state}").get(preview::state_page));
    Service::new(router)
        .hoop(middleware::Common::new(""))
        .catcher(salvo::catcher::Catcher::default().hoop(middleware::plain_errors))
}

pub(crate) fn app(depot: &Depot) -> Option<Arc<AppState>> {
    depot.get_typed::<Arc<AppState>>().ok().cloned()
}

/// The routes under the issuer's path (`base_path` is empty when the issuer has none).
pub fn service(state: StateCell, base_path: &str) -> Service {
    let budget = |route: &'static str, json: bool| rate_limit::LoginBudget { route, json };
    let routes = Router::new()
        .push(Router::with_path(".well-known/openid-configuration").get(oidc::discovery))
        .push(Router::with_path("jwks").get(oidc::jwks))
        .push(
            Router::with_path("authorize")
                .hoop(budget("/authorize", false))
                .get(oidc::authorize)
                .post(oidc::authorize),
        )
        .push(Router::with_path("token").post(oidc::token))
        .push(
            Router::with_path("userinfo")
                .get(oidc::userinfo)
                .post(oidc::userinfo),
        )
        .push(Router::with_path("revoke").post(oidc::revoke))
        .push(Router::with_path("introspect").post(oidc::introspect))
        .push(
            Router::with_path("logout")
                .get(oidc::logout)
                .post(oidc::logout),
        )
        .push(
            Router::with_path("login")
                .push(
                    Router::with_path("start")
                        .hoop(budget("/login/start", true))
                        .post(login::start),
                )
                .push(
                    Router::with_path("poll")
                        .hoop(budget("/login/poll", true))
                        .post(login::poll),
                )
                .push(
                    Router::with_path("continue")
                        .hoop(budget("/login/continue", false))
                        .get(login::finish),
                )
                .push(Router::with_path("popup-done").get(login::popup_done))
                .push(Router::with_path("popup-wait").get(preview::popup_wait)),
        )
        .push(Router::with_path("assets/{**path}").get(static_files::asset))
        .push(Router::with_path("healthz").get(health::healthz))
        .push(Router::with_path("readyz").get(health::readyz))
        .push(Router::with_path("metrics").get(health::metrics));
    let trimmed = base_path.trim_matches('/');
    let root = if trimmed.is_empty() {
        routes
    } else {
        Router::with_path(trimmed.to_owned()).push(routes)
    };
    Service::new(Router::new().hoop(Inject(state)).push(root))
        .hoop(middleware::Common::new(base_path))
        .catcher(salvo::catcher::Catcher::default().hoop(middleware::plain_errors))
}
