//! plex.tv's objects as plex-oidc sees them, and their lenient parsing.
//!
//! Parsing goes through `serde_json::Value` rather than derived structs: plex.tv nulls, drops and
//! retypes fields (booleans as `0`/`1`, ids as strings), and a missing cosmetic field must not turn a
//! valid sign-in into an error. Only the fields without which nothing works (a PIN's id and code, a
//! user's id) are required.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::PlexError;

/// plex.tv's id of a PIN. Kept server-side: a PIN id in a URL lets an attacker hand a victim a PIN the
/// attacker approved (login CSRF).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PinId(i64);

impl PinId {
    pub fn new(id: i64) -> Self {
        PinId(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A Plex account token: full access to the account, so it never reaches logs, pages or claims.
/// Deliberately not `PartialEq`: nothing should compare tokens, least of all in non-constant time.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlexToken(String);

impl PlexToken {
    pub fn new(token: impl Into<String>) -> Self {
        PlexToken(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PlexToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlexToken(***)")
    }
}

/// A PIN as created or checked. `auth_token` is set once the user approved it in the auth app.
#[derive(Clone)]
pub struct Pin {
    pub id: PinId,
    /// What the auth app needs (`code=` in its fragment); treated like a secret in logs.
    pub code: String,
    /// Derived from `expiresIn` against our own clock (plex.tv's clock may differ from ours), falling
    /// back to `expiresAt`.
    pub expires_at: Option<SystemTime>,
    pub expires_in: Option<u64>,
    pub auth_token: Option<PlexToken>,
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pin")
            .field("id", &self.id)
            .field("code", &"***")
            .field("expires_at", &self.expires_at)
            .field("expires_in", &self.expires_in)
            .field("auth_token", &self.auth_token)
            .finish()
    }
}

/// The account behind a token (`GET /api/v2/user`). The token plex.tv echoes back is dropped.
/// Empty strings are normalised to `None` so that "omit a claim whose value is missing" is one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlexUser {
    pub id: i64,
    pub uuid: String,
    pub username: Option<String>,
    pub title: Option<String>,
    pub email: Option<String>,
    pub friendly_name: Option<String>,
    pub confirmed: bool,
    pub thumb: Option<String>,
    /// A managed Plex Home user.
    pub restricted: bool,
    pub home: bool,
    pub home_admin: bool,
}

/// One entry of `GET /api/v2/resources`: a server or client device the account can see.
/// The entry's access token is deliberately not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub name: Option<String>,
    pub client_identifier: Option<String>,
    /// Comma-separated roles, e.g. `server` or `client,player`.
    pub provides: Option<String>,
    pub owned: bool,
    pub home: bool,
    pub owner_id: Option<i64>,
    pub source_title: Option<String>,
}

pub(crate) fn parse_pin(body: &[u8], now: SystemTime) -> Result<Pin, PlexError> {
    let value = parse_json(body)?;
    let obj = object(&value, "PIN")?;
    let id = int(obj, "id").ok_or_else(|| missing("PIN", "id"))?;
    let code = string(obj, "code").ok_or_else(|| missing("PIN", "code"))?;
    let expires_in = int(obj, "expiresIn").map(|s| s.max(0) as u64);
    let expires_at = match expires_in {
        Some(secs) => now.checked_add(Duration::from_secs(secs)),
        None => obj
            .get("expiresAt")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339),
    };
    Ok(Pin {
        id: PinId(id),
        code,
        expires_at,
        expires_in,
        auth_token: string(obj, "authToken").map(PlexToken),
    })
}

pub(crate) fn parse_user(body: &[u8]) -> Result<PlexUser, PlexError> {
    let value = parse_json(body)?;
    let obj = object(&value, "user")?;
    Ok(PlexUser {
        id: int(obj, "id").ok_or_else(|| missing("user", "id"))?,
        uuid: string(obj, "uuid").unwrap_or_default(),
        username: string(obj, "username"),
        title: string(obj, "title"),
        email: string(obj, "email"),
        friendly_name: string(obj, "friendlyName"),
        confirmed: flag(obj, "confirmed"),
        thumb: string(obj, "thumb"),
        restricted: flag(obj, "restricted"),
        home: flag(obj, "home"),
        home_admin: flag(obj, "homeAdmin"),
    })
}

pub(crate) fn parse_resources(body: &[u8]) -> Result<Vec<Resource>, PlexError> {
    let value = parse_json(body)?;
    let Value::Array(entries) = value else {
        return Err(PlexError::UnexpectedResponse(
            "resources is not a JSON array".into(),
        ));
    };
    // A non-object entry cannot describe a server; skipping it can only withhold access.
    Ok(entries
        .iter()
        .filter_map(Value::as_object)
        .map(|obj| Resource {
            name: string(obj, "name"),
            client_identifier: string(obj, "clientIdentifier"),
            provides: string(obj, "provides"),
            owned: flag(obj, "owned"),
            home: flag(obj, "home"),
            owner_id: int(obj, "ownerId"),
            source_title: string(obj, "sourceTitle"),
        })
        .collect())
}

/// The `code` of plex.tv's error envelope `{"errors":[{"code":N,…}]}`, if the body is one.
pub(crate) fn error_code(body: &[u8]) -> Option<i64> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let first = value.get("errors")?.as_array()?.first()?.as_object()?;
    int(first, "code")
}

fn parse_json(body: &[u8]) -> Result<Value, PlexError> {
    serde_json::from_slice(body).map_err(|e| {
        let hint = if body.trim_ascii_start().starts_with(b"<") {
            "XML or HTML instead of JSON"
        } else {
            "malformed JSON"
        };
        PlexError::UnexpectedResponse(format!("{hint} (line {}, column {})", e.line(), e.column()))
    })
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, PlexError> {
    value
        .as_object()
        .ok_or_else(|| PlexError::UnexpectedResponse(format!("{what} is not a JSON object")))
}

fn missing(what: &str, field: &str) -> PlexError {
    PlexError::UnexpectedResponse(format!("{what} has no usable `{field}`"))
}

fn string(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(obj: &Map<String, Value>, key: &str) -> Option<i64> {
    match obj.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Booleans arrive as `true`, `1` or `"1"` depending on the route; anything unrecognised is false.
fn flag(obj: &Map<String, Value>, key: &str) -> bool {
    match obj.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => {
            let s = s.trim();
            s == "1" || s.eq_ignore_ascii_case("true")
        }
        _ => false,
    }
}

/// RFC 3339 (`2023-04-12T17:00:03Z`, with or without fractional seconds, `Z` or a numeric offset).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.trim().as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Leap seconds are folded into the next second's start.
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = &b[start..i];
        if frac.is_empty() {
            return None;
        }
        for (pos, d) in frac.iter().take(9).enumerate() {
            nanos += u32::from(d - b'0') * 10u32.pow(8 - pos as u32);
        }
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let offset = oh * 3600 + om * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = PlexToken::new("CxoUzBTSV5hsxjTpFKaf");
        assert_eq!(format!("{token:?}"), "PlexToken(***)");
        let pin = Pin {
            id: PinId::new(7),
            code: "3patfx1a78ukcbr7x0n9bl26t".into(),
            expires_at: None,
            expires_in: None,
            auth_token: Some(token),
        };
        let debug = format!("{pin:?}");
        assert!(!debug.contains("CxoUzBTSV5hsxjTpFKaf"), "{debug}");
        assert!(!debug.contains("3patfx1a78ukcbr7x0n9bl26t"), "{debug}");
    }

    #[test]
    fn a_token_serializes_as_a_plain_string_and_back() {
        let token = PlexToken::new("abc.def-ghi");
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, "\"abc.def-ghi\"");
        let back: PlexToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose(), "abc.def-ghi");
    }

    #[test]
    fn a_created_pin_is_parsed_with_expiry_relative_to_our_clock() {
        let body = br#"{"id":1272322473,"code":"3patfx1a78ukcbr7x0n9bl26t","product":"plex-oidc",
            "trusted":false,"qr":"https://plex.tv/api/v2/pins/qr/3patfx1a78ukcbr7x0n9bl26t",
            "clientIdentifier":"abc","location":{"code":"US","country":"United States"},
            "expiresIn":1800,"createdAt":"2023-04-12T17:00:03Z","expiresAt":"2023-04-12T17:30:03Z",
            "authToken":null,"newRegistration":null}"#;
        let pin = parse_pin(body, at(1_000)).unwrap();
        assert_eq!(pin.id, PinId::new(1_272_322_473));
        assert_eq!(pin.code, "3patfx1a78ukcbr7x0n9bl26t");
        assert_eq!(pin.expires_in, Some(1800));
        assert_eq!(pin.expires_at, Some(at(2_800)));
        assert!(pin.auth_token.is_none());
    }

    #[test]
    fn a_pin_without_expires_in_falls_back_to_expires_at() {
        let body =
            br#"{"id":"5","code":"ABCD","expiresAt":"2023-04-12T17:30:03.250Z","authToken":"tok"}"#;
        let pin = parse_pin(body, at(0)).unwrap();
        assert_eq!(pin.id, PinId::new(5));
        assert_eq!(pin.expires_in, None);
        assert_eq!(
            pin.expires_at,
            Some(at(1_681_320_603) + Duration::from_millis(250))
        );
        assert_eq!(pin.auth_token.unwrap().expose(), "tok");
    }

    #[test]
    fn an_empty_auth_token_means_not_yet_approved() {
        let pin = parse_pin(br#"{"id":1,"code":"c","authToken":""}"#, at(0)).unwrap();
        assert!(pin.auth_token.is_none());
    }

    #[test]
    fn a_pin_without_id_or_code_is_an_unexpected_response() {
        for body in [
            &br#"{"code":"c"}"#[..],
            br#"{"id":1}"#,
            br#"{"id":1,"code":""}"#,
            br#"[]"#,
        ] {
            let err = parse_pin(body, at(0)).unwrap_err();
            assert!(matches!(err, PlexError::UnexpectedResponse(_)), "{err:?}");
        }
    }

    #[test]
    fn xml_and_truncated_json_are_unexpected_responses() {
        let xml = parse_user(br#"<?xml version="1.0"?><user id="1"/>"#).unwrap_err();
        assert!(
            matches!(&xml, PlexError::UnexpectedResponse(m) if m.contains("XML")),
            "{xml:?}"
        );
        let truncated = parse_user(br#"{"id":1,"uuid":"ab"#).unwrap_err();
        assert!(
            matches!(&truncated, PlexError::UnexpectedResponse(m) if m.contains("malformed")),
            "{truncated:?}"
        );
    }

    #[test]
    fn a_user_is_parsed_without_keeping_its_token() {
        let body = br#"{"id":13692262,"uuid":"dae343c1f45beb4f","username":"alice","title":"alice",
            "email":"a@example.com","friendlyName":"","locale":null,"confirmed":true,"joinedAt":1556281940,
            "thumb":"https://plex.tv/users/dae343c1f45beb4f/avatar?c=1556281940","authToken":"secret-token",
            "restricted":false,"home":false,"homeAdmin":false,
            "subscription":{"active":false,"status":"Inactive","plan":null}}"#;
        let user = parse_user(body).unwrap();
        assert_eq!(
            user,
            PlexUser {
                id: 13_692_262,
                uuid: "dae343c1f45beb4f".into(),
                username: Some("alice".into()),
                title: Some("alice".into()),
                email: Some("a@example.com".into()),
                friendly_name: None,
                confirmed: true,
                thumb: Some("https://plex.tv/users/dae343c1f45beb4f/avatar?c=1556281940".into()),
                restricted: false,
                home: false,
                home_admin: false,
            }
        );
        assert!(
            !serde_json::to_string(&user)
                .unwrap()
                .contains("secret-token")
        );
    }

    #[test]
    fn a_user_with_nulls_missing_fields_and_numeric_booleans_still_parses() {
        let body = br#"{"id":"42","username":null,"email":null,"confirmed":null,"restricted":1,
            "home":"1","homeAdmin":"0"}"#;
        let user = parse_user(body).unwrap();
        assert_eq!(user.id, 42);
        assert_eq!(user.uuid, "");
        assert_eq!(user.username, None);
        assert_eq!(user.email, None);
        assert!(!user.confirmed);
        assert!(user.restricted);
        assert!(user.home);
        assert!(!user.home_admin);
    }

    #[test]
    fn a_user_without_an_id_is_rejected_rather_than_given_a_default_subject() {
        let err = parse_user(br#"{"uuid":"dae343c1f45beb4f","username":"alice"}"#).unwrap_err();
        assert!(matches!(err, PlexError::UnexpectedResponse(_)), "{err:?}");
    }

    #[test]
    fn resources_tolerate_missing_fields_nulls_and_junk_entries() {
        let body = br#"[
            {"name":"Srv","product":"Plex Media Server","clientIdentifier":"mid","provides":"server",
             "owned":true,"home":false,"ownerId":null,"sourceTitle":null,"accessToken":"server-token",
             "connections":[{"protocol":"https","address":"10.0.0.5","port":32400}]},
            {"clientIdentifier":"other","provides":"server","accessToken":null,"ownerId":"17"},
            42,
            {"provides":"client,player"}
        ]"#;
        let resources = parse_resources(body).unwrap();
        assert_eq!(resources.len(), 3);
        assert_eq!(resources[0].name.as_deref(), Some("Srv"));
        assert!(resources[0].owned);
        assert_eq!(resources[0].owner_id, None);
        assert_eq!(resources[1].client_identifier.as_deref(), Some("other"));
        assert!(!resources[1].owned);
        assert_eq!(resources[1].owner_id, Some(17));
        assert_eq!(
            resources[2],
            Resource {
                provides: Some("client,player".into()),
                ..Resource::default()
            }
        );
    }

    #[test]
    fn resources_that_are_not_an_array_are_unexpected() {
        let err = parse_resources(br#"{"MediaContainer":{}}"#).unwrap_err();
        assert!(matches!(err, PlexError::UnexpectedResponse(_)), "{err:?}");
    }

    #[test]
    fn the_error_code_is_read_from_plexs_error_envelope() {
        let body =
            br#"{"errors":[{"code":1020,"message":"Code not found or expired","status":404}]}"#;
        assert_eq!(error_code(body), Some(1020));
        assert_eq!(error_code(br#"{"errors":[{"code":1001}]}"#), Some(1001));
        assert_eq!(error_code(br#"{"status":404,"error":"Not Found"}"#), None);
        assert_eq!(error_code(b"<html>502</html>"), None);
    }

    #[test]
    fn rfc3339_dates_parse_with_or_without_millis_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0)));
        assert_eq!(
            parse_rfc3339("2023-04-12T17:00:03Z"),
            Some(at(1_681_318_803))
        );
        assert_eq!(
            parse_rfc3339("2023-04-12T17:00:03.5Z"),
            Some(at(1_681_318_803) + Duration::from_millis(500))
        );
        assert_eq!(
            parse_rfc3339("2023-04-12T19:00:03+02:00"),
            Some(at(1_681_318_803))
        );
        assert_eq!(
            parse_rfc3339("2023-04-12T12:00:03-05:00"),
            Some(at(1_681_318_803))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(at(1_709_164_800))
        );
    }

    #[test]
    fn malformed_dates_are_rejected_not_guessed() {
        for s in [
            "",
            "2023-04-12",
            "2023-04-12T17:00:03",
            "2023-13-12T17:00:03Z",
            "2023-04-12T25:00:03Z",
            "2023-04-12T17:00:03.Z",
            "2023-04-12T17:00:03+0200",
            "2023-04-12T17:00:03Zjunk",
            "20x3-04-12T17:00:03Z",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }
}
