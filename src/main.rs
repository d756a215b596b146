use std::io::{IsTerminal as _, Write as _};
use std::num::NonZeroUsize;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;
use plex_oidc::cli::{self, Cli, Command, EXIT_CONFIG, EXIT_FAILURE};
use plex_oidc::config::Config;

/// More workers than this buy nothing for a login service and cost memory per thread.
const MAX_WORKER_THREADS: usize = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve(&args.config.config, args.discard_corrupt_store),
        Command::Check(args) => cli::check(
            &args.config,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        ),
        Command::Preview(args) => preview(&args.config.config, args.listen),
        Command::Schema => cli::schema(&mut std::io::stdout().lock()),
        Command::Keys(command) => {
            use plex_oidc::clock::Clock as _;
            cli::keys(
                &command,
                plex_oidc::clock::SystemClock.unix_seconds(),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )
        }
        Command::HashSecret(args) => {
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            let mut stderr = std::io::stderr().lock();
            let result = cli::hash_secret(
                &args,
                &mut stdin.lock(),
                interactive,
                &mut std::io::stdout().lock(),
                &mut stderr,
                &plex_oidc::random::SystemRandom,
            );
            match result {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(stderr, "plex-oidc: {e}");
                    EXIT_FAILURE
                }
            }
        }
    };
    ExitCode::from(code)
}

fn preview(path: &Path, listen: std::net::SocketAddr) -> u8 {
    // One page server for one operator: a single thread is plenty.
    run_service(path, 1, |config| {
        plex_oidc::startup::preview(config, listen)
    })
}

fn serve(path: &Path, discard_corrupt_store: bool) -> u8 {
    let workers = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_WORKER_THREADS);
    run_service(path, workers, |config| {
        plex_oidc::startup::serve(config, path, discard_corrupt_store)
    })
}

/// Loads the config (errors: all printed, exit 2), starts logging and the runtime, and runs `service`.
fn run_service<F, Fut>(path: &Path, workers: usize, service: F) -> u8
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), plex_oidc::startup::StartupError>>,
{
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            cli::report_config_errors(path, &errors, &mut std::io::stderr().lock());
            return EXIT_CONFIG;
        }
    };
    plex_oidc::telemetry::init(&config.log);
    let built = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("plex-oidc: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    match runtime.block_on(service(config)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("plex-oidc: {}", cli::error_chain(&e));
            EXIT_FAILURE
        }
    }
}
