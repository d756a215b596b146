//! Rules for the issuer, redirect URIs and upstream URLs. Each check returns a sentence about the value
//! for the operator; the caller prefixes the JSON path.

use url::{Host, Url};

/// Schemes that run code or read local data in the browser; a redirect to one would hand the
/// authorization code to an attacker's script.
const FORBIDDEN_SCHEMES: [&str; 6] = ["javascript", "data", "file", "vbscript", "blob", "about"];

/// Hosts that never leave the machine, where plain http exposes nothing (RFC 8252 §8.3).
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain
            .trim_end_matches('.')
            .eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn parse_absolute(s: &str) -> Result<Url, String> {
    // The url crate trims surrounding whitespace silently; the string is compared or published exactly,
    // so a stray space would make it never match.
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("\"{s}\" contains whitespace or control characters"));
    }
    Url::parse(s).map_err(|e| format!("\"{s}\" is not an absolute URL ({e})"))
}

fn reject_fragment(s: &str, url: &Url) -> Result<(), String> {
    match url.fragment() {
        Some(_) => Err(format!(
            "\"{s}\" has a fragment (the part from \"#\"), which is not allowed"
        )),
        None => Ok(()),
    }
}

fn reject_userinfo(s: &str, url: &Url) -> Result<(), String> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("\"{s}\" must not contain a user name or password"));
    }
    Ok(())
}

/// The issuer: an absolute http(s) URL without query or fragment (OpenID Connect Discovery §3), https
/// unless it is on loopback.
pub(super) fn check_issuer(s: &str) -> Result<(), String> {
    let url = parse_absolute(s)?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "\"{s}\" uses plain http on a non-loopback host; the issuer must be https \
                 (plain http only on localhost, 127.0.0.1 or [::1])"
            ));
        }
        other => {
            return Err(format!(
                "\"{s}\" uses \"{other}:\"; the issuer must be an https URL"
            ));
        }
    }
    reject_fragment(s, &url)?;
    if url.query().is_some() {
        return Err(format!(
            "\"{s}\" has a query (the part from \"?\"), which an issuer must not have"
        ));
    }
    reject_userinfo(s, &url)
}

/// A URL this server itself fetches or links to (plex.tv, app.plex.tv, a logo): https, or http on
/// loopback so tests can point at a fake.
pub(super) fn check_http_url(s: &str) -> Result<Url, String> {
    let url = parse_absolute(s)?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "\"{s}\" uses plain http on a non-loopback host; it must be https"
            ));
        }
        other => {
            return Err(format!(
                "\"{s}\" uses \"{other}:\"; it must be an https URL"
            ));
        }
    }
    reject_fragment(s, &url)?;
    reject_userinfo(s, &url)?;
    Ok(url)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UriUse {
    /// Where a browser is sent (redirect_uris, post_logout_redirect_uris): custom schemes allowed.
    Browser,
    /// Where this server POSTs a logout token: only http(s) makes sense.
    Backchannel,
}

/// What a URI rule allows through.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Ok,
    /// Allowed only because the client opted in; the operator should hear about it at start.
    Insecure(String),
}

pub(super) fn check_client_uri(
    s: &str,
    allow_insecure: bool,
    usage: UriUse,
) -> Result<Verdict, String> {
    let url = parse_absolute(s)?;
    reject_fragment(s, &url)?;
    let scheme = url.scheme();
    if FORBIDDEN_SCHEMES.contains(&scheme) {
        return Err(format!(
            "\"{s}\" uses the \"{scheme}:\" scheme, which is never allowed"
        ));
    }
    match scheme {
        "https" => Ok(Verdict::Ok),
        "http" if is_loopback(&url) => Ok(Verdict::Ok),
        "http" if allow_insecure => Ok(Verdict::Insecure(format!(
            "\"{s}\" uses plain http on a non-loopback host; allowed by \"allow_insecure_redirects\", \
             but codes and tokens cross the network unencrypted"
        ))),
        "http" => Err(format!(
            "\"{s}\" uses plain http on a non-loopback host \
             (set \"allow_insecure_redirects\": true on this client to allow it)"
        )),
        // Native apps receive codes on their own schemes (RFC 8252 §7.1), e.g. app.immich:///oauth-callback.
        _ if usage == UriUse::Browser => Ok(Verdict::Ok),
        _ => Err(format!("\"{s}\" must be an http(s) URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn redirect(s: &str) -> Result<Verdict, String> {
        check_client_uri(s, false, UriUse::Browser)
    }

    #[test]
    fn loopback_hosts_are_localhost_127_slash_8_and_ipv6_one() {
        for s in [
            "http://localhost/",
            "http://LOCALHOST:3000/",
            "http://localhost./",
            "http://127.0.0.1/",
            "http://127.255.0.9:8080/",
            "http://[::1]:8080/",
        ] {
            assert!(is_loopback(&url(s)), "{s}");
        }
    }

    #[test]
    fn other_hosts_are_not_loopback() {
        for s in [
            "http://grafana.lan/",
            "http://localhost.example.com/",
            "http://mylocalhost/",
            "http://128.0.0.1/",
            "http://10.0.0.1/",
            "http://0.0.0.0/",
            "http://[::2]/",
            "http://[::ffff:8.8.8.8]/",
            "app.immich:///oauth-callback",
        ] {
            assert!(!is_loopback(&url(s)), "{s}");
        }
    }

    #[test]
    fn https_redirects_are_allowed() {
        assert_eq!(
            redirect("https://grafana.example.com/login/generic_oauth"),
            Ok(Verdict::Ok)
        );
        assert_eq!(redirect("https://host:8006"), Ok(Verdict::Ok));
    }

    #[test]
    fn plain_http_redirects_are_allowed_on_loopback() {
        assert_eq!(
            redirect("http://localhost:3000/login/generic_oauth"),
            Ok(Verdict::Ok)
        );
        assert_eq!(
            redirect("http://127.0.0.1:4180/oauth2/callback"),
            Ok(Verdict::Ok)
        );
        assert_eq!(redirect("http://[::1]/cb"), Ok(Verdict::Ok));
    }

    #[test]
    fn plain_http_redirects_on_other_hosts_are_rejected_with_the_way_out() {
        assert_eq!(
            redirect("http://grafana.lan/cb"),
            Err(
                "\"http://grafana.lan/cb\" uses plain http on a non-loopback host \
                 (set \"allow_insecure_redirects\": true on this client to allow it)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn plain_http_redirects_on_other_hosts_are_allowed_with_a_warning_when_the_client_opts_in() {
        let verdict = check_client_uri("http://grafana.lan/cb", true, UriUse::Browser).unwrap();
        let Verdict::Insecure(warning) = verdict else {
            panic!("expected a warning, got {verdict:?}");
        };
        assert!(
            warning.starts_with("\"http://grafana.lan/cb\" uses plain http"),
            "{warning}"
        );
    }

    #[test]
    fn custom_schemes_for_native_apps_are_allowed() {
        for s in [
            "app.immich:///oauth-callback",
            "audiobookshelf://oauth",
            "com.example.app:/oauth2redirect/example-provider",
        ] {
            assert_eq!(redirect(s), Ok(Verdict::Ok), "{s}");
        }
    }

    #[test]
    fn script_and_local_schemes_are_always_rejected_even_when_insecure_is_allowed() {
        for s in [
            "javascript:alert(1)",
            "JavaScript://x/%0aalert(1)",
            "data:text/html,<script>x</script>",
            "file:///etc/passwd",
            "vbscript:msgbox",
            "blob:https://example.com/uuid",
            "about:blank",
        ] {
            let error = check_client_uri(s, true, UriUse::Browser).unwrap_err();
            assert!(
                error.contains("scheme, which is never allowed"),
                "{s}: {error}"
            );
        }
    }

    #[test]
    fn fragments_are_rejected_even_when_empty() {
        for s in [
            "https://a.example/cb#x",
            "https://a.example/cb#",
            "app.immich:///cb#frag",
        ] {
            let error = redirect(s).unwrap_err();
            assert!(error.contains("has a fragment"), "{s}: {error}");
        }
    }

    #[test]
    fn relative_uris_are_rejected() {
        for s in ["/login/callback", "grafana.example.com/cb", ""] {
            let error = redirect(s).unwrap_err();
            assert!(error.contains("is not an absolute URL"), "{s}: {error}");
        }
    }

    #[test]
    fn uris_with_whitespace_are_rejected_instead_of_silently_trimmed() {
        for s in [
            " https://a.example/cb",
            "https://a.example/cb\n",
            "https://a.example/c b",
        ] {
            let error = redirect(s).unwrap_err();
            assert!(error.contains("whitespace"), "{s:?}: {error}");
        }
    }

    #[test]
    fn backchannel_logout_uris_must_be_http() {
        assert_eq!(
            check_client_uri("https://abs.example.com/logout", false, UriUse::Backchannel),
            Ok(Verdict::Ok)
        );
        assert_eq!(
            check_client_uri("audiobookshelf://logout", false, UriUse::Backchannel),
            Err("\"audiobookshelf://logout\" must be an http(s) URL".to_owned())
        );
    }

    #[test]
    fn an_https_issuer_with_or_without_path_is_accepted() {
        for s in [
            "https://auth.example.com",
            "https://auth.example.com/",
            "https://example.com/plex-oidc",
            "http://localhost:8080",
            "http://127.0.0.1:8080/",
        ] {
            assert_eq!(check_issuer(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn bad_issuers_are_rejected_with_the_reason() {
        let cases = [
            ("http://auth.lan", "uses plain http on a non-loopback host"),
            ("auth.example.com", "is not an absolute URL"),
            ("https://auth.example.com/#x", "has a fragment"),
            ("https://auth.example.com/?tenant=1", "has a query"),
            ("https://auth.example.com/?", "has a query"),
            ("https://user:pw@auth.example.com", "user name or password"),
            ("ftp://auth.example.com", "must be an https URL"),
            ("https://auth.example.com ", "whitespace"),
        ];
        for (issuer, expected) in cases {
            let error = check_issuer(issuer).unwrap_err();
            assert!(error.contains(expected), "{issuer}: {error}");
        }
    }

    #[test]
    fn upstream_urls_must_be_https_unless_on_loopback() {
        assert!(check_http_url("https://plex.tv").is_ok());
        assert!(check_http_url("http://127.0.0.1:9999").is_ok());
        let error = check_http_url("http://plex.lan").unwrap_err();
        assert!(error.contains("must be https"), "{error}");
        let error = check_http_url("plex.tv").unwrap_err();
        assert!(error.contains("is not an absolute URL"), "{error}");
    }
}
