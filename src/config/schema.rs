//! The embedded JSON Schema and the translation of its errors into sentences an operator can act on.

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::ConfigError;
use super::json::pointer_push;

const SCHEMA: &str = include_str!("../../schema/config.schema.json");

/// The JSON Schema (draft 2020-12) the configuration is validated against, as printed by `plex-oidc schema`.
pub fn schema_json() -> &'static str {
    SCHEMA
}

struct Compiled {
    schema: Value,
    validator: Validator,
}

/// Compiled once; a failure here is a build defect (a unit test compiles the schema), reported rather
/// than panicking.
static COMPILED: LazyLock<Result<Compiled, String>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SCHEMA).map_err(|e| e.to_string())?;
    let validator = jsonschema::draft202012::new(&schema).map_err(|e| e.to_string())?;
    Ok(Compiled { schema, validator })
});

#[derive(Debug, Default)]
pub(super) struct SchemaReport {
    /// Every violation, each at the JSON path of the offending value.
    pub errors: Vec<ConfigError>,
    /// Unknown keys as (path of their object, key), so later checks can look past them.
    pub unknown_keys: Vec<(String, String)>,
}

pub(super) fn validate(instance: &Value) -> SchemaReport {
    let compiled = match &*COMPILED {
        Ok(compiled) => compiled,
        Err(e) => {
            return SchemaReport {
                errors: vec![ConfigError::new(
                    "/",
                    format!("internal error: the embedded schema does not compile ({e})"),
                )],
                unknown_keys: Vec::new(),
            };
        }
    };
    let mut report = SchemaReport::default();
    for error in compiled.validator.iter_errors(instance) {
        translate(&error, &compiled.schema, &mut report);
    }
    report
}

/// The sentence for a client that gives none or several of the secret alternatives; shared with the
/// semantic check so both stages say the same thing.
pub(super) fn secret_alternatives_message(found: &[&str]) -> String {
    let found = if found.is_empty() {
        "found none".to_owned()
    } else {
        format!("found: {}", found.join(", "))
    };
    format!(
        "give exactly one of client_secret, client_secret_file, client_secret_hash or \"public\": true ({found})"
    )
}

/// Which of the mutually exclusive client keys an object sets, named as in the message.
pub(super) fn secret_alternatives_found(
    client: &serde_json::Map<String, Value>,
) -> Vec<&'static str> {
    let mut found = Vec::new();
    for key in ["client_secret", "client_secret_file", "client_secret_hash"] {
        if client.contains_key(key) {
            found.push(key);
        }
    }
    if client.get("public") == Some(&Value::Bool(true)) {
        found.push("\"public\": true");
    }
    found
}

fn translate(error: &ValidationError<'_>, schema: &Value, report: &mut SchemaReport) {
    let out = &mut report.errors;
    let path = error.instance_path().as_str();
    let instance: &Value = error.instance();
    let shown = || show(path, instance);
    let message = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known = known_keys(schema, error.schema_path().as_str());
            for key in unexpected {
                let hint = match closest(key, &known) {
                    Some(near) => format!(" (did you mean \"{near}\"?)"),
                    None if known.is_empty() => String::new(),
                    None => format!(" (known keys: {})", known.join(", ")),
                };
                out.push(ConfigError::new(
                    pointer_push(path, key),
                    format!("unknown key \"{key}\"{hint}"),
                ));
                report.unknown_keys.push((path.to_owned(), key.clone()));
            }
            return;
        }
        ValidationErrorKind::Required { property } => {
            let key = property.as_str().unwrap_or_default();
            out.push(ConfigError::new(
                pointer_push(path, key),
                "required key is missing",
            ));
            return;
        }
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. } => {
            // The only oneOf in the schema is the client's secret alternatives.
            match instance.as_object() {
                Some(client) => secret_alternatives_message(&secret_alternatives_found(client)),
                None => error.to_string(),
            }
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => article(&t.to_string()),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| article(&t.to_string()))
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!("expected {expected}, found {}", describe(path, instance))
        }
        ValidationErrorKind::MinItems { limit } => match limit {
            1 => "must list at least one entry".to_owned(),
            n => format!("must list at least {n} entries"),
        },
        ValidationErrorKind::MinLength { limit } => match limit {
            1 => "must not be empty".to_owned(),
            n => format!("must be at least {n} characters long"),
        },
        ValidationErrorKind::MaxLength { limit } => {
            format!("must be at most {limit} characters long")
        }
        ValidationErrorKind::Enum { options } => {
            let options = match &**options {
                Value::Array(items) => items
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            format!("{} is not one of {options}", shown())
        }
        ValidationErrorKind::Pattern { pattern } => pattern_message(schema, pattern, &shown()),
        _ => error.masked().to_string(),
    };
    out.push(ConfigError::new(path, message));
}

/// The description of the `$defs` entry that owns `pattern` says in words what the regex says.
fn pattern_message(schema: &Value, pattern: &str, shown: &str) -> String {
    let describe = |name: &str| {
        schema
            .pointer(&format!("/$defs/{name}/pattern"))
            .and_then(Value::as_str)
            == Some(pattern)
    };
    if describe("duration") {
        format!("{shown} is not a duration like \"90s\", \"15m\", \"1h30m\" or \"7d\"")
    } else if describe("cssColour") {
        format!("{shown} is not a CSS colour like \"#1f2937\", \"rgb(31 41 55)\" or \"teal\"")
    } else {
        format!("{shown} must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -")
    }
}

/// A value as it may appear in an error: secrets never do.
fn show(path: &str, value: &Value) -> String {
    if path.rsplit('/').next() == Some("client_secret") {
        "the value".to_owned()
    } else {
        value.to_string()
    }
}

fn describe(path: &str, value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => format!("a boolean ({})", show(path, value)),
        Value::Number(_) => format!("a number ({})", show(path, value)),
        Value::String(_) => format!("a string ({})", show(path, value)),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "array" | "object" | "integer" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

/// Keys allowed next to the one that failed `additionalProperties`.
fn known_keys(schema: &Value, schema_path: &str) -> Vec<String> {
    let parent = schema_path
        .strip_suffix("/additionalProperties")
        .unwrap_or(schema_path);
    schema
        .pointer(&format!("{parent}/properties"))
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .keys()
                .filter(|k| !k.starts_with('$'))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The known key an unknown one was probably meant to be: a small edit away, or differing only in case
/// and separators (`redirectUris` for `redirect_uris`).
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let squash = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let squashed = squash(key);
    known
        .iter()
        .map(|k| {
            let distance = if squash(k) == squashed {
                0
            } else {
                edit_distance(key, k)
            };
            (distance, k)
        })
        .filter(|(distance, k)| *distance <= 2.max(k.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous_diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous_diagonal + usize::from(ca != *cb);
            previous_diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(instance: Value) -> Vec<String> {
        validate(&instance)
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn minimal() -> Value {
        json!({
            "issuer": "https://auth.example.com",
            "plex": { "server_id": "abc" },
            "clients": [{ "client_id": "grafana", "client_secret": "s", "redirect_uris": ["https://g.example.com/cb"] }]
        })
    }

    #[test]
    fn the_embedded_schema_compiles_and_is_a_valid_2020_12_schema() {
        assert!(COMPILED.is_ok(), "{:?}", COMPILED.as_ref().err());
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        assert!(jsonschema::meta::is_valid(&schema));
    }

    #[test]
    fn every_object_in_the_schema_forbids_unknown_keys_and_every_key_is_described() {
        fn walk(node: &Value, at: &str) {
            let Some(object) = node.as_object() else {
                return;
            };
            if object.get("type") == Some(&json!("object")) {
                assert_eq!(
                    object.get("additionalProperties"),
                    Some(&json!(false)),
                    "{at}"
                );
            }
            if let Some(properties) = object.get("properties").and_then(Value::as_object) {
                for (key, property) in properties {
                    let has_description = property.get("description").is_some();
                    // Branches of the secret oneOf only restate a key described elsewhere.
                    assert!(
                        has_description || at.contains("oneOf"),
                        "{at}/properties/{key}"
                    );
                }
            }
            for (key, child) in object {
                match child {
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            walk(item, &format!("{at}/{key}/{i}"));
                        }
                    }
                    _ => walk(child, &format!("{at}/{key}")),
                }
            }
        }
        walk(&serde_json::from_str(SCHEMA).unwrap(), "");
    }

    #[test]
    fn a_minimal_config_satisfies_the_schema() {
        assert_eq!(errors(minimal()), Vec::<String>::new());
    }

    #[test]
    fn an_unknown_key_is_reported_at_its_own_path_with_a_suggestion() {
        let mut config = minimal();
        config["plex"]["serverid"] = json!("x");
        config["clients"][0]["redirectUris"] = json!([]);
        config["colour"] = json!("x");
        let found = errors(config);
        assert!(
            found.contains(
                &"/plex/serverid: unknown key \"serverid\" (did you mean \"server_id\"?)"
                    .to_owned()
            ),
            "{found:?}"
        );
        assert!(found.contains(&"/clients/0/redirectUris: unknown key \"redirectUris\" (did you mean \"redirect_uris\"?)".to_owned()), "{found:?}");
        assert!(
            found.iter().any(|e| e.starts_with(
                "/colour: unknown key \"colour\" (known keys: access, clients, exposed_secret_files, issuer, limits, listen,"
            )),
            "{found:?}"
        );
    }

    #[test]
    fn unknown_keys_are_listed_for_later_stages() {
        let mut config = minimal();
        config["clients"][0]["colour"] = json!("x");
        assert_eq!(
            validate(&config).unknown_keys,
            [("/clients/0".to_owned(), "colour".to_owned())]
        );
    }

    #[test]
    fn a_missing_required_key_is_reported_at_the_path_it_should_have() {
        let mut config = minimal();
        config["plex"].as_object_mut().unwrap().remove("server_id");
        config.as_object_mut().unwrap().remove("issuer");
        let found = errors(config);
        assert!(
            found.contains(&"/issuer: required key is missing".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"/plex/server_id: required key is missing".to_owned()),
            "{found:?}"
        );
    }

    #[test]
    fn a_wrong_type_names_expected_and_found() {
        let mut config = minimal();
        config["listen"] = json!(8080);
        config["clients"][0]["redirect_uris"] = json!("https://g.example.com/cb");
        let found = errors(config);
        assert!(
            found.contains(&"/listen: expected a string, found a number (8080)".to_owned()),
            "{found:?}"
        );
        assert!(found.contains(&"/clients/0/redirect_uris: expected an array, found a string (\"https://g.example.com/cb\")".to_owned()), "{found:?}");
    }

    #[test]
    fn a_wrongly_typed_inline_secret_is_not_echoed() {
        let mut config = minimal();
        config["clients"][0]["client_secret"] = json!(123456789);
        let found = errors(config);
        assert_eq!(
            found,
            ["/clients/0/client_secret: expected a string, found a number (the value)"]
        );
    }

    #[test]
    fn two_secrets_or_none_give_one_readable_sentence() {
        let mut config = minimal();
        config["clients"][0]["client_secret_hash"] = json!("$argon2id$...");
        let mut second = config["clients"][0].clone();
        second
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k == "client_id" || k == "redirect_uris");
        config["clients"].as_array_mut().unwrap().push(second);
        let mut third = config["clients"][1].clone();
        third["public"] = json!(false);
        config["clients"].as_array_mut().unwrap().push(third);
        assert_eq!(
            errors(config),
            [
                "/clients/0: give exactly one of client_secret, client_secret_file, client_secret_hash or \"public\": true (found: client_secret, client_secret_hash)",
                "/clients/1: give exactly one of client_secret, client_secret_file, client_secret_hash or \"public\": true (found none)",
                "/clients/2: give exactly one of client_secret, client_secret_file, client_secret_hash or \"public\": true (found none)",
            ]
        );
    }

    #[test]
    fn a_public_client_with_a_secret_is_rejected() {
        let mut config = minimal();
        config["clients"][0]["public"] = json!(true);
        assert_eq!(
            errors(config),
            [
                "/clients/0: give exactly one of client_secret, client_secret_file, client_secret_hash or \"public\": true (found: client_secret, \"public\": true)"
            ]
        );
    }

    #[test]
    fn patterns_are_explained_in_words() {
        let mut config = minimal();
        config["plex"]["request_timeout"] = json!("10 seconds");
        config["clients"][0]["client_id"] = json!("has space");
        config["theme"] = json!({ "accent": "red; background: url(x)" });
        let found = errors(config);
        assert!(found.contains(&"/plex/request_timeout: \"10 seconds\" is not a duration like \"90s\", \"15m\", \"1h30m\" or \"7d\"".to_owned()), "{found:?}");
        assert!(found.contains(&"/clients/0/client_id: \"has space\" must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -".to_owned()), "{found:?}");
        assert!(
            found
                .iter()
                .any(|e| e
                    .starts_with("/theme/accent: \"red; background: url(x)\" is not a CSS colour")),
            "{found:?}"
        );
    }

    #[test]
    fn enums_list_the_allowed_values() {
        let mut config = minimal();
        config["plex"]["login_mode"] = json!("window");
        assert_eq!(
            errors(config),
            ["/plex/login_mode: \"window\" is not one of \"auto\", \"popup\", \"redirect\""]
        );
    }

    #[test]
    fn empty_lists_and_strings_are_named() {
        let mut config = minimal();
        config["clients"][0]["redirect_uris"] = json!([]);
        config["plex"]["server_id"] = json!("");
        let found = errors(config);
        assert!(
            found.contains(&"/clients/0/redirect_uris: must list at least one entry".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"/plex/server_id: must not be empty".to_owned()),
            "{found:?}"
        );
    }

    #[test]
    fn a_document_that_is_not_an_object_is_reported_at_the_root() {
        assert_eq!(
            errors(json!([1])),
            ["/: expected an object, found an array"]
        );
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
