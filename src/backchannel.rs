//! Delivers OIDC Back-Channel Logout tokens to relying parties, in the background, with timeouts and a
//! bounded number of retries, so a slow or dead client never holds up the person logging out.

use std::time::Duration;

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct BackchannelNotifier {
    /// Built on first use: loading the system's root certificates costs a millisecond or two at start,
    /// and most installations never send a logout token.
    http: std::sync::Arc<std::sync::OnceLock<reqwest::Client>>,
    backoff: Duration,
}

impl BackchannelNotifier {
    pub fn new(backoff: Duration) -> Result<BackchannelNotifier, reqwest::Error> {
        Ok(BackchannelNotifier {
            http: Default::default(),
            backoff,
        })
    }

    fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        if let Some(c) = self.http.get() {
            return Ok(c.clone());
        }
        let built = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // A logout endpoint has no business redirecting us elsewhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(self.http.get_or_init(|| built).clone())
    }

    /// POSTs `logout_token` to `uri` (OIDC Back-Channel Logout §2.5) from a spawned task.
    pub fn notify(&self, client_id: String, uri: String, logout_token: String) {
        let http = match self.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the back-channel logout client");
                return;
            }
        };
        let backoff = self.backoff;
        tokio::spawn(async move {
            for attempt in 1..=ATTEMPTS {
                let result = http
                    .post(&uri)
                    .header("cache-control", "no-store")
                    .form(&[("logout_token", logout_token.as_str())])
                    .send()
                    .await;
                match result {
                    Ok(res) if res.status().is_success() => {
                        metrics::counter!("plex_oidc_backchannel_logouts_total", "result" => "delivered")
                            .increment(1);
                        tracing::info!(client_id, attempt, "back-channel logout delivered");
                        return;
                    }
                    // §2.8: 400 means the client refused the token; retrying will not change that.
                    Ok(res) if res.status().is_client_error() => {
                        metrics::counter!("plex_oidc_backchannel_logouts_total", "result" => "rejected")
                            .increment(1);
                        tracing::warn!(
                            client_id,
                            status = res.status().as_u16(),
                            "back-channel logout rejected by the client"
                        );
                        return;
                    }
                    Ok(res) => {
                        tracing::warn!(
                            client_id,
                            attempt,
                            status = res.status().as_u16(),
                            "back-channel logout failed"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(client_id, attempt, error = %e, "back-channel logout failed");
                    }
                }
                if attempt < ATTEMPTS {
                    tokio::time::sleep(backoff * attempt).await;
                }
            }
            metrics::counter!("plex_oidc_backchannel_logouts_total", "result" => "failed")
                .increment(1);
        });
    }
}
