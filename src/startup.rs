//! Builds the application from a validated config and runs it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use salvo::conn::tcp::TcpAcceptor;
use salvo::server::ServerHandle;
use salvo::{Router, Server, Service};
use tokio::net::TcpListener;

use crate::assets::{AssetError, Assets, ThemeValues};
use crate::backchannel::BackchannelNotifier;
use crate::clock::{Clock, SystemClock};
use crate::config::{ClientAuth, Config};
use crate::flow::{AccessChecker, FlowParts, LoginFlow, LoginSettings, SessionCodec};
use crate::http::{AppState, CookieSettings, PageSettings, Pages, StateCell};
use crate::keys::{KeyError, KeySet};
use crate::oidc::{Client, ClientRegistry, ClientSecret, Provider, ProviderSettings};
use crate::plex::{PlexClient, PlexClientSettings, PlexError};
use crate::random::{Random, SystemRandom};
use crate::seal::{SealError, Sealer};
use crate::store::{Store, StoreError};

const PLEX_CLIENT_ID_FILE: &str = "plex-client-id";
/// A Plex PIN made with `strong=true` lives 30 minutes; a pending login never outlives it.
const LOGIN_TTL: Duration = Duration::from_secs(1800);
/// Accounts whose last Plex answer is remembered for the re-check interval.
const ACCESS_CACHE_CAPACITY: usize = 10_000;
const CODE_CAPACITY: usize = 10_000;
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Plex(#[from] PlexError),
    #[error(transparent)]
    Assets(#[from] AssetError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the back-channel logout client: {0}")]
    Backchannel(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot keep the Plex client identifier in {path}: {source}")]
    ClientIdentifier {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What tests and benchmarks may replace.
pub struct Dependencies {
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    /// Start even if the grant store has damaged lines, dropping them (`--discard-corrupt-store`).
    pub discard_corrupt_store: bool,
    /// Pause between back-channel logout attempts (tests shorten it).
    pub backchannel_backoff: Duration,
}

impl Default for Dependencies {
    fn default() -> Self {
        Dependencies {
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandom),
            discard_corrupt_store: false,
            backchannel_backoff: Duration::from_secs(2),
        }
    }
}

/// A running server.
pub struct Application {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    handle: ServerHandle,
    metrics_handle: Option<ServerHandle>,
    task: Option<tokio::task::JoinHandle<()>>,
    cell: StateCell,
    shared: Shared,
}

/// What lives as long as the process, across config reloads.
struct Shared {
    sealer: Arc<Sealer>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    backchannel_backoff: Duration,
    /// Set once the state cell exists; `/metrics` renders from whatever state is current.
    cell: Arc<OnceLock<StateCell>>,
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    state_dir: std::path::PathBuf,
}

impl Application {
    pub async fn build(config: Config, deps: Dependencies) -> Result<Application, StartupError> {
        let started = Instant::now();
        ensure_state_dir(&config.state_dir)?;
        let shared = Shared {
            sealer: Arc::new(Sealer::load_or_generate(&config.state_dir)?),
            store: Arc::new(Store::open(
                &config.state_dir,
                deps.clock.unix_seconds(),
                deps.discard_corrupt_store,
            )?),
            clock: deps.clock,
            random: deps.random,
            backchannel_backoff: deps.backchannel_backoff,
            cell: Arc::new(OnceLock::new()),
            listen: config.listen,
            metrics_listen: config.metrics.listen,
            state_dir: config.state_dir.clone(),
        };
        let state = build_state(&config, &shared, None)?;
        let cell = StateCell::new(state);
        let _ = shared.cell.set(cell.clone());
        metrics::gauge!(crate::metrics::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"))
            .set(1.0);

        let service = crate::http::service(cell.clone(), &base_path(&config.issuer));
        let (addr, handle, task) = spawn_server(config.listen, service).await?;
        let (metrics_addr, metrics_handle) = match config.metrics.listen {
            Some(listen) => {
                let service = Service::new(
                    Router::with_path("metrics").get(MetricsOnly(render_metrics(&shared.cell))),
                );
                let (addr, handle, _task) = spawn_server(listen, service).await?;
                (Some(addr), Some(handle))
            }
            None => (None, None),
        };
        tracing::info!(
            %addr,
            issuer = %config.issuer,
            ready_in_ms = started.elapsed().as_secs_f64() * 1000.0,
            "plex-oidc is ready"
        );
        Ok(Application {
            addr,
            metrics_addr,
            handle,
            metrics_handle,
            task: Some(task),
            cell,
            shared,
        })
    }

    /// Swaps in a new configuration (SIGHUP). Pending sign-ins, codes, sessions and refresh tokens carry
    /// over; keys are read again (after `keys rotate`). On error the running state stays untouched.
    pub fn reload(&self, config: Config) -> Result<(), StartupError> {
        if config.listen != self.shared.listen
            || config.metrics.listen != self.shared.metrics_listen
            || config.state_dir != self.shared.state_dir
        {
            tracing::warn!(
                "listen, metrics.listen and state_dir changes take effect at the next restart"
            );
        }
        let previous = self.cell.current();
        let state = build_state(&config, &self.shared, Some(&previous))?;
        self.cell.replace(state);
        tracing::info!(issuer = %config.issuer, "configuration reloaded");
        Ok(())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops accepting, lets in-flight requests finish within the grace period.
    pub fn stop(&self) {
        self.handle.stop_graceful(Some(SHUTDOWN_GRACE));
        if let Some(h) = &self.metrics_handle {
            h.stop_graceful(Some(SHUTDOWN_GRACE));
        }
    }

    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn base_path(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// Everything that follows from one configuration. With `previous`, the volatile state (pending sign-ins,
/// codes, access answers, session count) is carried over so a reload is invisible to people.
fn build_state(
    config: &Config,
    shared: &Shared,
    previous: Option<&AppState>,
) -> Result<Arc<AppState>, StartupError> {
    for warning in &config.warnings {
        tracing::warn!("config: {warning}");
    }
    let (keys, generated) = KeySet::load_or_generate(&config.state_dir)?;
    if generated {
        tracing::info!(
            kid = keys.signer_at(shared.clock.unix_seconds()).kid(),
            "generated a new signing key"
        );
    }
    let readiness = crate::telemetry::Readiness {
        keys_usable: keys_usable(&keys),
    };
    let plex_client_id = match &config.plex.client_identifier {
        Some(id) => id.clone(),
        None => plex_client_identifier(&config.state_dir, shared.random.as_ref())?,
    };
    let plex = PlexClient::new(PlexClientSettings {
        api_url: config.plex.api_url.clone(),
        app_url: config.plex.app_url.clone(),
        client_identifier: plex_client_id,
        product: config.plex.product.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        request_timeout: config.plex.request_timeout,
    })?
    .with_clock(shared.clock.clone());

    let registry = ClientRegistry::new(config.clients.iter().map(|c| Client {
        id: c.client_id.clone(),
        name: c.name.clone(),
        secret: match &c.auth {
            ClientAuth::Secret(s) => ClientSecret::plain(s.expose()),
            ClientAuth::SecretHash(phc) => ClientSecret::argon2(phc.clone()),
            ClientAuth::Public => ClientSecret::None,
        },
        redirect_uris: c.redirect_uris.clone(),
        require_pkce: c.require_pkce,
        access_token_ttl: c.access_token_ttl,
        id_token_ttl: c.id_token_ttl,
        refresh_tokens: c.refresh_tokens,
        refresh_token_ttl: c.refresh_token_ttl,
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        backchannel_logout_uri: c.backchannel_logout_uri.clone(),
    }));
    let mut provider = Provider::new(
        ProviderSettings {
            issuer: config.issuer.clone(),
            code_capacity: CODE_CAPACITY,
            extra_claims: vec!["plex_uuid".into()],
        },
        registry,
        Arc::new(keys),
        shared.sealer.clone(),
        shared.store.clone(),
        shared.clock.clone(),
        shared.random.clone(),
    );
    if let Some(previous) = previous {
        provider = provider.adopt_state_of(previous.flow.provider());
    }
    let base_path = base_path(&config.issuer);
    let mut access = AccessChecker::new(
        plex.clone(),
        config.plex.server_id.clone(),
        shared.clock.clone(),
        config.access.recheck_interval.as_secs(),
        config.access.outage_grace.as_secs(),
        ACCESS_CACHE_CAPACITY,
    );
    if let Some(previous) = previous {
        access = access.adopt_state_of(previous.flow.access_checker());
    }
    let notifier = BackchannelNotifier::new(shared.backchannel_backoff)
        .map_err(|e| StartupError::Backchannel(e.to_string()))?;
    let mut flow = LoginFlow::new(FlowParts {
        provider: Arc::new(provider),
        plex,
        access,
        sessions: SessionCodec::new(shared.sealer.clone()),
        notifier,
        settings: LoginSettings {
            server_id: config.plex.server_id.clone(),
            base_url: config.issuer.trim_end_matches('/').to_owned(),
            poll_interval: Duration::from_secs(1),
            login_ttl: LOGIN_TTL,
            capacity: config.limits.max_pending_logins,
            session_ttl: config.session.ttl,
        },
        clock: shared.clock.clone(),
        random: shared.random.clone(),
    });
    if let Some(previous) = previous {
        flow = flow.adopt_state_of(&previous.flow);
    }
    let pages = load_pages(config, &base_path)?;
    Ok(Arc::new(AppState {
        flow: Arc::new(flow),
        pages: Arc::new(pages),
        limiter: Arc::new(crate::http::RateLimiter::new(
            &config.limits,
            shared.clock.clone(),
        )),
        readiness,
        // A poll may wait for a PIN check and then two parallel plex.tv calls.
        request_deadline: config.plex.request_timeout * 2 + Duration::from_secs(10),
        cookie: CookieSettings::for_issuer(
            config.issuer.starts_with("https://"),
            LOGIN_TTL,
            config.session.ttl,
        ),
        state_dir: config.state_dir.clone(),
        metrics: config
            .metrics
            .listen
            .is_none()
            .then(|| render_metrics(&shared.cell)),
    }))
}

/// Renders `/metrics` from the current state: the recorder plus gauges read at scrape time.
fn render_metrics(cell: &Arc<OnceLock<StateCell>>) -> Arc<dyn Fn() -> String + Send + Sync> {
    let prometheus = prometheus_handle();
    let cell = cell.clone();
    Arc::new(move || {
        let gauges = match cell.get().map(StateCell::current) {
            Some(state) => crate::metrics::ScrapeGauges {
                pending_logins: state.flow.sweep(),
                live_sessions: state.flow.live_sessions(),
                refresh_grants: state.flow.provider().store().family_count(),
            },
            None => crate::metrics::ScrapeGauges {
                pending_logins: 0,
                live_sessions: 0,
                refresh_grants: 0,
            },
        };
        crate::metrics::render(&prometheus, &gauges)
    })
}

/// The page files (embedded, then `theme.dir`) and the values every page shows.
pub fn load_pages(config: &Config, base_path: &str) -> Result<Pages, AssetError> {
    let assets = Assets::load(
        config.theme.dir.as_deref(),
        &ThemeValues {
            accent: config.theme.accent.clone(),
            background: config.theme.background.clone(),
        },
        base_path,
    )?;
    let logo_url = match config.theme.logo.as_deref() {
        None | Some("") => String::new(),
        Some(l)
            if l.starts_with("https://") || l.starts_with("http://") || l.starts_with("data:") =>
        {
            l.to_owned()
        }
        Some(path) => assets.asset_url(path.trim_start_matches('/')),
    };
    let product = config.plex.product.clone();
    let settings = PageSettings {
        title: config
            .theme
            .title
            .clone()
            .unwrap_or_else(|| product.clone()),
        server_name: config
            .plex
            .server_name
            .clone()
            .unwrap_or_else(|| product.clone()),
        product,
        login_mode: config.plex.login_mode.as_str(),
        logo_url,
    };
    Ok(Pages { assets, settings })
}

/// `plex-oidc preview`: serves every page state with sample data until interrupted. Needs no Plex, keys
/// or state directory.
pub async fn preview(config: Config, listen: SocketAddr) -> Result<(), StartupError> {
    let pages = Arc::new(load_pages(&config, "")?);
    let (addr, handle, task) = spawn_server(listen, crate::http::preview_service(pages)).await?;
    println!("plex-oidc preview: http://{addr}/ (every page state; Ctrl-C to stop)");
    tokio::spawn(async move {
        shutdown_signal().await;
        handle.stop_graceful(Some(Duration::from_secs(1)));
    });
    let _ = task.await;
    Ok(())
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully; SIGHUP reloads `config_path`.
pub async fn serve(
    config: Config,
    config_path: &Path,
    discard_corrupt_store: bool,
) -> Result<(), StartupError> {
    let deps = Dependencies {
        discard_corrupt_store,
        ..Dependencies::default()
    };
    let mut app = Application::build(config, deps).await?;
    let task = app.task.take();
    let handle = app.handle.clone();
    let metrics_handle = app.metrics_handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections, in-flight requests may finish");
        handle.stop_graceful(Some(SHUTDOWN_GRACE));
        if let Some(h) = metrics_handle {
            h.stop_graceful(Some(SHUTDOWN_GRACE));
        }
    });
    spawn_reload_on_hangup(Arc::new(app), config_path.to_path_buf());
    // Every acknowledged write to the grant store was fsynced before it was answered, so there is
    // nothing to flush once the server has drained.
    if let Some(task) = task {
        let _ = task.await;
    }
    Ok(())
}

#[cfg(unix)]
fn spawn_reload_on_hangup(app: Arc<Application>, path: std::path::PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting");
        return;
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match Config::load(&path) {
                Ok(config) => {
                    if let Err(e) = app.reload(config) {
                        tracing::error!(error = %e, "reload failed; the previous configuration keeps serving");
                    }
                }
                Err(errors) => {
                    for e in &errors.0 {
                        tracing::error!(path = %e.path, "{}", e.message);
                    }
                    tracing::error!(
                        errors = errors.0.len(),
                        "the new configuration has errors; the previous one keeps serving"
                    );
                }
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_reload_on_hangup(_app: Arc<Application>, _path: std::path::PathBuf) {}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn spawn_server(
    listen: SocketAddr,
    service: Service,
) -> Result<(SocketAddr, ServerHandle, tokio::task::JoinHandle<()>), StartupError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartupError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartupError::Listen {
            addr: listen,
            source,
        })?;
    let acceptor = TcpAcceptor::try_from(listener).map_err(|source| StartupError::Listen {
        addr: listen,
        source,
    })?;
    let mut server = Server::new(acceptor);
    // Slow-loris: headers must arrive within 10 s. (hyper refuses header blocks beyond its ~400 KiB
    // buffer with 431 on its own; bodies are capped per handler.)
    server
        .http1_mut()
        .header_read_timeout(Duration::from_secs(10));
    let handle = server.handle();
    let task = tokio::spawn(async move { server.serve(service).await });
    Ok((addr, handle, task))
}

struct MetricsOnly(Arc<dyn Fn() -> String + Send + Sync>);

#[salvo::async_trait]
impl salvo::Handler for MetricsOnly {
    async fn handle(
        &self,
        _req: &mut salvo::Request,
        _depot: &mut salvo::Depot,
        res: &mut salvo::Response,
        _ctrl: &mut salvo::FlowCtrl,
    ) {
        res.headers_mut().insert(
            salvo::http::header::CONTENT_TYPE,
            salvo::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        let _ = res.write_body((self.0)());
    }
}

/// One recorder per process; the plex adapter describes its own metrics (again harmlessly per server).
fn prometheus_handle() -> PrometheusHandle {
    let handle = crate::metrics::install();
    crate::plex::describe_metrics();
    handle
}

/// A signature that verifies proves the key works before `/readyz` says so.
fn keys_usable(keys: &KeySet) -> bool {
    let probe = serde_json::json!({ "purpose": "readiness" });
    let usable = keys
        .signer()
        .sign_jwt(&probe)
        .and_then(|jwt| keys.verify_jwt(&jwt))
        .is_ok();
    if !usable {
        tracing::error!("the signing key cannot make a signature that verifies; not ready");
    }
    usable
}

fn ensure_state_dir(dir: &Path) -> Result<(), StartupError> {
    let err = |source| StartupError::StateDir {
        path: dir.display().to_string(),
        source,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
    }
    Ok(())
}

/// One stable `X-Plex-Client-Identifier` per installation: a new one per start would add a new
/// "device" to every user's Plex account.
fn plex_client_identifier(state_dir: &Path, random: &dyn Random) -> Result<String, StartupError> {
    let path = state_dir.join(PLEX_CLIENT_ID_FILE);
    let err = |source| StartupError::ClientIdentifier {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut bytes = [0u8; 16];
    random.fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!(
        "plex-oidc-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &id).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(id)
}
