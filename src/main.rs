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
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            cli::report_config_errors(path, &errors, &mut std::io::stderr().lock());
            return EXIT_CONFIG;
        }
    };
    plex_oidc::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("plex-oidc: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    match runtime.block_on(plex_oidc::startup::preview(config, listen)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("plex-oidc: {}", cli::error_chain(&e));
            EXIT_FAILURE
        }
    }
}

fn serve(path: &Path, discard_corrupt_store: bool) -> u8 {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            cli::report_config_errors(path, &errors, &mut std::io::stderr().lock());
            return EXIT_CONFIG;
        }
    };
    plex_oidc::telemetry::init(&config.log);
    let workers = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_WORKER_THREADS);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("plex-oidc: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    match runtime.block_on(plex_oidc::startup::serve(config, path, discard_corrupt_store)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("plex-oidc: {}", cli::error_chain(&e));
            EXIT_FAILURE
        }
    }
}
