//! What every response gets: a request id (echoed in `X-Request-Id`, on error pages, and on every log
//! line written while serving it), security headers, and the HTTP metrics.

use std::time::Instant;

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;
use tracing::Instrument as _;

use crate::metrics::{HTTP_REQUEST_DURATION, HTTP_REQUESTS_TOTAL};

/// Only trusted pages of our own run script, and nothing may frame them (clickjacking on a login page).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Known route templates: metric labels stay bounded whatever paths clients send.
const ROUTES: [&str; 17] = [
    "/revoke",
    "/introspect",
    "/logout",
    "/.well-known/openid-configuration",
    "/jwks",
    "/authorize",
    "/token",
    "/userinfo",
    "/login/start",
    "/login/poll",
    "/login/continue",
    "/login/popup-done",
    "/login/popup-wait",
    "/healthz",
    "/readyz",
    "/metrics",
    "/assets/*",
];

pub(crate) struct RequestId(pub String);

pub(crate) fn request_id(depot: &Depot) -> String {
    depot
        .get_typed::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

pub(crate) struct Common {
    base_path: String,
}

impl Common {
    pub(crate) fn new(base_path: &str) -> Common {
        Common {
            base_path: base_path.trim_end_matches('/').to_owned(),
        }
    }

    fn route(&self, path: &str) -> &'static str {
        let path = path.strip_prefix(self.base_path.as_str()).unwrap_or(path);
        if path.starts_with("/assets/") {
            return "/assets/*";
        }
        ROUTES
            .iter()
            .find(|r| **r == path)
            .copied()
            .unwrap_or("unmatched")
    }
}

#[salvo::async_trait]
impl Handler for Common {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let started = Instant::now();
        let route = self.route(req.uri().path());
        let id = incoming_request_id(req).unwrap_or_else(new_request_id);
        depot.insert_typed(RequestId(id.clone()));
        // Never the raw path or query: those can carry a login id or, from a careless client, a code.
        let span = tracing::info_span!("request", request_id = %id, route);
        ctrl.call_next(req, depot, res).instrument(span).await;

        let headers = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&id) {
            headers.insert("x-request-id", v);
        }
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        // Our page opens Plex in a popup; allow-popups keeps that working while isolating us from openers.
        headers.insert(
            "cross-origin-opener-policy",
            HeaderValue::from_static("same-origin-allow-popups"),
        );
        let status = res.status_code.unwrap_or(StatusCode::OK);
        let elapsed = started.elapsed();
        metrics::counter!(
            HTTP_REQUESTS_TOTAL,
            "route" => route,
            "status" => status_label(status),
        )
        .increment(1);
        metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route).record(elapsed.as_secs_f64());
        // Error pages show the request id, so what a person screenshots can be found at the default
        // level; scanners' 404s and everything that went well only when asked for.
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let status = status.as_u16();
        match status {
            500.. => tracing::warn!(request_id = %id, route, status, elapsed_ms, "request failed"),
            404 | 405 => tracing::debug!(request_id = %id, route, status, "request refused"),
            400.. => tracing::info!(request_id = %id, route, status, elapsed_ms, "request refused"),
            _ => tracing::debug!(request_id = %id, route, status, elapsed_ms, "request served"),
        }
    }
}

/// A reverse proxy's id is reused so logs line up across hops, if it looks like an id and not an attack.
fn incoming_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get("x-request-id")?.to_str().ok()?;
    (!v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'))
    .then(|| v.to_owned())
}

/// Unique, not secret: a random per-process prefix and a counter (no entropy drawn per request).
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        crate::random::Random::fill(&crate::random::SystemRandom, &mut b);
        u32::from_le_bytes(b)
    });
    format!(
        "{prefix:08x}{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed) as u32
    )
}

fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        204 => "204",
        302 => "302",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Salvo's default error page names the framework; ours is a plain sentence with the request id, so a
/// screenshot can be matched to a log line.
#[handler]
pub(crate) async fn plain_errors(depot: &Depot, res: &mut Response, ctrl: &mut FlowCtrl) {
    let status = res.status_code.unwrap_or(StatusCode::NOT_FOUND);
    let text = match status {
        StatusCode::NOT_FOUND => "not found",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
        s if s.is_server_error() => "internal error",
        _ => "bad request",
    };
    let id = request_id(depot);
    if id.is_empty() {
        res.render(Text::Plain(text));
    } else {
        res.render(Text::Plain(format!("{text} (request id {id})\n")));
    }
    ctrl.skip_rest();
}
