//! Protocol parameters as received, with the RFC 6749 §3.1 rules: no parameter twice, empty means absent.

/// No single value we accept legitimately comes near this (an `id_token_hint` is the longest, ~2 KB);
/// anything longer is refused before it is copied anywhere.
pub const MAX_VALUE_LEN: usize = 4096;
/// Bounds the work spent on a request stuffed with junk parameters.
pub const MAX_PARAMS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter {0} is given more than once")]
    Duplicate(String),
    #[error("parameter {0} is longer than {MAX_VALUE_LEN} bytes")]
    TooLong(String),
    #[error("the request has more than {MAX_PARAMS} parameters")]
    TooMany,
}

#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Params, ParamError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut out = Vec::new();
        for (k, v) in pairs {
            if out.len() == MAX_PARAMS {
                return Err(ParamError::TooMany);
            }
            let (k, v) = (k.as_ref(), v.as_ref());
            if v.len() > MAX_VALUE_LEN || k.len() > MAX_VALUE_LEN {
                return Err(ParamError::TooLong(truncate_name(k)));
            }
            out.push((k.to_owned(), v.to_owned()));
        }
        Ok(Params { pairs: out })
    }

    /// Parses an `application/x-www-form-urlencoded` body or query string.
    pub fn from_urlencoded(input: &[u8]) -> Result<Params, ParamError> {
        Params::from_pairs(url::form_urlencoded::parse(input))
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Result<Option<&str>, ParamError> {
        let mut found = None;
        for (k, v) in &self.pairs {
            if k == name {
                if found.is_some() {
                    return Err(ParamError::Duplicate(name.to_owned()));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found.filter(|v| !v.is_empty()))
    }

    /// The parameters again as a query string (to repeat a request).
    pub fn to_query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish()
    }

    /// Checks several names at once, so a duplicate anywhere is reported before any value is used.
    pub fn check_unique(&self, names: &[&str]) -> Result<(), ParamError> {
        names.iter().try_for_each(|n| self.get(n).map(|_| ()))
    }
}

fn truncate_name(name: &str) -> String {
    name.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_value_counts_as_absent() {
        let p = Params::from_urlencoded(b"state=&nonce=n").unwrap();
        assert_eq!(p.get("state").unwrap(), None);
        assert_eq!(p.get("nonce").unwrap(), Some("n"));
    }

    #[test]
    fn a_repeated_parameter_is_an_error() {
        let p = Params::from_urlencoded(b"scope=openid&scope=email").unwrap();
        assert_eq!(p.get("scope"), Err(ParamError::Duplicate("scope".into())));
    }

    #[test]
    fn an_oversized_value_is_refused_at_parse_time() {
        let body = format!("state={}", "a".repeat(100 * 1024));
        assert_eq!(
            Params::from_urlencoded(body.as_bytes()).unwrap_err(),
            ParamError::TooLong("state".into())
        );
    }

    #[test]
    fn too_many_parameters_are_refused() {
        let body: String = (0..=MAX_PARAMS).map(|i| format!("p{i}=x&")).collect();
        assert_eq!(
            Params::from_urlencoded(body.as_bytes()).unwrap_err(),
            ParamError::TooMany
        );
    }
}
