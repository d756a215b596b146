//! Configuration text, as an operator might mistype it: checked, or refused with readable errors.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plex_oidc::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A base directory that does not exist: file references resolve to errors, never to real files.
    if let Err(errors) = Config::from_json(text, Path::new("/nonexistent/plex-oidc-fuzz"), None) {
        assert!(
            !errors.0.is_empty(),
            "a refused config names at least one error"
        );
        let _ = errors.to_string();
    }
});
