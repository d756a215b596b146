//! `/assets/*`: embedded or themed files, cached for ever when requested by their content hash.

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;

use super::pages;

#[handler]
pub(crate) async fn asset(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(pages) = pages(depot) else {
        res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
        return;
    };
    let path: String = req.param("path").unwrap_or_default();
    // Templates and strings are rendered server-side, never served raw.
    let Some(file) = pages
        .assets
        .file(&path)
        .filter(|_| !path.ends_with(".html"))
    else {
        res.status_code(StatusCode::NOT_FOUND);
        return;
    };
    let versioned = req.query::<String>("v").is_some_and(|v| v == file.version);
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if versioned {
            "public, max-age=31536000, immutable"
        } else {
            "public, max-age=300"
        }),
    );
    if let Ok(etag) = HeaderValue::from_str(&file.etag) {
        headers.insert(header::ETAG, etag);
    }
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == file.etag));
    if not_modified {
        res.status_code(StatusCode::NOT_MODIFIED);
        return;
    }
    let _ = res.write_body(file.body.clone());
}
