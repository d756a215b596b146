//! JSON parsing that refuses duplicate keys: serde_json silently keeps the last one, which would hide a
//! second `redirect_uris` or `clients` the operator believes is in effect.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::ConfigError;

pub(super) fn parse(text: &str) -> Result<Value, ConfigError> {
    let duplicate_at = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = Node {
        path: String::new(),
        duplicate_at: &duplicate_at,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|error| match duplicate_at.into_inner() {
        Some(path) => ConfigError::new(
            path,
            format!("{error}; a key may appear only once in an object"),
        ),
        None => ConfigError::new("/", format!("not valid JSON: {error}")),
    })
}

/// Appends one reference token to a JSON Pointer (RFC 6901 escaping).
pub(super) fn pointer_push(path: &str, token: &str) -> String {
    format!("{path}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// Removes `key` from the object at JSON Pointer `object`, if both exist.
pub(super) fn remove_key(document: &mut Value, object: &str, key: &str) {
    if let Some(Value::Object(map)) = document.pointer_mut(object) {
        map.remove(key);
    }
}

struct Node<'a> {
    path: String,
    duplicate_at: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or infinity, so this never yields null in practice.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let element = Node {
                path: pointer_push(&self.path, &items.len().to_string()),
                duplicate_at: self.duplicate_at,
            };
            match seq.next_element_seed(element)? {
                Some(value) => items.push(value),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = pointer_push(&self.path, &key);
            if object.contains_key(&key) {
                *self.duplicate_at.borrow_mut() = Some(path);
                return Err(de::Error::custom(format_args!("duplicate key \"{key}\"")));
            }
            let value = map.next_value_seed(Node {
                path,
                duplicate_at: self.duplicate_at,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_json_parses_to_the_same_value_serde_json_gives() {
        let text = r#"{"a": [1, -2, 3.5, true, null, "x"], "b": {"c": {}}}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse(text).unwrap(), expected);
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let error = parse("{\n  \"issuer\": \"x\",\n}").unwrap_err();
        assert_eq!(error.path, "/");
        assert!(error.message.starts_with("not valid JSON: "), "{error}");
        assert!(error.message.contains("line 3 column 1"), "{error}");
    }

    #[test]
    fn trailing_content_after_the_document_is_an_error() {
        let error = parse("{} {}").unwrap_err();
        assert!(error.message.contains("trailing characters"), "{error}");
    }

    #[test]
    fn a_duplicate_key_is_reported_at_its_path_with_its_position() {
        let text = "{\"clients\": [{\"client_id\": \"a\",\n \"client_id\": \"b\"}]}";
        let error = parse(text).unwrap_err();
        assert_eq!(error.path, "/clients/0/client_id");
        assert!(
            error
                .message
                .starts_with("duplicate key \"client_id\" at line 2 column"),
            "{error}"
        );
    }

    #[test]
    fn the_same_key_in_different_objects_is_fine() {
        assert!(parse(r#"[{"a": 1}, {"a": 2}]"#).is_ok());
    }

    #[test]
    fn a_key_is_removed_from_the_object_a_pointer_names() {
        let mut document = serde_json::json!({"a": [{"x": 1, "y/z": 2}]});
        remove_key(&mut document, "/a/0", "y/z");
        remove_key(&mut document, "/missing", "x");
        assert_eq!(document, serde_json::json!({"a": [{"x": 1}]}));
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(pointer_push("/x", "a/b~c"), "/x/a~1b~0c");
        assert_eq!(pointer_push("", "issuer"), "/issuer");
    }
}
