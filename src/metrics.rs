//! The metrics interface: names and labels (dashboards and alert rules depend on them, so they are part
//! of the public interface), help texts, histogram buckets, and the values read at scrape time.
//!
//! Counters and histograms go through the `metrics` facade. Values that only exist when someone asks
//! (pending logins, live sessions, process figures) are rendered at scrape time instead: the facade has no
//! callback gauges and its counters are integers, while `process_cpu_seconds_total` is fractional.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// `{result}`: success, session, denied, plex_unavailable, expired, abandoned, error.
pub const LOGINS_TOTAL: &str = "plex_oidc_logins_total";
/// `{reason}`: see [`FailureReason`].
pub const LOGIN_FAILURES_TOTAL: &str = "plex_oidc_login_failures_total";
/// `{result}`: from the landing page being served to the code being issued (or the outcome).
pub const LOGIN_DURATION: &str = "plex_oidc_login_duration_seconds";
/// `{call, outcome}`: recorded by the plex adapter.
pub const PLEX_REQUEST_DURATION: &str = "plex_oidc_plex_request_duration_seconds";
/// `{call}`: recorded by the plex adapter.
pub const PLEX_RATE_LIMITED_TOTAL: &str = "plex_oidc_plex_rate_limited_total";
/// `{grant_type, result}`: recorded by the token endpoint.
pub const TOKEN_REQUESTS_TOTAL: &str = "plex_oidc_token_requests_total";
pub const TOKEN_DURATION: &str = "plex_oidc_token_duration_seconds";
/// `{route, status}` with route templates, never raw paths.
pub const HTTP_REQUESTS_TOTAL: &str = "plex_oidc_http_requests_total";
/// `{route}`.
pub const HTTP_REQUEST_DURATION: &str = "plex_oidc_http_request_duration_seconds";
/// `{route}`: requests refused with 429 by our own per-client budgets.
pub const RATE_LIMITED_TOTAL: &str = "plex_oidc_rate_limited_total";
/// `{result}`: delivered, rejected, failed.
pub const BACKCHANNEL_LOGOUTS_TOTAL: &str = "plex_oidc_backchannel_logouts_total";
/// `{version}`, always 1.
pub const BUILD_INFO: &str = "plex_oidc_build_info";
pub const PENDING_LOGINS: &str = "plex_oidc_pending_logins";
pub const LIVE_SESSIONS: &str = "plex_oidc_live_sessions";
pub const REFRESH_GRANTS: &str = "plex_oidc_refresh_grants";

/// Token work is sub-millisecond to a few milliseconds; logins take seconds (a person approves in Plex);
/// plex.tv answers in tens to hundreds of milliseconds when healthy.
const BUCKETS: [(&str, &[f64]); 4] = [
    (
        TOKEN_DURATION,
        &[
            0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.25, 1.0,
        ],
    ),
    (
        LOGIN_DURATION,
        &[
            1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0,
        ],
    ),
    (
        PLEX_REQUEST_DURATION,
        &[
            0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 3.0, 5.0, 10.0,
        ],
    ),
    (
        HTTP_REQUEST_DURATION,
        &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ],
    ),
];

/// Histograms hold raw samples until drained; without a scrape they would grow for ever. At tens of
/// thousands of requests a second, every second of samples is about a megabyte, so drain often.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The exporter with this crate's buckets (tests and benchmarks build their own recorder from it).
pub fn builder() -> PrometheusBuilder {
    BUCKETS
        .iter()
        .try_fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
            builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
        })
        // Only an empty bucket list fails, and the table above has none.
        .unwrap_or_default()
}

/// Installs the recorder once per process (tests start many servers in one process; a second install
/// would fail) and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            // Fails only if an embedding program installed its recorder first; ours then still renders
            // what it records, just not the facade's global metrics.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            let upkeep = handle.clone();
            // A plain thread: the recorder outlives any one tokio runtime (tests start several).
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

/// Help texts, rendered as `# HELP`. Metrics recorded by the plex adapter describe themselves there.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        LOGINS_TOTAL,
        "Sign-in outcomes by result: success, session (returning user, no Plex sign-in), denied, \
         plex_unavailable, expired, abandoned, error"
    );
    describe_counter!(
        LOGIN_FAILURES_TOTAL,
        "Sign-in failures by bounded reason (finer than the result of plex_oidc_logins_total)"
    );
    describe_histogram!(
        LOGIN_DURATION,
        Unit::Seconds,
        "From the sign-in page being served to the code being issued (or the outcome), by result"
    );
    describe_counter!(
        TOKEN_REQUESTS_TOTAL,
        "Token endpoint requests by grant_type and result (success or the OAuth error code)"
    );
    describe_histogram!(
        TOKEN_DURATION,
        Unit::Seconds,
        "Time spent answering a token endpoint request, after the body was read"
    );
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests by route template and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request handling time by route template"
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests refused with 429 because a client exceeded its request budget, by route template"
    );
    describe_counter!(
        BACKCHANNEL_LOGOUTS_TOTAL,
        "Back-channel logout notifications by result: delivered, rejected, failed"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label names the running build"
    );
}

/// A finer reason for an unsuccessful sign-in: a bounded set, so it can be a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The account has no access to the operator's server.
    NoServerAccess,
    /// The PIN's lifetime ran out while the page was still waiting.
    PinExpired,
    /// plex.tv no longer knew the PIN (expired there, or created under another client identifier).
    PinNotFound,
    /// The page asked to start a PIN after the sign-in's own lifetime.
    LoginExpired,
    PlexRateLimited,
    /// plex.tv (or a proxy before it) answered 5xx.
    Plex5xx,
    PlexTimeout,
    /// No connection (DNS, TCP, TLS).
    PlexUnreachable,
    /// plex.tv answered something the protocol does not promise.
    PlexUnexpected,
    /// plex.tv refused the token it had just handed out.
    TokenRejected,
    /// A sign-in was continued with another browser's binding cookie (possible login CSRF).
    WrongBrowser,
    /// The page was shown but the person never chose to sign in with Plex.
    NotStarted,
    /// A PIN was created but never approved before its lifetime ran out, with nobody polling.
    NotApproved,
    /// Approved and allowed, but the browser never came back for the code.
    NotContinued,
}

impl FailureReason {
    pub const ALL: [FailureReason; 14] = [
        FailureReason::NoServerAccess,
        FailureReason::PinExpired,
        FailureReason::PinNotFound,
        FailureReason::LoginExpired,
        FailureReason::PlexRateLimited,
        FailureReason::Plex5xx,
        FailureReason::PlexTimeout,
        FailureReason::PlexUnreachable,
        FailureReason::PlexUnexpected,
        FailureReason::TokenRejected,
        FailureReason::WrongBrowser,
        FailureReason::NotStarted,
        FailureReason::NotApproved,
        FailureReason::NotContinued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NoServerAccess => "no_server_access",
            FailureReason::PinExpired => "pin_expired",
            FailureReason::PinNotFound => "pin_not_found",
            FailureReason::LoginExpired => "login_expired",
            FailureReason::PlexRateLimited => "plex_rate_limited",
            FailureReason::Plex5xx => "plex_5xx",
            FailureReason::PlexTimeout => "plex_timeout",
            FailureReason::PlexUnreachable => "plex_unreachable",
            FailureReason::PlexUnexpected => "plex_unexpected",
            FailureReason::TokenRejected => "token_rejected",
            FailureReason::WrongBrowser => "wrong_browser",
            FailureReason::NotStarted => "not_started",
            FailureReason::NotApproved => "not_approved",
            FailureReason::NotContinued => "not_continued",
        }
    }
}

/// Counts one sign-in failure event.
pub fn login_failure(reason: FailureReason) {
    metrics::counter!(LOGIN_FAILURES_TOTAL, "reason" => reason.as_str()).increment(1);
}

/// Per-server values read at scrape time, rendered after the recorder's own output.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrapeGauges {
    pub pending_logins: usize,
    pub live_sessions: usize,
    pub refresh_grants: usize,
}

/// The whole `/metrics` body: the recorder's metrics, this server's gauges, the process's figures.
pub fn render(handle: &PrometheusHandle, gauges: &ScrapeGauges) -> String {
    let mut out = handle.render();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let gauge_lines = [
        (
            PENDING_LOGINS,
            "Sign-ins in progress: page served, no outcome yet, not past their lifetime",
            gauges.pending_logins,
        ),
        (
            LIVE_SESSIONS,
            "Provider sessions started or seen in this process and not yet expired or ended \
             (sessions are sealed cookies; a cookie a browser discarded still counts until it expires)",
            gauges.live_sessions,
        ),
        (
            REFRESH_GRANTS,
            "Refresh-token grants (families) held in the store",
            gauges.refresh_grants,
        ),
    ];
    for (name, help, value) in gauge_lines {
        family(&mut out, name, help, "gauge", &[(value as f64).to_string()]);
    }
    process::render(&mut out);
    out
}

/// One metric family without labels, in the text exposition format.
fn family(out: &mut String, name: &str, help: &str, kind: &str, values: &[String]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for value in values {
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Provider sessions known to be live: started (or seen) here and neither expired nor ended. Sessions
/// are sealed cookies held by browsers, so this is what the process has witnessed since it started.
pub struct LiveSessions {
    /// Session id to its expiry (Unix seconds).
    expiries: Mutex<HashMap<String, u64>>,
    capacity: usize,
    /// When the full map was last swept (Unix seconds): a full map is swept at most once a minute,
    /// not at every sign-in.
    last_sweep: std::sync::atomic::AtomicU64,
}

impl LiveSessions {
    pub fn new(capacity: usize) -> LiveSessions {
        LiveSessions {
            expiries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            last_sweep: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A session started or came back; `expires_at` and `now` are Unix seconds.
    pub fn seen(&self, sid: &str, expires_at: u64, now: u64) {
        let mut expiries = self.lock();
        if expiries.len() >= self.capacity && !expiries.contains_key(sid) {
            let last = self.last_sweep.load(std::sync::atomic::Ordering::Relaxed);
            if now.saturating_sub(last) >= 60 {
                self.last_sweep
                    .store(now, std::sync::atomic::Ordering::Relaxed);
                expiries.retain(|_, end| *end > now);
            }
            // Beyond capacity the gauge saturates rather than grow memory without bound.
            if expiries.len() >= self.capacity {
                return;
            }
        }
        expiries.insert(sid.to_owned(), expires_at);
    }

    /// The session was signed out or its access withdrawn.
    pub fn ended(&self, sid: &str) {
        self.lock().remove(sid);
    }

    /// Live sessions at `now`; forgets the expired ones.
    pub fn count(&self, now: u64) -> usize {
        let mut expiries = self.lock();
        expiries.retain(|_, end| *end > now);
        expiries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.expiries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The standard `process_*` metrics, read from `/proc` at scrape time (names as the Prometheus client
/// libraries use them, so the usual Grafana panels work). Elsewhere than Linux nothing is rendered.
mod process {
    use std::sync::OnceLock;

    use super::family;

    /// `USER_HZ`: the kernel's ABI fixes `/proc` tick counts at 100 per second on every architecture
    /// Linux runs this on, whatever its internal timer frequency.
    const TICKS_PER_SECOND: f64 = 100.0;

    #[derive(Debug, Default, Clone, Copy, PartialEq)]
    pub(super) struct Stat {
        pub cpu_seconds: f64,
        pub start_ticks: u64,
        pub virtual_bytes: u64,
    }

    pub(super) fn render(out: &mut String) {
        if let Some(stat) = read("/proc/self/stat").as_deref().and_then(parse_stat) {
            family(
                out,
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                "counter",
                &[stat.cpu_seconds.to_string()],
            );
            family(
                out,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                "gauge",
                &[stat.virtual_bytes.to_string()],
            );
            if let Some(start) = start_time(stat.start_ticks) {
                family(
                    out,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    "gauge",
                    &[start.to_string()],
                );
            }
        }
        if let Some(rss) = read("/proc/self/status")
            .as_deref()
            .and_then(parse_resident_bytes)
        {
            family(
                out,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                &[rss.to_string()],
            );
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            family(
                out,
                "process_open_fds",
                "Number of open file descriptors.",
                "gauge",
                &[entries.count().to_string()],
            );
        }
        if let Some(max) = read("/proc/self/limits").as_deref().and_then(parse_max_fds) {
            family(
                out,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                "gauge",
                &[max.to_string()],
            );
        }
    }

    fn read(path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    /// Fields after the command name, which is in parentheses and may itself hold spaces and ')'.
    pub(super) fn parse_stat(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // proc(5) numbers fields from 1 with the pid; `rest` starts at field 3 (state).
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let ticks = field(14)? + field(15)?;
        Some(Stat {
            cpu_seconds: ticks as f64 / TICKS_PER_SECOND,
            start_ticks: field(22)?,
            virtual_bytes: field(23)?,
        })
    }

    pub(super) fn parse_resident_bytes(status: &str) -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub(super) fn parse_max_fds(limits: &str) -> Option<u64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    pub(super) fn parse_boot_time(stat: &str) -> Option<u64> {
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    }

    /// Boot time plus the process's start offset; constant, so read once.
    fn start_time(start_ticks: u64) -> Option<f64> {
        static BOOT: OnceLock<Option<u64>> = OnceLock::new();
        let boot = (*BOOT.get_or_init(|| read("/proc/stat").as_deref().and_then(parse_boot_time)))?;
        Some(boot as f64 + start_ticks as f64 / TICKS_PER_SECOND)
    }
}

#[cfg(test)]
mod tests {
    use super::process::{Stat, parse_boot_time, parse_max_fds, parse_resident_bytes, parse_stat};
    use super::*;

    #[test]
    fn proc_stat_is_parsed_past_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (plex (oidc) x) S 1 4242 4242 0 -1 4194560 1290 0 0 0 250 75 0 0 20 0 \
                    5 0 123456 987654321 4321 18446744073709551615 1 1 0 0 0 0 0 4096 17 0 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                cpu_seconds: 3.25,
                start_ticks: 123_456,
                virtual_bytes: 987_654_321,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn resident_memory_boot_time_and_fd_limit_come_from_their_proc_lines() {
        assert_eq!(
            parse_resident_bytes("Name:\tplex-oidc\nVmSize:\t  20000 kB\nVmRSS:\t    8000 kB\n"),
            Some(8_192_000)
        );
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
    }

    #[test]
    fn a_render_carries_the_gauges_and_the_process_figures_with_help_and_type() {
        let recorder = builder().build_recorder();
        let text = render(
            &recorder.handle(),
            &ScrapeGauges {
                pending_logins: 3,
                live_sessions: 2,
                refresh_grants: 1,
            },
        );
        for line in [
            "# TYPE plex_oidc_pending_logins gauge",
            "plex_oidc_pending_logins 3",
            "plex_oidc_live_sessions 2",
            "plex_oidc_refresh_grants 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        if cfg!(target_os = "linux") {
            for name in [
                "process_resident_memory_bytes",
                "process_virtual_memory_bytes",
                "process_cpu_seconds_total",
                "process_open_fds",
                "process_max_fds",
                "process_start_time_seconds",
            ] {
                let value = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name} ")))
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("{name} missing in:\n{text}"));
                // CPU time is counted in 10 ms ticks: a young test process may not have used one yet.
                if name == "process_cpu_seconds_total" {
                    assert!(value >= 0.0, "{name} = {value}");
                } else {
                    assert!(value > 0.0, "{name} = {value}");
                }
                assert!(text.contains(&format!("# HELP {name} ")));
            }
        }
    }

    #[test]
    fn the_configured_buckets_render_as_histograms() {
        let recorder = builder().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!(TOKEN_DURATION).record(0.0015);
            metrics::histogram!(LOGIN_DURATION, "result" => "success").record(4.0);
        });
        let text = recorder.handle().render();
        assert!(
            text.contains("plex_oidc_token_duration_seconds_bucket{le=\"0.002\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("plex_oidc_token_duration_seconds_bucket{le=\"0.001\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("plex_oidc_login_duration_seconds_bucket{result=\"success\",le=\"5\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn live_sessions_count_until_expiry_or_sign_out() {
        let live = LiveSessions::new(10);
        live.seen("a", 200, 100);
        live.seen("b", 300, 100);
        live.seen("a", 200, 150);
        assert_eq!(live.count(150), 2);
        live.ended("b");
        assert_eq!(live.count(150), 1);
        assert_eq!(live.count(200), 0, "expired at its expiry second");
    }

    #[test]
    fn live_sessions_saturate_at_capacity_after_forgetting_expired_ones() {
        let live = LiveSessions::new(2);
        live.seen("a", 110, 100);
        live.seen("b", 500, 100);
        live.seen("c", 500, 100);
        assert_eq!(live.count(100), 2, "full: c is not tracked");
        live.seen("d", 500, 120);
        assert_eq!(
            live.count(120),
            1,
            "within a minute of the last sweep a full map takes no one (the scrape forgot a)"
        );
        live.seen("e", 500, 130);
        live.seen("f", 500, 190);
        assert_eq!(
            live.count(190),
            2,
            "a's place went to e; f finds the map full again"
        );
    }

    #[test]
    fn failure_reasons_are_distinct_snake_case_labels() {
        let labels: std::collections::HashSet<_> =
            FailureReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), FailureReason::ALL.len());
        assert!(labels.iter().all(|l| {
            l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
    }
}
