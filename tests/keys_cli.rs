//! `plex-oidc keys rotate` and `keys list` through the real binary, on a state directory that a first
//! start created, and the key set a restarted server would load from it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use plex_oidc::keys::KeySet;
use serde_json::{Value, json};

use crate::support::app::temp_dir;

fn plex_oidc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plex-oidc"))
        .args(args)
        .env_remove("PLEX_OIDC_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A valid configuration whose state directory is `dir/state`; returns the config file and state dir.
fn setup(label: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = temp_dir(label);
    let state = dir.join("state");
    let config = dir.join("config.json");
    let body = json!({
        "issuer": "https://auth.example.com",
        "state_dir": state,
        "plex": { "server_id": "0123456789abcdef0123456789abcdef01234567" },
        "clients": [{
            "client_id": "grafana",
            "client_secret": "integration-test-secret-0123456789abcdef",
            "redirect_uris": ["https://grafana.example.com/login/generic_oauth"]
        }]
    });
    std::fs::write(&config, body.to_string()).unwrap();
    (dir, config, state)
}

fn published_kids(keys: &KeySet) -> Vec<String> {
    let jwks: Value = serde_json::from_str(keys.jwks_json()).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn rotate_with_no_grace_publishes_both_keys_and_signs_with_the_new_one() {
    let (dir, config, state) = setup("keys-rotate");
    let config = config.to_str().unwrap();
    // What the first start of `serve` leaves behind: the legacy single key.
    let (first, generated) = KeySet::load_or_generate(&state).unwrap();
    assert!(generated);
    let old = first.signer().kid().to_owned();

    let rotate = plex_oidc(&["keys", "rotate", "--config", config, "--grace", "0s"]);

    assert!(rotate.status.success(), "{}", stderr(&rotate));
    let out = stdout(&rotate);
    let new = out
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("new signing key "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert_ne!(new, old);
    assert!(out.contains("(now)"), "{out}");
    assert!(
        out.contains(&format!("key {old} stops signing then")),
        "{out}"
    );
    assert!(out.contains("Reload plex-oidc now (SIGHUP"), "{out}");
    assert_eq!(
        stderr(&rotate),
        "",
        "the default --retire-after needs no warning"
    );

    let key_file = state.join("keys").join(format!("{new}.pk8"));
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&state.join("keys.json")), 0o600);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(state.join("keys.json")).unwrap()).unwrap();
    let listed: Vec<&str> = manifest["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec!["signing-key.pk8".to_owned(), format!("keys/{new}.pk8")]
    );

    let list = plex_oidc(&["keys", "list", "--config", config]);

    assert!(list.status.success(), "{}", stderr(&list));
    let out = stdout(&list);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("STATE"), "{out}");
    assert!(
        lines[1].starts_with("retiring") && lines[1].contains(&old),
        "{out}"
    );
    assert!(
        lines[2].starts_with("active") && lines[2].contains(&new),
        "{out}"
    );

    // What the restarted server loads.
    let (keys, generated) = KeySet::load_or_generate(&state).unwrap();
    assert!(!generated);
    assert_eq!(published_kids(&keys), vec![old.clone(), new.clone()]);
    assert_eq!(keys.signer().kid(), new);
    let token = keys.signer().sign_jwt(&json!({"sub": "1"})).unwrap();
    assert_eq!(keys.verify_jwt(&token).unwrap(), json!({"sub": "1"}));
    let by_old = first.signer().sign_jwt(&json!({"sub": "2"})).unwrap();
    assert_eq!(keys.verify_jwt(&by_old).unwrap(), json!({"sub": "2"}));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn rotate_with_a_grace_period_keeps_the_old_key_signing_and_lists_the_new_one_as_published() {
    let (dir, config, state) = setup("keys-grace");
    let config = config.to_str().unwrap();
    let (first, _) = KeySet::load_or_generate(&state).unwrap();
    let old = first.signer().kid().to_owned();

    let rotate = plex_oidc(&["keys", "rotate", "--config", config]);
    let list = plex_oidc(&["keys", "list", "--config", config]);

    assert!(rotate.status.success(), "{}", stderr(&rotate));
    assert!(stdout(&rotate).contains("(in 1d)"), "{}", stdout(&rotate));
    let out = stdout(&list);
    assert!(out.lines().nth(1).unwrap().starts_with("active"), "{out}");
    assert!(
        out.lines().nth(2).unwrap().starts_with("published"),
        "{out}"
    );
    assert!(out.contains("the next key signs from"), "{out}");
    let (keys, _) = KeySet::load_or_generate(&state).unwrap();
    assert_eq!(published_kids(&keys).len(), 2);
    assert_eq!(keys.signer().kid(), old);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn list_before_the_first_start_says_so_and_creates_nothing() {
    let (dir, config, state) = setup("keys-list-empty");

    let list = plex_oidc(&["keys", "list", "--config", config.to_str().unwrap()]);

    assert!(list.status.success(), "{}", stderr(&list));
    assert!(
        stdout(&list).starts_with("no signing key yet"),
        "{}",
        stdout(&list)
    );
    assert!(!state.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_retire_after_shorter_than_the_id_token_lifetime_is_warned_about() {
    let (dir, config, state) = setup("keys-short-retire");
    KeySet::load_or_generate(&state).unwrap();

    let rotate = plex_oidc(&[
        "keys",
        "rotate",
        "--config",
        config.to_str().unwrap(),
        "--retire-after",
        "10m",
    ]);

    assert!(rotate.status.success(), "{}", stderr(&rotate));
    assert!(
        stderr(&rotate)
            .contains("warning: --retire-after 10m is shorter than the longest id_token_ttl (1h)"),
        "{}",
        stderr(&rotate)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_durations_and_configs_are_refused_before_anything_is_written() {
    let (dir, config, state) = setup("keys-refused");
    let bad_config = dir.join("bad.json");
    std::fs::write(&bad_config, r#"{"state_dir": "/nonexistent"}"#).unwrap();

    let bad_grace = plex_oidc(&[
        "keys",
        "rotate",
        "--config",
        config.to_str().unwrap(),
        "--grace",
        "tomorrow",
    ]);
    let bad = plex_oidc(&["keys", "rotate", "--config", bad_config.to_str().unwrap()]);

    assert_eq!(bad_grace.status.code(), Some(2));
    assert!(
        stderr(&bad_grace).contains("is not a duration"),
        "{}",
        stderr(&bad_grace)
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("in the configuration"),
        "{}",
        stderr(&bad)
    );
    assert!(!state.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_corrupt_manifest_fails_list_and_rotate_naming_the_file() {
    let (dir, config, state) = setup("keys-corrupt");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("keys.json"), "not json").unwrap();

    for args in [["keys", "list"], ["keys", "rotate"]] {
        let output = plex_oidc(&[args[0], args[1], "--config", config.to_str().unwrap()]);

        assert_eq!(output.status.code(), Some(1));
        assert!(
            stderr(&output).contains(&state.join("keys.json").display().to_string()),
            "{}",
            stderr(&output)
        );
    }
    assert!(!state.join("keys").exists());
    std::fs::remove_dir_all(dir).unwrap();
}
