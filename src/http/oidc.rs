//! Protocol endpoints: discovery, JWKS, authorization, token, userinfo.

use std::time::Instant;

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;

use super::error::{authorize_error, no_store, param_error_to_token, token_error, userinfo_error};
use super::page::{PageView, render_invalid, render_page};
use super::rate_limit::{Budget, too_many};
use super::{MAX_BODY_BYTES, app};
use crate::flow::{AuthorizeOutcome, LogoutOutcome, LogoutRequest};
use crate::oidc::{ClientCredentials, Params, TokenError, UserinfoError};
use crate::random::{Random, SystemRandom};

fn json_document(res: &mut Response, body: &str) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    // Browser-based relying parties read these cross-origin.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    let _ = res.write_body(body.to_owned());
}

#[handler]
pub(crate) async fn discovery(depot: &mut Depot, res: &mut Response) {
    if let Some(app) = app(depot) {
        json_document(res, app.flow.provider().discovery_json());
    }
}

#[handler]
pub(crate) async fn jwks(depot: &mut Depot, res: &mut Response) {
    if let Some(app) = app(depot) {
        json_document(res, app.flow.provider().jwks_json());
    }
}

/// Reads form parameters from the query (GET) or an urlencoded body (POST).
async fn request_params(req: &mut Request) -> Result<Params, String> {
    if req.method() == salvo::http::Method::POST {
        let is_form = req
            .content_type()
            .is_some_and(|m| m.essence_str() == "application/x-www-form-urlencoded");
        if !is_form {
            return Err("the body must be application/x-www-form-urlencoded".into());
        }
        let body = req
            .payload_with_max_size(MAX_BODY_BYTES)
            .await
            .map_err(|_| format!("the body must be at most {MAX_BODY_BYTES} bytes"))?;
        Params::from_urlencoded(body).map_err(|e| e.to_string())
    } else {
        Params::from_urlencoded(req.uri().query().unwrap_or("").as_bytes())
            .map_err(|e| e.to_string())
    }
}

#[handler]
pub(crate) async fn authorize(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    let params = match request_params(req).await {
        Ok(p) => p,
        Err(detail) => return render_invalid(&app, req, depot, res, &detail),
    };
    let provider = app.flow.provider();
    let request = match provider.parse_authorization(&params) {
        Ok(r) => r,
        Err(e) => return authorize_error(&app, req, depot, res, &e),
    };
    let session_cookie = req
        .cookie(&app.cookie.session_name)
        .map(|c| c.value().to_owned());
    let outcome = app
        .flow
        .authorize(&request, session_cookie.as_deref())
        .await;
    match outcome {
        AuthorizeOutcome::Redirect {
            url,
            session,
            clear_session,
        } => {
            apply_session_cookie(&app, res, session.as_deref(), clear_session);
            super::error::redirect(res, &url);
        }
        AuthorizeOutcome::Page {
            state,
            account,
            clear_session,
        } => {
            // A pending login too, so "use another Plex account" / "try again" can start one.
            apply_session_cookie(&app, res, None, clear_session);
            let account = account.unwrap_or_default();
            show_sign_in(
                &app,
                req,
                depot,
                res,
                request,
                &params,
                state.as_str(),
                &account,
            );
        }
        AuthorizeOutcome::SignIn { clear_session } => {
            apply_session_cookie(&app, res, None, clear_session);
            show_sign_in(&app, req, depot, res, request, &params, "ready", "");
        }
    }
}

/// Starts a pending login bound to this browser and shows the page in `state`.
#[allow(clippy::too_many_arguments)]
fn show_sign_in(
    app: &super::AppState,
    req: &Request,
    depot: &Depot,
    res: &mut Response,
    request: crate::oidc::AuthorizationRequest,
    params: &Params,
    state: &str,
    account: &str,
) {
    let ip = app.limiter.client_ip(req);
    if let Err(wait) = app.limiter.take(Budget::NewLogin, &ip) {
        tracing::warn!(client_ip = %ip, "too many sign-ins started from one address");
        too_many(res, "/authorize", wait, false);
        return;
    }
    let binding = binding_cookie(app, req).unwrap_or_else(|| SystemRandom.token(24));
    let client_name = request.client.display_name().to_owned();
    let restart_url = format!(
        "{}?{}",
        app.flow.provider().endpoints().authorization,
        params.to_query()
    );
    let login_id = match app.flow.begin(request, &binding, restart_url.clone()) {
        Ok(id) => id,
        Err(_) => {
            // Overall cap reached: like a per-client budget, "come back shortly" (429, not an outage).
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            metrics::counter!(crate::metrics::RATE_LIMITED_TOTAL, "route" => "/authorize")
                .increment(1);
            let view = PageView {
                state: "unavailable",
                client_name: &client_name,
                restart_url: &restart_url,
                ..Default::default()
            };
            render_page(app, req, depot, res, StatusCode::TOO_MANY_REQUESTS, view);
            return;
        }
    };
    set_binding_cookie(app, res, &binding);
    let view = PageView {
        state,
        login_id: &login_id,
        client_name: &client_name,
        account,
        restart_url: &restart_url,
        ..Default::default()
    };
    render_page(app, req, depot, res, StatusCode::OK, view);
}

fn cookie(
    app: &super::AppState,
    name: &str,
    value: &str,
    max_age: std::time::Duration,
) -> salvo::http::cookie::Cookie<'static> {
    use salvo::http::cookie::{Cookie, SameSite, time};
    Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .secure(app.cookie.secure)
        // Lax: Plex's forwardUrl and the relying party bring the browser back with top-level GETs,
        // which must carry it.
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(max_age.as_secs() as i64))
        .build()
}

/// Sets the sealed provider session, or removes it.
pub(crate) fn apply_session_cookie(
    app: &super::AppState,
    res: &mut Response,
    session: Option<&str>,
    clear: bool,
) {
    if let Some(value) = session {
        res.add_cookie(cookie(
            app,
            &app.cookie.session_name,
            value,
            app.cookie.session_ttl,
        ));
    } else if clear {
        res.add_cookie(cookie(
            app,
            &app.cookie.session_name,
            "",
            std::time::Duration::ZERO,
        ));
    }
}

pub(crate) fn binding_cookie(app: &super::AppState, req: &Request) -> Option<String> {
    req.cookie(&app.cookie.name)
        .map(|c| c.value().to_owned())
        .filter(|v| (16..=64).contains(&v.len()))
}

fn set_binding_cookie(app: &super::AppState, res: &mut Response, value: &str) {
    res.add_cookie(cookie(app, &app.cookie.name, value, app.cookie.max_age));
}

#[handler]
pub(crate) async fn token(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let started = Instant::now();
    let Some(app) = app(depot) else { return };
    let (grant_type, client_id, outcome) = token_response(req, &app).await;
    let (result, subject, username) = match outcome {
        Ok(body) => {
            no_store(res);
            res.render(Json(&body));
            ("success", body.subject, body.username.unwrap_or_default())
        }
        Err(e) => {
            token_error(res, &e);
            (e.code().as_str(), String::new(), String::new())
        }
    };
    metrics::counter!(crate::metrics::TOKEN_REQUESTS_TOTAL, "grant_type" => grant_type, "result" => result)
        .increment(1);
    metrics::histogram!(crate::metrics::TOKEN_DURATION).record(started.elapsed().as_secs_f64());
    crate::telemetry::audit_token(
        &client_id,
        grant_type,
        result,
        &subject,
        &username,
        started.elapsed(),
    );
}

/// Returns the grant type and claimed client id (for metrics and audit; never secret) with the outcome.
async fn token_response(
    req: &mut Request,
    app: &super::AppState,
) -> (
    &'static str,
    String,
    Result<crate::oidc::TokenResponse, TokenError>,
) {
    let ip = app.limiter.client_ip(req);
    let (credentials, form) = match client_form_unlimited(req).await {
        Ok(parts) => parts,
        Err(e) => return ("unknown", String::new(), Err(e)),
    };
    let grant_type = match form.get("grant_type") {
        Ok(Some("authorization_code")) => "authorization_code",
        Ok(Some("refresh_token")) => "refresh_token",
        _ => "other",
    };
    let client_id = credentials.client_id.clone();
    if let Err(wait) = app
        .limiter
        .take(Budget::Token, &format!("{client_id}|{ip}"))
    {
        return (grant_type, client_id, Err(TokenError::RateLimited(wait)));
    }
    let outcome = app.flow.token(&credentials, &form).await;
    (grant_type, client_id, outcome)
}

/// The client's credentials and the form of an authenticated protocol POST (token, revoke, introspect).
async fn client_form_unlimited(
    req: &mut Request,
) -> Result<(ClientCredentials, Params), TokenError> {
    let is_form = req
        .content_type()
        .is_some_and(|m| m.essence_str() == "application/x-www-form-urlencoded");
    if !is_form {
        return Err(TokenError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        ));
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .payload_with_max_size(MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            TokenError::InvalidRequest(format!("the body must be at most {MAX_BODY_BYTES} bytes"))
        })?;
    let form = Params::from_urlencoded(body).map_err(param_error_to_token)?;
    let credentials = ClientCredentials::from_request(authorization.as_deref(), &form)?;
    Ok((credentials, form))
}

/// As [`client_form_unlimited`], spending one request of the client's budget.
async fn client_form(
    req: &mut Request,
    app: &super::AppState,
) -> Result<(ClientCredentials, Params), TokenError> {
    let ip = app.limiter.client_ip(req);
    let (credentials, form) = client_form_unlimited(req).await?;
    app.limiter
        .take(Budget::Token, &format!("{}|{ip}", credentials.client_id))
        .map_err(TokenError::RateLimited)?;
    Ok((credentials, form))
}

/// RFC 7009 token revocation.
#[handler]
pub(crate) async fn revoke(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    let result = match client_form(req, &app).await {
        Ok((credentials, form)) => app.flow.provider().revoke(&credentials, &form),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            no_store(res);
            res.status_code(StatusCode::OK);
        }
        Err(e) => token_error(res, &e),
    }
}

/// RFC 7662 token introspection.
#[handler]
pub(crate) async fn introspect(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    let result = match client_form(req, &app).await {
        Ok((credentials, form)) => app.flow.provider().introspect(&credentials, &form),
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => {
            no_store(res);
            res.render(Json(body));
        }
        Err(e) => token_error(res, &e),
    }
}

/// RP-Initiated Logout 1.0 (`end_session_endpoint`).
#[handler]
pub(crate) async fn logout(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    // A repeated parameter is refused (RFC 6749 §3.1), not read as absent: otherwise a doubled
    // redirect URI or hint would still end the session, just without saying where to go.
    let params = request_params(req).await.and_then(|p| {
        p.check_unique(&[
            "id_token_hint",
            "client_id",
            "post_logout_redirect_uri",
            "state",
        ])
        .map_err(|e| e.to_string())
        .map(|()| p)
    });
    let params = match params {
        Ok(p) => p,
        Err(detail) => return render_invalid(&app, req, depot, res, &detail),
    };
    let get = |name: &str| params.get(name).ok().flatten().map(str::to_owned);
    let request = LogoutRequest {
        id_token_hint: get("id_token_hint"),
        client_id: get("client_id"),
        post_logout_redirect_uri: get("post_logout_redirect_uri"),
        state: get("state"),
    };
    let session_cookie = req
        .cookie(&app.cookie.session_name)
        .map(|c| c.value().to_owned());
    match app.flow.logout(&request, session_cookie.as_deref()) {
        Ok(outcome) => {
            apply_session_cookie(&app, res, None, true);
            match outcome {
                LogoutOutcome::Redirect(url) => super::error::redirect(res, &url),
                LogoutOutcome::SignedOut => {
                    let view = PageView {
                        state: "signed-out",
                        ..Default::default()
                    };
                    render_page(&app, req, depot, res, StatusCode::OK, view);
                }
            }
        }
        Err(e) => {
            tracing::info!(error = %e, "refused a logout request");
            render_invalid(&app, req, depot, res, &e.to_string());
        }
    }
}

#[handler]
pub(crate) async fn userinfo(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim().to_owned())
        });
    // RFC 6750 §2.2: a form body may carry the token instead of the header.
    let mut body_token = None;
    if req.method() == salvo::http::Method::POST
        && req
            .content_type()
            .is_some_and(|m| m.essence_str() == "application/x-www-form-urlencoded")
    {
        match req.payload_with_max_size(MAX_BODY_BYTES).await {
            Ok(body) => match Params::from_urlencoded(body) {
                Ok(form) => match form.get("access_token") {
                    Ok(t) => body_token = t.map(str::to_owned),
                    Err(e) => {
                        return userinfo_error(
                            res,
                            Some(&UserinfoError::InvalidRequest(e.to_string())),
                        );
                    }
                },
                Err(e) => {
                    return userinfo_error(
                        res,
                        Some(&UserinfoError::InvalidRequest(e.to_string())),
                    );
                }
            },
            Err(_) => {
                return userinfo_error(
                    res,
                    Some(&UserinfoError::InvalidRequest(
                        "the body is too large".into(),
                    )),
                );
            }
        }
    }
    let access_token = match (header_token, body_token) {
        (Some(_), Some(_)) => {
            return userinfo_error(
                res,
                Some(&UserinfoError::InvalidRequest(
                    "the access token was given twice".into(),
                )),
            );
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return userinfo_error(res, None),
    };
    match app.flow.provider().userinfo(&access_token) {
        Ok(claims) => {
            no_store(res);
            res.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            res.render(Json(claims));
        }
        Err(e) => userinfo_error(res, Some(&e)),
    }
}
