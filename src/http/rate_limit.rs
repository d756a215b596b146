//! Per-client request budgets (token buckets) and the client's address as far as it can be trusted.
//! Over budget: 429 with `Retry-After`, counted in `plex_oidc_rate_limited_total{route}`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use quick_cache::sync::Cache;
use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;
use serde_json::json;

use crate::clock::Clock;
use crate::config::{IpNetwork, LimitsSettings};

/// Buckets kept at once; the least used are evicted, which only ever forgives a client.
const BUCKETS: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Budget {
    /// /authorize and the page API, per client IP.
    Login,
    /// Starting a pending login, per client IP.
    NewLogin,
    /// /token, /revoke, /introspect, per client_id and IP.
    Token,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: SystemTime,
}

struct Rate {
    capacity: f64,
    per_second: f64,
}

pub struct RateLimiter {
    login: Rate,
    new_login: Rate,
    token: Rate,
    trusted_proxies: Vec<IpNetwork>,
    client_ip_header: String,
    clock: Arc<dyn Clock>,
    buckets: Cache<(Budget, String), Arc<Mutex<Bucket>>>,
}

impl RateLimiter {
    pub fn new(limits: &LimitsSettings, clock: Arc<dyn Clock>) -> RateLimiter {
        let per_minute = |n: u32| Rate {
            // A burst of half a minute's budget: a page that reloads or polls twice is never punished.
            capacity: (f64::from(n) / 2.0).max(10.0),
            per_second: f64::from(n) / 60.0,
        };
        RateLimiter {
            login: per_minute(limits.login_requests_per_minute),
            new_login: Rate {
                capacity: f64::from(limits.new_logins_per_ip),
                per_second: f64::from(limits.new_logins_per_ip) / 600.0,
            },
            token: per_minute(limits.token_requests_per_minute),
            trusted_proxies: limits.trusted_proxies.clone(),
            client_ip_header: limits.client_ip_header.clone(),
            clock,
            buckets: Cache::new(BUCKETS),
        }
    }

    /// Takes one request from `key`'s budget, or says how long until one is available.
    pub(crate) fn take(&self, budget: Budget, key: &str) -> Result<(), Duration> {
        let rate = match budget {
            Budget::Login => &self.login,
            Budget::NewLogin => &self.new_login,
            Budget::Token => &self.token,
        };
        let now = self.clock.now();
        let bucket = self
            .buckets
            .get_or_insert_with(&(budget, key.to_owned()), || {
                Ok::<_, std::convert::Infallible>(Arc::new(Mutex::new(Bucket {
                    tokens: rate.capacity,
                    updated: now,
                })))
            })
            .unwrap_or_else(|e| match e {});
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now
            .duration_since(b.updated)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_second).min(rate.capacity);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / rate.per_second;
            Err(Duration::from_secs_f64(wait.clamp(1.0, 3600.0)))
        }
    }

    /// The client's address as a budget key: the peer's, unless the peer is a trusted proxy that names
    /// the client. IPv6 clients are keyed by their /64, which one household or host controls whole.
    pub(crate) fn client_ip(&self, req: &Request) -> String {
        budget_key(self.client_addr(req))
    }

    fn client_addr(&self, req: &Request) -> Option<IpAddr> {
        let peer = req.remote_addr().ip()?;
        let trusted = |ip: IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(peer) {
            return Some(peer);
        }
        let Some(value) = req
            .headers()
            .get(self.client_ip_header.as_str())
            .and_then(|v| v.to_str().ok())
        else {
            return Some(peer);
        };
        // X-Forwarded-For grows to the right; the first hop from the right that is not one of ours
        // is the client as our own proxies saw it (anything further left the client could have forged).
        Some(
            value
                .rsplit(',')
                .filter_map(|part| part.trim().parse::<IpAddr>().ok())
                .find(|ip| !trusted(*ip))
                .unwrap_or(peer),
        )
    }
}

fn budget_key(addr: Option<IpAddr>) -> String {
    match addr {
        None => "unix".into(),
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        Some(v4) => v4.to_string(),
    }
}

/// Answers 429 with `Retry-After`, as JSON for APIs or the page for people.
pub(crate) fn too_many(
    res: &mut Response,
    route: &'static str,
    retry_after: Duration,
    json_body: bool,
) {
    metrics::counter!("plex_oidc_rate_limited_total", "route" => route).increment(1);
    let seconds = retry_after.as_secs().max(1);
    res.status_code(StatusCode::TOO_MANY_REQUESTS);
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if json_body {
        res.render(Json(json!({
            "error": "temporarily_unavailable",
            "error_description": "too many requests; retry later",
            "state": "rate_limited",
            "message": "Too many requests. Wait a moment and try again.",
            "retry_after_ms": seconds * 1000,
        })));
    } else {
        res.render(Text::Plain(
            "Too many requests. Wait a moment and try again.",
        ));
    }
}

/// A hoop that spends one `Login` request of the client's budget.
pub(crate) struct LoginBudget {
    pub(crate) route: &'static str,
    pub(crate) json: bool,
}

#[salvo::async_trait]
impl Handler for LoginBudget {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let Some(app) = super::app(depot) else {
            return;
        };
        let ip = app.limiter.client_ip(req);
        match app.limiter.take(Budget::Login, &ip) {
            Ok(()) => {
                ctrl.call_next(req, depot, res).await;
            }
            Err(wait) => {
                too_many(res, self.route, wait, self.json);
                ctrl.skip_rest();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OffsetClock;

    fn limits() -> LimitsSettings {
        LimitsSettings {
            login_requests_per_minute: 60,
            token_requests_per_minute: 60,
            new_logins_per_ip: 3,
            max_pending_logins: 100,
            trusted_proxies: vec![IpNetwork::parse("127.0.0.0/8").unwrap()],
            client_ip_header: "x-forwarded-for".into(),
        }
    }

    #[test]
    fn a_budget_allows_its_burst_then_refills_with_time() {
        let clock = Arc::new(OffsetClock::default());
        let limiter = RateLimiter::new(&limits(), clock.clone());
        for _ in 0..3 {
            assert!(limiter.take(Budget::NewLogin, "a").is_ok());
        }
        let wait = limiter.take(Budget::NewLogin, "a").unwrap_err();
        assert!(wait >= Duration::from_secs(1));
        assert!(
            limiter.take(Budget::NewLogin, "b").is_ok(),
            "budgets are per key"
        );
        clock.advance(Duration::from_secs(200));
        assert!(
            limiter.take(Budget::NewLogin, "a").is_ok(),
            "refilled after a while"
        );
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(budget_key(Some(a)), budget_key(Some(b)));
        assert_ne!(budget_key(Some(a)), budget_key(Some(c)));
        assert_eq!(
            budget_key(Some("::ffff:10.1.2.3".parse().unwrap())),
            "10.1.2.3"
        );
    }

    #[test]
    fn the_page_polling_once_a_second_never_runs_out() {
        let clock = Arc::new(OffsetClock::default());
        let limiter = RateLimiter::new(&limits(), clock.clone());
        for _ in 0..600 {
            assert!(limiter.take(Budget::Login, "ip").is_ok());
            clock.advance(Duration::from_secs(1));
        }
    }
}
