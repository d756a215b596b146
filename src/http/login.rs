//! The page's HTTP API: start, poll, continue, and the two small popup pages.

use salvo::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{login_bad_request, login_error, no_store, redirect};
use super::oidc::binding_cookie;
use super::page::{PageView, render_page};
use super::{MAX_BODY_BYTES, app};
use crate::flow::{FinishOutcome, LoginError, PollResult};

#[derive(Deserialize)]
struct LoginRequest {
    login: String,
    #[serde(default)]
    restart: bool,
}

async fn login_request(req: &mut Request) -> Result<LoginRequest, String> {
    let is_json = req
        .content_type()
        .is_some_and(|m| m.essence_str() == "application/json");
    if !is_json {
        return Err("the body must be application/json".into());
    }
    let body = req
        .payload_with_max_size(MAX_BODY_BYTES)
        .await
        .map_err(|_| "the body is too large".to_owned())?;
    let parsed: LoginRequest = serde_json::from_slice(body)
        .map_err(|_| "the body must be {\"login\": \"<id>\"}".to_owned())?;
    if parsed.login.is_empty() || parsed.login.len() > 64 {
        return Err("login must be the id from the page".into());
    }
    Ok(parsed)
}

/// The cookie is required: without it the login cannot be proven to be this browser's.
fn binding(app: &super::AppState, req: &Request) -> Result<String, LoginError> {
    binding_cookie(app, req).ok_or(LoginError::WrongBrowser)
}

#[handler]
pub(crate) async fn start(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    let body = match login_request(req).await {
        Ok(b) => b,
        Err(m) => return login_bad_request(res, &m),
    };
    let result = match binding(&app, req) {
        Ok(b) => app.flow.start(&body.login, &b, body.restart).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(started) => {
            no_store(res);
            res.render(Json(json!({
                "state": "ready",
                "popup_url": started.popup_url,
                "redirect_url": started.redirect_url,
                "poll_interval_ms": started.poll_interval.as_millis() as u64,
                "expires_in": started.expires_in,
            })));
        }
        Err(e) => login_error(res, &e, &super::middleware::request_id(depot)),
    }
}

fn poll_json(p: &PollResult) -> Value {
    let mut v = json!({ "state": p.state.as_str() });
    if let Some(r) = p.retry_after {
        v["retry_after_ms"] = json!(r.as_millis() as u64);
    }
    if let Some(a) = &p.account {
        v["account"] = json!(a);
    }
    if let Some(c) = &p.continue_url {
        v["continue_url"] = json!(c);
    }
    v
}

#[handler]
pub(crate) async fn poll(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    let body = match login_request(req).await {
        Ok(b) => b,
        Err(m) => return login_bad_request(res, &m),
    };
    let result = match binding(&app, req) {
        Ok(b) => app.flow.poll(&body.login, &b).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(p) => {
            no_store(res);
            res.render(Json(poll_json(&p)));
        }
        Err(e) => login_error(res, &e, &super::middleware::request_id(depot)),
    }
}

/// Plex's `forwardUrl` in redirect mode, and where the page goes once a poll says "approved".
#[handler]
pub(crate) async fn finish(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    let login_id: String = req.query("login").unwrap_or_default();
    let result = match binding(&app, req) {
        Ok(b) if !login_id.is_empty() && login_id.len() <= 64 => {
            match app.flow.finish(&login_id, &b).await {
                Ok(outcome) => Ok((outcome, app.flow.summary(&login_id, &b).ok())),
                Err(e) => Err(e),
            }
        }
        Ok(_) => Err(LoginError::UnknownLogin),
        Err(e) => Err(e),
    };
    match result {
        Ok((FinishOutcome::Redirect { url, session }, _)) => {
            super::oidc::apply_session_cookie(&app, res, session.as_deref(), false);
            redirect(res, &url);
        }
        Ok((FinishOutcome::Page(p), summary)) => {
            let (client_name, restart_url) = summary
                .map(|s| (s.client_name, s.restart_url))
                .unwrap_or_default();
            let view = PageView {
                state: p.state.as_str(),
                login_id: &login_id,
                client_name: &client_name,
                account: p.account.as_deref().unwrap_or(""),
                restart_url: &restart_url,
                ..Default::default()
            };
            render_page(&app, req, depot, res, StatusCode::OK, view);
        }
        Err(e) => {
            let status = match e {
                LoginError::PlexUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                LoginError::Busy => StatusCode::TOO_MANY_REQUESTS,
                LoginError::UnknownLogin | LoginError::WrongBrowser => StatusCode::OK,
            };
            let state = if matches!(e, LoginError::PlexUnavailable(_) | LoginError::Busy) {
                "unavailable"
            } else {
                "expired"
            };
            let view = PageView {
                state,
                ..Default::default()
            };
            render_page(&app, req, depot, res, status, view);
        }
    }
}

/// Plex's `forwardUrl` in popup mode: the approval just happened, so check the PIN now, then show the
/// small "return to the first window" page.
#[handler]
pub(crate) async fn popup_done(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    let login_id: String = req.query("login").unwrap_or_default();
    if let Some(binding) = binding_cookie(&app, req)
        && !login_id.is_empty()
        && login_id.len() <= 64
    {
        app.flow.nudge(&login_id, &binding).await;
    }
    super::preview::small_page(&app.pages, req, depot, res, "popup-done.html");
}
