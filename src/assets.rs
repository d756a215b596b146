//! The page's files: embedded in the binary, each overridable by a file of the same relative path in
//! `theme.dir`, and the tiny template language that fills them (`{{name}}`, `{{t:key}}`, `{{asset:path}}`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{SHA256, digest};
use include_dir::{Dir, include_dir};

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/assets");

const DEFAULT_LANGUAGE: &str = "en";

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("cannot read theme file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// A file served under `/assets/`, with what caching needs, computed once at start.
#[derive(Debug, Clone)]
pub struct Asset {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub etag: String,
    /// Content hash used as `?v=` so a changed file gets a new URL and old ones can be cached for ever.
    pub version: String,
}

/// Operator values for `theme.css`.
#[derive(Debug, Clone, Default)]
pub struct ThemeValues {
    pub accent: Option<String>,
    pub background: Option<String>,
}

#[derive(Debug)]
pub struct Assets {
    files: HashMap<String, Asset>,
    templates: HashMap<String, String>,
    languages: Vec<(String, HashMap<String, String>)>,
    base_path: String,
}

impl Assets {
    /// Loads the embedded files, then the overrides from `theme_dir`. `base_path` is the issuer's path
    /// (empty at the root), so URLs work when the service lives under a prefix.
    pub fn load(
        theme_dir: Option<&Path>,
        theme: &ThemeValues,
        base_path: &str,
    ) -> Result<Assets, AssetError> {
        let mut raw: Vec<(String, Vec<u8>)> = Vec::new();
        collect(&EMBEDDED, &mut raw);
        if let Some(dir) = theme_dir {
            // Same relative path: replaces the embedded file; anything else (a logo, a font, a new
            // language) is added.
            let mut themed = Vec::new();
            collect_dir(dir, dir, 0, &mut themed)?;
            for (path, bytes) in themed {
                match raw.iter_mut().find(|(p, _)| *p == path) {
                    Some((_, body)) => *body = bytes,
                    None => raw.push((path, bytes)),
                }
            }
        }
        let mut assets = Assets {
            files: HashMap::new(),
            templates: HashMap::new(),
            languages: Vec::new(),
            base_path: base_path.trim_end_matches('/').to_owned(),
        };
        for (path, body) in raw {
            if let Some(lang) = path
                .strip_prefix("i18n/")
                .and_then(|p| p.strip_suffix(".json"))
            {
                let strings: HashMap<String, String> =
                    serde_json::from_slice(&body).map_err(|e| AssetError::Invalid {
                        path: path.clone(),
                        reason: format!("not a flat JSON object of strings: {e}"),
                    })?;
                assets.languages.push((lang.to_owned(), strings));
            } else if path.ends_with(".html") {
                let text = String::from_utf8(body).map_err(|_| AssetError::Invalid {
                    path: path.clone(),
                    reason: "not UTF-8".into(),
                })?;
                assets.templates.insert(path, text);
            } else if path == "theme.css" {
                let text = String::from_utf8(body).map_err(|_| AssetError::Invalid {
                    path: path.clone(),
                    reason: "not UTF-8".into(),
                })?;
                let accent = css_value(theme.accent.as_deref());
                let background = css_value(theme.background.as_deref());
                let rendered = substitute(&text, |key| match key {
                    "accent" => Some(accent.clone()),
                    "background" => Some(background.clone()),
                    _ => None,
                });
                assets.insert_file(path, rendered.into_bytes());
            } else {
                assets.insert_file(path, body);
            }
        }
        assets.languages.sort_by(|a, b| a.0.cmp(&b.0));
        if !assets.languages.iter().any(|(l, _)| l == DEFAULT_LANGUAGE) {
            return Err(AssetError::Invalid {
                path: "i18n/en.json".into(),
                reason: "the English strings are missing".into(),
            });
        }
        Ok(assets)
    }

    fn insert_file(&mut self, path: String, body: Vec<u8>) {
        let hash = digest(&SHA256, &body);
        let version: String = hash.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let asset = Asset {
            content_type: content_type(&path),
            etag: format!("\"{version}\""),
            version,
            body,
        };
        self.files.insert(path, asset);
    }

    pub fn file(&self, path: &str) -> Option<&Asset> {
        self.files.get(path)
    }

    /// The shipped language that best matches `Accept-Language` (RFC 9110 §12.5.4, primary tags only).
    pub fn pick_language(&self, accept_language: Option<&str>) -> &str {
        let mut wanted: Vec<(f32, &str)> = accept_language
            .unwrap_or("")
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.trim().split(';');
                let tag = pieces.next()?.trim();
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (!tag.is_empty() && q > 0.0).then_some((q, tag))
            })
            .collect();
        wanted.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, tag) in wanted {
            let primary = tag.split('-').next().unwrap_or(tag).to_ascii_lowercase();
            if let Some((lang, _)) = self.languages.iter().find(|(l, _)| *l == primary) {
                return lang;
            }
        }
        DEFAULT_LANGUAGE
    }

    /// Renders an HTML template. Values and translated strings are HTML-escaped; a translated string
    /// may itself use `{{name}}` variables.
    pub fn render(&self, template: &str, lang: &str, vars: &[(&str, &str)]) -> Option<String> {
        let text = self.templates.get(template)?;
        let strings = self.strings(lang);
        let fallback = self.strings(DEFAULT_LANGUAGE);
        let var = |key: &str| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        Some(substitute(text, |key| {
            if key == "lang" {
                return Some(lang.to_owned());
            }
            if let Some(name) = key.strip_prefix("t:") {
                let s = strings.get(name).or_else(|| fallback.get(name))?;
                return Some(substitute(&escape_html(s), |k| var(k).map(escape_html)));
            }
            if let Some(path) = key.strip_prefix("asset:") {
                return Some(escape_html(&self.asset_url(path)));
            }
            var(key).map(escape_html)
        }))
    }

    /// `/assets/<path>?v=<hash>`: the URL under which a file may be cached for ever.
    pub fn asset_url(&self, path: &str) -> String {
        match self.files.get(path) {
            Some(a) => format!("{}/assets/{path}?v={}", self.base_path, a.version),
            None => format!("{}/assets/{path}", self.base_path),
        }
    }

    fn strings(&self, lang: &str) -> &HashMap<String, String> {
        static EMPTY: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();
        self.languages
            .iter()
            .find(|(l, _)| l == lang)
            .map(|(_, s)| s)
            .unwrap_or_else(|| EMPTY.get_or_init(HashMap::new))
    }

    /// Bytes of the page as first loaded: the HTML template plus the files it references.
    pub fn page_weight(&self) -> usize {
        let html = self.templates.get("login.html").map_or(0, String::len);
        [
            "login.css",
            "theme.css",
            "custom.css",
            "login.js",
            "favicon.svg",
        ]
        .iter()
        .filter_map(|p| self.files.get(*p))
        .map(|a| a.body.len())
        .sum::<usize>()
            + html
    }
}

/// Bounds on what a theme directory may hold: it is read whole into memory at start.
const MAX_THEME_FILES: usize = 256;
const MAX_THEME_FILE_BYTES: u64 = 4 * 1024 * 1024;
const MAX_THEME_DEPTH: usize = 4;

fn collect_dir(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), AssetError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AssetError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(io(&path))?;
        if meta.is_dir() {
            if depth < MAX_THEME_DEPTH {
                collect_dir(root, &path, depth + 1, out)?;
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        if relative.is_empty() || relative.split('/').any(|c| c.starts_with('.')) {
            continue;
        }
        if out.len() >= MAX_THEME_FILES || meta.len() > MAX_THEME_FILE_BYTES {
            return Err(AssetError::Invalid {
                path: relative,
                reason: format!(
                    "theme.dir may hold at most {MAX_THEME_FILES} files of at most {MAX_THEME_FILE_BYTES} bytes"
                ),
            });
        }
        out.push((relative, std::fs::read(&path).map_err(io(&path))?));
    }
    Ok(())
}

fn collect(dir: &Dir<'_>, out: &mut Vec<(String, Vec<u8>)>) {
    for file in dir.files() {
        out.push((
            file.path().to_string_lossy().replace('\\', "/"),
            file.contents().to_vec(),
        ));
    }
    for sub in dir.dirs() {
        collect(sub, out);
    }
}

/// Replaces each `{{key}}` for which `lookup` has a value; unknown keys become empty.
fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                if let Some(value) = lookup(after[..end].trim()) {
                    out.push_str(&value);
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A config colour is placed into CSS: keep only characters a colour value can have, so it cannot
/// close the rule and inject other CSS.
fn css_value(value: Option<&str>) -> String {
    value
        .unwrap_or("")
        .chars()
        .filter(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '#' | '(' | ')' | ',' | '.' | '%' | ' ' | '-' | '/')
        })
        .take(64)
        .collect()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assets() -> Assets {
        Assets::load(None, &ThemeValues::default(), "").unwrap()
    }

    #[test]
    fn values_are_escaped_and_unknown_keys_vanish() {
        let out = substitute("a{{x}}b{{y}}c", |k| (k == "x").then(|| escape_html("<i>")));
        assert_eq!(out, "a&lt;i&gt;bc");
    }

    #[test]
    fn the_best_shipped_language_is_picked() {
        let a = assets();
        assert_eq!(a.pick_language(Some("de-DE,de;q=0.9,en;q=0.8")), "de");
        assert_eq!(a.pick_language(Some("fr-FR, en;q=0.5")), "en");
        assert_eq!(a.pick_language(Some("fr")), "en");
        assert_eq!(a.pick_language(None), "en");
        assert_eq!(a.pick_language(Some("en;q=0.1, de;q=0.9")), "de");
    }

    #[test]
    fn asset_urls_carry_a_content_hash() {
        let a = assets();
        let url = a.asset_url("login.css");
        assert!(url.starts_with("/assets/login.css?v="), "{url}");
    }

    #[test]
    fn css_values_cannot_break_out_of_the_rule() {
        assert_eq!(
            css_value(Some("red;} body{display:none")),
            "red bodydisplaynone"
        );
        assert_eq!(css_value(Some("#e5a00d")), "#e5a00d");
    }

    #[test]
    fn the_login_template_renders_translated_strings() {
        let a = assets();
        let html = a
            .render(
                "login.html",
                "de",
                &[("state", "ready"), ("client_name", "<Grafana>")],
            )
            .unwrap();
        assert!(html.contains("data-state=\"ready\""));
        assert!(!html.contains("{{"), "unrendered placeholder left");
        assert!(!html.contains("<Grafana>"));
    }
}
