//! All integration tests link into this one binary (each file in tests/ would be a slow link of its own).

mod support;
mod config_cli;
mod oidc_flow;
mod protocol_errors;
mod plex_client;
mod deploy_files;
mod sessions;
mod faults;
mod negative_inputs;
mod load;
mod properties;
mod browser;
