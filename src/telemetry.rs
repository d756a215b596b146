//! Logging setup: one tracing subscriber for the process, text for people or JSON for collectors; and
//! the facts the readiness probe reports that only startup can establish.
//!
//! Every HTTP request runs in a `request` span carrying `request_id` and `route`, so each line logged
//! while serving it names the request (JSON: under `span`). Sign-in outcomes and issued tokens are
//! logged as audit events with target `plex_oidc::audit`: `RUST_LOG=warn,plex_oidc::audit=info` keeps
//! only those.

use std::io::IsTerminal as _;
use std::time::Duration;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, LogSettings};

const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber. `RUST_LOG` wins over the configured level so an operator can turn up
/// logging without editing the config. Calling it again (tests) leaves the first subscriber in place.
pub fn init(settings: &LogSettings) {
    let filter = filter(
        std::env::var("RUST_LOG").ok().as_deref(),
        settings.level.as_deref(),
    );
    // Logs go to stderr so stdout stays free for command output; colours only for a person at a
    // terminal, never into journald or a log file.
    let ansi = std::io::stderr().is_terminal();
    let _already_installed = subscriber(filter, settings.format, ansi, std::io::stderr).try_init();
}

/// The subscriber `init` installs, writing to `writer` (tests capture it in a buffer).
pub fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.compact().finish()),
        // The request span's fields once, under "span"; the list of all spans would repeat them.
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// The first usable of: `RUST_LOG`, the configured level, "info". An unusable `RUST_LOG` is reported on
/// stderr rather than silently ignored, since no logger exists yet to report it.
pub fn filter(env: Option<&str>, configured: Option<&str>) -> EnvFilter {
    if let Some(env) = env.filter(|s| !s.trim().is_empty()) {
        match EnvFilter::try_new(env) {
            Ok(filter) => return filter,
            Err(e) => eprintln!("plex-oidc: ignoring RUST_LOG={env:?} ({e})"),
        }
    }
    configured
        .and_then(|level| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER))
}

/// The audit event for a token request: which client got tokens for whom (or was refused), and how
/// long it took; never a token, code or secret. `plex_user_id`/`plex_username` are empty when unknown.
pub fn audit_token(
    client_id: &str,
    grant_type: &str,
    result: &str,
    plex_user_id: &str,
    plex_username: &str,
    duration: Duration,
) {
    tracing::info!(
        target: "plex_oidc::audit",
        event = "token",
        client_id,
        grant_type,
        result,
        plex_user_id,
        plex_username,
        duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    );
}

/// What startup found out that `/readyz` reports (the rest it checks on each probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The signing key made a signature that verified against the published key set.
    pub keys_usable: bool,
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn rust_log_wins_over_the_configured_level() {
        assert_eq!(filter(Some("warn"), Some("debug")).to_string(), "warn");
    }

    #[test]
    fn the_configured_level_applies_without_rust_log() {
        assert_eq!(
            filter(None, Some("info,plex_oidc=debug")).to_string(),
            "plex_oidc=debug,info"
        );
        assert_eq!(filter(Some("  "), Some("debug")).to_string(), "debug");
    }

    #[test]
    fn info_is_the_default() {
        assert_eq!(filter(None, None).to_string(), "info");
    }

    #[test]
    fn an_unusable_rust_log_falls_back_to_the_configured_level() {
        assert_eq!(
            filter(Some("plex_oidc=loudest"), Some("error")).to_string(),
            "error"
        );
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    /// Logs an audit event inside a request span, as a request handler would.
    fn log_in_a_request(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let subscriber = subscriber(EnvFilter::new("info"), format, false, buffer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let id = "0123abcd".to_owned();
            let span = tracing::info_span!("request", request_id = %id, route = "/token");
            let _entered = span.enter();
            tracing::info!(target: "plex_oidc::audit", event = "login", result = "success", "audit");
            tracing::debug!("filtered out at info");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_carry_the_request_span_and_the_event_fields() {
        let out = log_in_a_request(LogFormat::Json);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["span"]["request_id"], "0123abcd", "{line}");
        assert_eq!(line["span"]["route"], "/token", "{line}");
        assert_eq!(line["target"], "plex_oidc::audit");
        assert_eq!(line["event"], "login", "flattened event fields: {line}");
        assert_eq!(line["result"], "success");
        assert_eq!(line["level"], "INFO");
    }

    #[test]
    fn the_token_audit_event_names_client_user_result_and_duration() {
        let buffer = Buffer::default();
        let subscriber = subscriber(
            EnvFilter::new("info"),
            LogFormat::Json,
            false,
            buffer.clone(),
        );
        tracing::subscriber::with_default(subscriber, || {
            audit_token(
                "grafana",
                "authorization_code",
                "success",
                "24810035",
                "bob",
                Duration::from_micros(2500),
            );
        });
        let bytes = buffer.0.lock().unwrap().clone();
        let line: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(line["target"], "plex_oidc::audit");
        assert_eq!(line["event"], "token");
        assert_eq!(line["client_id"], "grafana");
        assert_eq!(line["grant_type"], "authorization_code");
        assert_eq!(line["result"], "success");
        assert_eq!(line["plex_user_id"], "24810035");
        assert_eq!(line["plex_username"], "bob");
        assert_eq!(line["duration_ms"], 2);
    }

    #[test]
    fn text_lines_name_the_request_span() {
        let out = log_in_a_request(LogFormat::Text);
        assert!(out.contains("request_id=0123abcd"), "{out}");
        assert!(
            out.contains("result=\"success\"") || out.contains("result=success"),
            "{out}"
        );
        assert!(!out.contains("filtered out"), "{out}");
    }
}
