//! Builds the application from a validated config and runs it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
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
use crate::http::{AppState, CookieSettings, PageSettings, Pages};
use crate::keys::{KeyError, KeySet};
use crate::oidc::{Client, ClientRegistry, ClientSecret, Provider, ProviderSettings};
use crate::plex::{PlexClient, PlexClientSettings, PlexError};
use crate::random::{Random, SystemRandom};
use crate::seal::{SealError, Sealer};
use crate::store::{Store, StoreError};

const PLEX_CLIENT_ID_FILE: &str = "plex-client-id";
/// A Plex PIN made with `strong=true` lives 30 minutes; a pending login never outlives it.
const LOGIN_TTL: Duration = Duration::from_secs(1800);
const PENDING_LOGIN_CAPACITY: usize = 10_000;
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
    task: tokio::task::JoinHandle<()>,
}

impl Application {
    pub async fn build(config: Config, deps: Dependencies) -> Result<Application, StartupError> {
        let started = Instant::now();
        for warning in &config.warnings {
            tracing::warn!("config: {warning}");
        }
        ensure_state_dir(&config.state_dir)?;
        let (keys, generated) = KeySet::load_or_generate(&config.state_dir)?;
        if generated {
            tracing::info!(kid = keys.signer().kid(), "generated a new signing key");
        }
        let readiness = crate::telemetry::Readiness {
            keys_usable: keys_usable(&keys),
        };
        let sealer = Arc::new(Sealer::load_or_generate(&config.state_dir)?);
        let store = Arc::new(Store::open(
            &config.state_dir,
            deps.clock.unix_seconds(),
            deps.discard_corrupt_store,
        )?);
        let plex_client_id = match &config.plex.client_identifier {
            Some(id) => id.clone(),
            None => plex_client_identifier(&config.state_dir, deps.random.as_ref())?,
        };
        let plex = PlexClient::new(PlexClientSettings {
            api_url: config.plex.api_url.clone(),
            app_url: config.plex.app_url.clone(),
            client_identifier: plex_client_id,
            product: config.plex.product.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            request_timeout: config.plex.request_timeout,
        })?
        .with_clock(deps.clock.clone());

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
        let provider = Arc::new(Provider::new(
            ProviderSettings {
                issuer: config.issuer.clone(),
                code_capacity: CODE_CAPACITY,
                extra_claims: vec!["plex_uuid".into()],
            },
            registry,
            Arc::new(keys),
            sealer.clone(),
            store,
            deps.clock.clone(),
            deps.random.clone(),
        ));
        let base_url = config.issuer.trim_end_matches('/').to_owned();
        let base_path = url::Url::parse(&config.issuer)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let access = AccessChecker::new(
            plex.clone(),
            config.plex.server_id.clone(),
            deps.clock.clone(),
            config.access.recheck_interval.as_secs(),
            config.access.outage_grace.as_secs(),
            PENDING_LOGIN_CAPACITY,
        );
        let notifier = BackchannelNotifier::new(deps.backchannel_backoff)
            .map_err(|e| StartupError::Backchannel(e.to_string()))?;
        let flow = Arc::new(LoginFlow::new(FlowParts {
            provider,
            plex,
            access,
            sessions: SessionCodec::new(sealer),
            notifier,
            settings: LoginSettings {
                server_id: config.plex.server_id.clone(),
                base_url,
                poll_interval: Duration::from_secs(1),
                login_ttl: LOGIN_TTL,
                capacity: config.limits.max_pending_logins,
                session_ttl: config.session.ttl,
            },
            clock: deps.clock.clone(),
            random: deps.random.clone(),
        }));
        let pages = load_pages(&config, &base_path)?;
        let prometheus = prometheus_handle();
        let render: Arc<dyn Fn() -> String + Send + Sync> = {
            let flow = flow.clone();
            Arc::new(move || {
                let gauges = crate::metrics::ScrapeGauges {
                    pending_logins: flow.sweep(),
                    live_sessions: flow.live_sessions(),
                    refresh_grants: flow.provider().store().family_count(),
                };
                crate::metrics::render(&prometheus, &gauges)
            })
        };
        let state = Arc::new(AppState {
            flow,
            pages: Arc::new(pages),
            limiter: Arc::new(crate::http::RateLimiter::new(&config.limits, deps.clock.clone())),
            // A poll may wait for a PIN check and then two parallel plex.tv calls.
            request_deadline: config.plex.request_timeout * 2 + Duration::from_secs(10),
            cookie: CookieSettings::for_issuer(
                config.issuer.starts_with("https://"),
                LOGIN_TTL,
                config.session.ttl,
            ),
            state_dir: config.state_dir.clone(),
            metrics: config.metrics.listen.is_none().then(|| render.clone()),
        });
        metrics::gauge!(crate::metrics::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"))
            .set(1.0);

        let service = crate::http::service(state, &base_path).hoop(InjectReadiness(readiness));
        let (addr, handle, task) = spawn_server(config.listen, service).await?;
        let (metrics_addr, metrics_handle) = match config.metrics.listen {
            Some(listen) => {
                let service = Service::new(Router::with_path("metrics").get(MetricsOnly(render)));
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
            task,
        })
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

    pub async fn wait(self) {
        let _ = self.task.await;
    }
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

/// Runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(config: Config, discard_corrupt_store: bool) -> Result<(), StartupError> {
    let deps = Dependencies {
        discard_corrupt_store,
        ..Dependencies::default()
    };
    let app = Application::build(config, deps).await?;
    let handle = app.handle.clone();
    let metrics_handle = app.metrics_handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        handle.stop_graceful(Some(SHUTDOWN_GRACE));
        if let Some(h) = metrics_handle {
            h.stop_graceful(Some(SHUTDOWN_GRACE));
        }
    });
    app.wait().await;
    Ok(())
}

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

/// Puts what startup learnt about readiness into every request's depot, for `/readyz`.
struct InjectReadiness(crate::telemetry::Readiness);

#[salvo::async_trait]
impl salvo::Handler for InjectReadiness {
    async fn handle(
        &self,
        _req: &mut salvo::Request,
        depot: &mut salvo::Depot,
        _res: &mut salvo::Response,
        _ctrl: &mut salvo::FlowCtrl,
    ) {
        depot.insert_typed(self.0);
    }
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
