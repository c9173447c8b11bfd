//! Files of `www/` (demo site, dashboard, SDK build) served as they are, with safe path handling.

use super::reply::{self, Body};
use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use std::path::{Path, PathBuf};

/// The file under `root` that a URL path names, or `None` for a path that tries to leave `root` or names a
/// hidden file.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for segment in url_path.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') || segment.contains('\\') || segment.contains('\0') {
            return None;
        }
        path.push(segment);
    }
    if url_path.ends_with('/') || path == root {
        path.push("index.html");
    }
    Some(path)
}

pub async fn serve(root: Option<&Path>, url_path: &str) -> Response<Body> {
    let Some(root) = root else {
        return reply::refusal(&reply::Refusal::new(StatusCode::NOT_FOUND, "no_www_dir", "no www directory is configured (www_dir)"), vec![]);
    };
    let Some(mut file) = resolve(root, url_path) else { return reply::not_found(url_path) };
    if tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_dir()) {
        file.push("index.html");
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => {
            let mut response = Response::new(http_body_util::Full::new(bytes::Bytes::from(bytes)));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(&file)));
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Content-hashed names (`name.0123abcd.wasm`) never change: cache them for a year. The rest revalidates.
            let cache = if is_content_hashed(name) { "public, max-age=31536000, immutable" } else { "no-cache" };
            headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
            if is_sdk_file(root, &file) {
                // Sites load the SDK from their own pages, on other origins: `footprint.js` fetches its `.wasm`, which
                // CORS governs (without this the module never starts there). Public code, no credentials: any origin.
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            }
            response
        }
        Err(_) => reply::not_found(url_path),
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The script-tag build: `footprint.js` and the files it loads next to it (`footprint.<hash>.wasm`), at the root.
fn is_sdk_file(root: &Path, file: &Path) -> bool {
    file.parent() == Some(root) && file.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("footprint."))
}

/// `footprint.1a2b3c4d.wasm`: a middle segment of at least 8 hex digits.
fn is_content_hashed(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 3 && parts[parts.len() - 2].len() >= 8 && parts[parts.len() - 2].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_files_are_the_footprint_files_at_the_root() {
        let root = Path::new("/srv/www");
        assert!(is_sdk_file(root, Path::new("/srv/www/footprint.js")));
        assert!(is_sdk_file(root, Path::new("/srv/www/footprint.0123abcd45.wasm")));
        assert!(!is_sdk_file(root, Path::new("/srv/www/dashboard/footprint.js")));
        assert!(!is_sdk_file(root, Path::new("/srv/www/index.html")));
    }

    #[test]
    fn paths_cannot_escape_the_root() {
        let root = Path::new("/srv/www");
        assert_eq!(resolve(root, "/"), Some(PathBuf::from("/srv/www/index.html")));
        assert_eq!(resolve(root, "/demo/"), Some(PathBuf::from("/srv/www/demo/index.html")));
        assert_eq!(resolve(root, "/app.js"), Some(PathBuf::from("/srv/www/app.js")));
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/.git/config"), None);
        assert_eq!(resolve(root, "/a\\..\\b"), None);
        assert!(is_content_hashed("footprint.0123abcd.wasm"));
        assert!(!is_content_hashed("footprint.js"));
    }
}
