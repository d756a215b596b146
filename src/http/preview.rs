//! `plex-oidc preview`: every state of the page with sample data, so operators can restyle safely.

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;

use super::page::{PageView, render_template};
use super::pages;

/// The states the page can be in, in the order a sign-in meets them.
pub const STATES: [&str; 9] = [
    "ready",
    "waiting",
    "checking",
    "redirecting",
    "denied",
    "unavailable",
    "expired",
    "signed-out",
    "invalid",
];

#[handler]
pub(crate) async fn index(res: &mut Response) {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>plex-oidc preview</title></head><body><h1>plex-oidc preview</h1><ul>",
    );
    for state in STATES {
        html.push_str(&format!("<li><a href=\"/{state}\">{state}</a></li>"));
    }
    html.push_str("<li><a href=\"/login/popup-wait\">popup-wait</a></li><li><a href=\"/login/popup-done\">popup-done</a></li></ul></body></html>");
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let _ = res.write_body(html);
}

#[handler]
pub(crate) async fn state_page(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(pages) = pages(depot) else { return };
    let name: String = req.param("state").unwrap_or_default();
    let Some(state) = STATES.iter().find(|s| **s == name) else {
        res.status_code(StatusCode::NOT_FOUND);
        return;
    };
    let view = PageView {
        state,
        client_name: "Grafana",
        account: "alice",
        detail: "redirect_uri \"https://grafana.example.com/wrong\" is not registered for client \"grafana\"",
        ..Default::default()
    };
    render_template(&pages, req, depot, res, StatusCode::OK, "login.html", view);
}

/// A page of the popup window (no state, no login), from the same template engine.
pub(crate) fn small_page(
    pages: &super::Pages,
    req: &Request,
    depot: &Depot,
    res: &mut Response,
    template: &str,
) {
    render_template(
        pages,
        req,
        depot,
        res,
        StatusCode::OK,
        template,
        PageView::default(),
    );
}

#[handler]
pub(crate) async fn popup_done(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    if let Some(pages) = pages(depot) {
        small_page(&pages, req, depot, res, "popup-done.html");
    }
}

/// Shown by the popup opened before Plex's URL was known; used by the service and the preview alike.
#[handler]
pub(crate) async fn popup_wait(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    if let Some(pages) = pages(depot) {
        small_page(&pages, req, depot, res, "popup-wait.html");
    }
}
