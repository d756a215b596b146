//! Probes and the metrics endpoint: cheap and unauthenticated.
//!
//! `/healthz` answers while the process serves (liveness: restart me if this fails). `/readyz` says
//! whether sign-ins can work (readiness: send me traffic), naming each check so an operator sees which
//! one failed.

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;
use serde_json::{Map, Value, json};

use super::app;
use crate::telemetry::Readiness;

#[handler]
pub(crate) async fn healthz(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.render(Text::Plain("ok"));
}

/// Ready when the configuration is loaded (it is, or we would not serve), the signing key made a
/// signature that verified at start, the grant store's journal takes writes, and the state directory
/// still takes writes (a full or read-only disk loses persisted state).
#[handler]
pub(crate) async fn readyz(depot: &mut Depot, res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let Some(app) = app(depot) else {
        res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        res.render(Json(
            json!({ "status": "not ready", "failing": ["config"] }),
        ));
        return;
    };
    let keys = depot.get_typed::<Readiness>().is_ok_and(|r| r.keys_usable);
    let store = app.flow.provider().store().writable();
    let probe = app.state_dir.join(".readyz");
    let state_dir = tokio::fs::write(&probe, b"ok").await.is_ok();
    let checks = [
        ("config", true, "loaded"),
        (
            "keys",
            keys,
            "the signing key did not make a verifiable signature at start",
        ),
        ("store", store, "the grant journal does not take writes"),
        (
            "state_dir",
            state_dir,
            "the state directory is not writable",
        ),
    ];
    let (status, body) = report(&checks);
    res.status_code(status);
    res.render(Json(body));
}

/// `{"status":"ready","checks":{"keys":"ok",...}}`, or 503 with the failing checks named first.
fn report(checks: &[(&str, bool, &str)]) -> (StatusCode, Value) {
    let failing: Vec<&str> = checks
        .iter()
        .filter(|(_, ok, _)| !ok)
        .map(|(name, _, _)| *name)
        .collect();
    let details: Map<String, Value> = checks
        .iter()
        .map(|(name, ok, problem)| {
            let detail = if *ok { "ok" } else { problem };
            ((*name).to_owned(), Value::from(detail))
        })
        .collect();
    if failing.is_empty() {
        (
            StatusCode::OK,
            json!({ "status": "ready", "checks": details }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "not ready", "failing": failing, "checks": details }),
        )
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
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let _ = res.write_body(render());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_checks_passing_is_ready() {
        let (status, body) = report(&[("config", true, "x"), ("keys", true, "y")]);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({ "status": "ready", "checks": { "config": "ok", "keys": "ok" } })
        );
    }

    #[test]
    fn a_failing_check_is_named_with_its_problem() {
        let (status, body) = report(&[
            ("config", true, "x"),
            ("store", false, "the grant journal does not take writes"),
        ]);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["failing"], json!(["store"]));
        assert_eq!(
            body["checks"]["store"],
            "the grant journal does not take writes"
        );
        assert_eq!(body["checks"]["config"], "ok");
    }
}
