//! The one page people see, in whichever state the request calls for.

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;

use super::Pages;
use super::middleware::request_id;

/// Values from the config that every page shows.
#[derive(Debug, Clone)]
pub struct PageSettings {
    pub title: String,
    pub product: String,
    pub server_name: String,
    pub login_mode: &'static str,
    pub logo_url: String,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PageView<'a> {
    pub state: &'a str,
    pub login_id: &'a str,
    pub client_name: &'a str,
    pub account: &'a str,
    pub detail: &'a str,
    /// Where "start again" goes once the login expired (the original authorization request).
    pub restart_url: &'a str,
}

pub(crate) fn language(pages: &Pages, req: &Request) -> String {
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    pages.assets.pick_language(accept).to_owned()
}

pub(crate) fn render_template(
    pages: &Pages,
    req: &Request,
    depot: &Depot,
    res: &mut Response,
    status: StatusCode,
    template: &str,
    view: PageView<'_>,
) {
    let lang = language(pages, req);
    let request_id = request_id(depot);
    let p = &pages.settings;
    let vars = [
        ("title", p.title.as_str()),
        ("product", p.product.as_str()),
        ("server_name", p.server_name.as_str()),
        ("login_mode", p.login_mode),
        ("logo_url", p.logo_url.as_str()),
        ("state", view.state),
        ("login_id", view.login_id),
        ("client_name", view.client_name),
        ("account", view.account),
        ("detail", view.detail),
        ("restart_url", view.restart_url),
        ("request_id", request_id.as_str()),
    ];
    match pages.assets.render(template, &lang, &vars) {
        Some(html) => {
            res.status_code(status);
            let headers = res.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            // The page carries a login id: never cache it, anywhere.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            let _ = res.write_body(html);
        }
        None => {
            tracing::error!(template, "page template missing");
            res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
            res.render(Text::Plain("internal error"));
        }
    }
}

pub(crate) fn render_page(
    app: &super::AppState,
    req: &Request,
    depot: &Depot,
    res: &mut Response,
    status: StatusCode,
    view: PageView<'_>,
) {
    render_template(&app.pages, req, depot, res, status, "login.html", view);
}

/// The "this request cannot be accepted" page, 400, with the operator-facing detail and the request id.
pub(crate) fn render_invalid(
    app: &super::AppState,
    req: &Request,
    depot: &Depot,
    res: &mut Response,
    detail: &str,
) {
    let view = PageView {
        state: "invalid",
        detail,
        ..Default::default()
    };
    render_page(app, req, depot, res, StatusCode::BAD_REQUEST, view);
}
