//! Token requests: the first line of the input is the Authorization header (empty: none), the rest the
//! form body. Client credentials are read or refused, and the secret never shows in Debug output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plex_oidc::oidc::{ClientCredentials, Params};

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let header = String::from_utf8_lossy(header);
    let header = (!header.is_empty()).then_some(header.as_ref());
    let Ok(form) = Params::from_urlencoded(body) else {
        return;
    };
    let _ = form.check_unique(&[
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
    ]);
    if let Ok(credentials) = ClientCredentials::from_request(header, &form) {
        let other = ClientCredentials {
            client_id: credentials.client_id.clone(),
            secret: credentials
                .secret
                .as_ref()
                .map(|_| "something else".to_owned()),
            method: credentials.method,
        };
        assert_eq!(
            format!("{credentials:?}"),
            format!("{other:?}"),
            "Debug shows the secret"
        );
    }
});
