//! Logging setup: one tracing subscriber for the process, text for people or JSON for collectors.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber. `RUST_LOG` wins over the configured level so an operator can turn up
/// logging without editing the config. Calling it again (tests) leaves the first subscriber in place.
pub fn init(settings: &LogSettings) {
    let filter = filter(
        std::env::var("RUST_LOG").ok().as_deref(),
        settings.level.as_deref(),
    );
    // Logs go to stderr so stdout stays free for command output.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_installed = match settings.format {
        LogFormat::Text => builder.compact().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The first usable of: `RUST_LOG`, the configured level, "info". An unusable `RUST_LOG` is reported on
/// stderr rather than silently ignored, since no logger exists yet to report it.
fn filter(env: Option<&str>, configured: Option<&str>) -> EnvFilter {
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

#[cfg(test)]
mod tests {
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
}
