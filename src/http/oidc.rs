//! Protocol endpoints: discovery, JWKS, authorization, token, userinfo.

use std::time::Instant;

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;

use super::error::{authorize_error, no_store, param_error_to_token, token_error, userinfo_error};
use super::page::{PageView, render_page};
use super::{MAX_BODY_BYTES, app};
use crate::oidc::{ClientCredentials, ErrorCode, Params, Prompt, TokenError, UserinfoError};
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
        Params::from_urlencoded(req.uri().query().unwrap_or("").as_bytes()).map_err(|e| e.to_string())
    }
}

#[handler]
pub(crate) async fn authorize(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else { return };
    let params = match request_params(req).await {
        Ok(p) => p,
        Err(detail) => {
            let view = PageView {
                state: "invalid",
                detail: &detail,
                ..Default::default()
            };
            render_page(&app, req, depot, res, StatusCode::BAD_REQUEST, view);
            return;
        }
    };
    let provider = app.flow.provider();
    let request = match provider.parse_authorization(&params) {
        Ok(r) => r,
        Err(e) => return authorize_error(&app, req, depot, res, &e),
    };
    if request.prompt == Prompt::None {
        // No provider session exists that could answer without showing the page.
        let url = provider.error_redirect(
            &request.redirect_uri,
            request.state.as_deref(),
            ErrorCode::LoginRequired,
            "the user must sign in",
        );
        super::error::redirect(res, &url);
        return;
    }
    let binding = binding_cookie(&app, req).unwrap_or_else(|| SystemRandom.token(24));
    let client_name = request.client.display_name().to_owned();
    let login_id = app.flow.begin(request, &binding);
    set_binding_cookie(&app, res, &binding);
    let view = PageView {
        state: "ready",
        login_id: &login_id,
        client_name: &client_name,
        ..Default::default()
    };
    render_page(&app, req, depot, res, StatusCode::OK, view);
}

pub(crate) fn binding_cookie(app: &super::AppState, req: &Request) -> Option<String> {
    req.cookie(&app.cookie.name)
        .map(|c| c.value().to_owned())
        .filter(|v| (16..=64).contains(&v.len()))
}

fn set_binding_cookie(app: &super::AppState, res: &mut Response, value: &str) {
    use salvo::http::cookie::{Cookie, SameSite, time};
    let cookie = Cookie::build((app.cookie.name.clone(), value.to_owned()))
        .path("/")
        .http_only(true)
        .secure(app.cookie.secure)
        // Lax: Plex's forwardUrl brings the browser back with a top-level GET, which must carry it.
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(app.cookie.max_age.as_secs() as i64))
        .build();
    res.add_cookie(cookie);
}

#[handler]
pub(crate) async fn token(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let started = Instant::now();
    let Some(app) = app(depot) else { return };
    let (grant_type, result) = match token_response(req, &app).await {
        Ok((grant_type, body)) => {
            no_store(res);
            res.render(Json(body));
            (grant_type, "success")
        }
        Err((grant_type, e)) => {
            token_error(res, &e);
            (grant_type, e.code().as_str())
        }
    };
    metrics::counter!("plex_oidc_token_requests_total", "grant_type" => grant_type, "result" => result)
        .increment(1);
    metrics::histogram!("plex_oidc_token_duration_seconds").record(started.elapsed().as_secs_f64());
}

async fn token_response(
    req: &mut Request,
    app: &super::AppState,
) -> Result<(&'static str, crate::oidc::TokenResponse), (&'static str, TokenError)> {
    let is_form = req
        .content_type()
        .is_some_and(|m| m.essence_str() == "application/x-www-form-urlencoded");
    if !is_form {
        return Err((
            "unknown",
            TokenError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded".into(),
            ),
        ));
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req.payload_with_max_size(MAX_BODY_BYTES).await.map_err(|_| {
        (
            "unknown",
            TokenError::InvalidRequest(format!("the body must be at most {MAX_BODY_BYTES} bytes")),
        )
    })?;
    let form = Params::from_urlencoded(body).map_err(|e| ("unknown", param_error_to_token(e)))?;
    let grant_type = match form.get("grant_type") {
        Ok(Some("authorization_code")) => "authorization_code",
        Ok(Some("refresh_token")) => "refresh_token",
        _ => "other",
    };
    let credentials = ClientCredentials::from_request(authorization.as_deref(), &form)
        .map_err(|e| (grant_type, e))?;
    app.flow
        .provider()
        .token(&credentials, &form)
        .map(|r| (grant_type, r))
        .map_err(|e| (grant_type, e))
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
                    return userinfo_error(res, Some(&UserinfoError::InvalidRequest(e.to_string())));
                }
            },
            Err(_) => {
                return userinfo_error(
                    res,
                    Some(&UserinfoError::InvalidRequest("the body is too large".into())),
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
