//! All integration tests link into this one binary (each file in tests/ would be a slow link of its own).

mod browser;
mod config_cli;
mod deploy_files;
mod faults;
mod keys_cli;
mod lifecycle;
mod limits;
mod load;
mod negative_inputs;
mod observability;
mod oidc_flow;
mod plex_client;
mod properties;
mod protocol_errors;
mod sessions;
mod support;
