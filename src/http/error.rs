//! The one place typed errors become HTTP responses. Every variant is matched by name, so a new error
//! does not compile until someone decides what the client sees.

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;
use serde_json::json;

use crate::flow::LoginError;
use crate::oidc::{ErrorCode, ParamError, TokenError, UserinfoError};

/// RFC 6749 §5.2 JSON error, 401 + `WWW-Authenticate` for failed Basic authentication.
pub(crate) fn token_error(res: &mut Response, err: &TokenError) {
    if let TokenError::RateLimited(wait) = err {
        return super::rate_limit::too_many(res, "/token", *wait, true);
    }
    let status = match err {
        TokenError::InvalidClient { used_basic, .. } => {
            if *used_basic {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"plex-oidc\", charset=\"UTF-8\""),
                );
            }
            StatusCode::UNAUTHORIZED
        }
        TokenError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
        TokenError::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        TokenError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        TokenError::InvalidRequest(_)
        | TokenError::InvalidGrant(_)
        | TokenError::UnauthorizedClient(_)
        | TokenError::UnsupportedGrantType(_)
        | TokenError::InvalidScope(_) => StatusCode::BAD_REQUEST,
    };
    if let TokenError::Server(detail) = err {
        tracing::error!(detail, "token endpoint failed");
    }
    let description = match err {
        TokenError::Server(_) => "internal error",
        other => other.description(),
    };
    no_store(res);
    res.status_code(status);
    res.render(Json(json!({
        "error": err.code().as_str(),
        "error_description": description,
    })));
}

/// RFC 6750 §3: `WWW-Authenticate: Bearer` with the error code, no body details beyond the code.
pub(crate) fn userinfo_error(res: &mut Response, err: Option<&UserinfoError>) {
    let (status, challenge) = match err {
        // §3.1: a request without any token gets a bare challenge.
        None => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"plex-oidc\"".to_owned(),
        ),
        Some(UserinfoError::InvalidToken(d)) => (
            StatusCode::UNAUTHORIZED,
            format!(
                "Bearer realm=\"plex-oidc\", error=\"invalid_token\", error_description=\"{d}\""
            ),
        ),
        Some(UserinfoError::InvalidRequest(d)) => (
            StatusCode::BAD_REQUEST,
            format!(
                "Bearer realm=\"plex-oidc\", error=\"invalid_request\", error_description=\"{d}\""
            ),
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    no_store(res);
    res.status_code(status);
    match err {
        Some(e) => res.render(Json(json!({ "error": e.code().as_str(), "error_description": e.to_string() }))),
        None => res.render(Json(json!({ "error": ErrorCode::InvalidToken.as_str(), "error_description": "no access token was given" }))),
    }
}

/// The page API's errors: JSON that always names the state the page should show.
pub(crate) fn login_error(res: &mut Response, err: &LoginError, request_id: &str) {
    let (status, state, message) = match err {
        LoginError::UnknownLogin => (
            StatusCode::NOT_FOUND,
            "expired",
            "This sign-in has expired. Start again.".to_owned(),
        ),
        LoginError::WrongBrowser => (
            StatusCode::FORBIDDEN,
            "expired",
            "This sign-in was started in another browser. Start again here.".to_owned(),
        ),
        LoginError::Busy => (
            StatusCode::TOO_MANY_REQUESTS,
            "unavailable",
            "Too many sign-ins are in progress. Try again in a moment.".to_owned(),
        ),
        LoginError::PlexUnavailable(e) => {
            tracing::warn!(error = %e, "Plex unavailable while starting a sign-in");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Plex is unavailable. Try again in a moment.".to_owned(),
            )
        }
    };
    no_store(res);
    res.status_code(status);
    res.render(Json(
        json!({ "state": state, "message": message, "request_id": request_id }),
    ));
}

/// A malformed page-API request (not JSON, missing field, too big).
pub(crate) fn login_bad_request(res: &mut Response, message: &str) {
    no_store(res);
    res.status_code(StatusCode::BAD_REQUEST);
    res.render(Json(json!({ "state": "invalid", "message": message })));
}

pub(crate) fn param_error_to_token(e: ParamError) -> TokenError {
    TokenError::InvalidRequest(e.to_string())
}

pub(crate) fn no_store(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Authorization errors: a page for the person when the client or its redirect URI cannot be trusted
/// (RFC 6749 §4.1.2.1), otherwise a redirect to the client with `error`, `state` and `iss`.
pub(crate) fn authorize_error(
    app: &super::AppState,
    req: &Request,
    depot: &Depot,
    res: &mut Response,
    err: &crate::oidc::AuthorizeError,
) {
    use crate::oidc::AuthorizeError as E;
    match err {
        E::Redirect {
            redirect_uri,
            state,
            code,
            description,
        } => {
            let url = app.flow.provider().error_redirect(
                redirect_uri,
                state.as_deref(),
                *code,
                description,
            );
            redirect(res, &url);
        }
        E::MissingClientId
        | E::UnknownClient(_)
        | E::MissingRedirectUri(_)
        | E::UnregisteredRedirectUri { .. }
        | E::MalformedRequest(_) => {
            tracing::info!(error = %err, "refused an authorization request");
            super::page::render_invalid(app, req, depot, res, &err.to_string());
        }
    }
}

/// 303 See Other: the browser follows with a GET whatever method brought it here.
pub(crate) fn redirect(res: &mut Response, url: &str) {
    match HeaderValue::from_str(url) {
        Ok(v) => {
            res.status_code(StatusCode::SEE_OTHER);
            res.headers_mut().insert(header::LOCATION, v);
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Err(_) => {
            tracing::error!("a redirect URL was not a valid header value");
            res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
            res.render(Text::Plain("internal error"));
        }
    }
}
