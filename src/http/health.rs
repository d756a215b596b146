//! Probes and the metrics endpoint: cheap and unauthenticated.

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;

use super::app;

#[handler]
pub(crate) async fn healthz(res: &mut Response) {
    res.render(Text::Plain("ok"));
}

/// Ready when the configuration is loaded (it is, or we would not serve), the keys loaded at start, and
/// the state directory still takes writes (a full or read-only disk loses persisted state).
#[handler]
pub(crate) async fn readyz(depot: &mut Depot, res: &mut Response) {
    let Some(app) = app(depot) else {
        res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        return;
    };
    let probe = app.state_dir.join(".readyz");
    let writable = tokio::fs::write(&probe, b"ok").await.is_ok();
    if writable {
        res.render(Text::Json(r#"{"status":"ready"}"#));
    } else {
        res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        res.render(Text::Json(
            r#"{"status":"not ready","reason":"state_dir is not writable"}"#,
        ));
    }
}

#[handler]
pub(crate) async fn metrics(depot: &mut Depot, res: &mut Response) {
    let Some(render) = app(depot).and_then(|a| a.metrics.clone()) else {
        res.status_code(StatusCode::NOT_FOUND);
        return;
    };
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    let _ = res.write_body(render());
}
