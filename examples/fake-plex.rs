//! A fake plex.tv (API and auth app) for manual runs and the NixOS VM test.
//!
//! `cargo run --example fake-plex -- --listen 127.0.0.1:9999`, then point `plex.api_url` and
//! `plex.app_url` at the printed URL and `plex.server_id` at the printed server id.

#[path = "../tests/support/fake_plex.rs"]
mod fake_plex;

use std::net::SocketAddr;
use std::process::ExitCode;

use fake_plex::{Account, FakePlex, SERVER_ID};

const USAGE: &str = "usage: fake-plex [--listen ADDR]   (default 127.0.0.1:9999)";

fn listen_addr() -> Result<SocketAddr, String> {
    let mut addr = String::from("127.0.0.1:9999");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => addr = args.next().ok_or("--listen needs an address")?,
            "-h" | "--help" => return Err(String::new()),
            other => match other.strip_prefix("--listen=") {
                Some(value) => addr = value.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    addr.parse()
        .map_err(|e| format!("--listen {addr:?} is not an IP:port address: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match listen_addr() {
        Ok(addr) => addr,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = FakePlex::start_on(addr).await;
    println!("{}", fake.base_url());
    eprintln!("fake plex.tv listening on {}", fake.base_url());
    eprintln!("server_id: {SERVER_ID}");
    for account in Account::ALL {
        eprintln!(
            "  {:<8} id={:<9} {:<8} access={} token={}",
            account.slug(),
            account.id(),
            account.title(),
            account.has_access(),
            account.token()
        );
    }
    match tokio::signal::ctrl_c().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot wait for Ctrl-C: {e}");
            ExitCode::FAILURE
        }
    }
}
