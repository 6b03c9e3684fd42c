//! The route table as `daef-http`'s `route.rs` documents it: each variant of `enum Route` carries
//! a doc comment naming its method and path (`` /// `GET /v1/jobs/{id}` ``). Reading the source
//! (rather than a list kept elsewhere) means a new route cannot be added without being seen
//! here; the test then checks each documented pair against `Route::parse` itself.

/// One variant of `enum Route` and the request line its doc comment names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDoc {
    /// The variant's name.
    pub variant: String,
    /// Upper-case method.
    pub method: String,
    /// Path template.
    pub path: String,
}

/// The documented request line of every variant of `pub enum Route` in `source`. Errors when the
/// enum is missing or a variant has no `` `METHOD /path` `` in its doc comment.
pub fn documented_routes(source: &str) -> Result<Vec<RouteDoc>, String> {
    let start = source
        .find("pub enum Route {")
        .ok_or("no `pub enum Route {` in the source")?;
    let body_start = start + "pub enum Route {".len();
    let body_len = source[body_start..]
        .find("\n}")
        .ok_or("`enum Route` is not closed")?;
    let body = &source[body_start..body_start + body_len];
    let mut routes = Vec::new();
    let mut docs: Vec<&str> = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(doc) = line.strip_prefix("///") {
            docs.push(doc.trim());
            continue;
        }
        if line.is_empty() || line.starts_with("#[") || line.starts_with("//") {
            continue;
        }
        let variant: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if variant.is_empty() {
            return Err(format!("cannot read the variant in {line:?}"));
        }
        let request_line = docs
            .iter()
            .find_map(|doc| request_line(doc))
            .ok_or_else(|| format!("Route::{variant} has no `METHOD /path` in its doc comment"))?;
        routes.push(RouteDoc {
            variant,
            method: request_line.0,
            path: request_line.1,
        });
        docs.clear();
    }
    Ok(routes)
}

/// `` `GET /v1/jobs` (anything) `` → `("GET", "/v1/jobs")`.
fn request_line(doc: &str) -> Option<(String, String)> {
    let inner = doc.strip_prefix('`')?;
    let inner = &inner[..inner.find('`')?];
    let (method, path) = inner.split_once(' ')?;
    (method.chars().all(|c| c.is_ascii_uppercase()) && path.starts_with('/'))
        .then(|| (method.to_owned(), path.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_variants_and_their_request_lines() {
        let source = "/// Every endpoint.\n#[derive(Debug)]\npub enum Route {\n    /// `GET /healthz`\n    Healthz,\n    \
                      /// `GET /v1/jobs/{id}/events` (Server-Sent Events)\n    JobEvents(JobId),\n    /// `POST /v1/workers/{id}/heartbeat`\n    \
                      Heartbeat(String),\n}\n";
        let routes = documented_routes(source).unwrap();
        let got: Vec<(&str, &str, &str)> = routes
            .iter()
            .map(|r| (r.variant.as_str(), r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("Healthz", "GET", "/healthz"),
                ("JobEvents", "GET", "/v1/jobs/{id}/events"),
                ("Heartbeat", "POST", "/v1/workers/{id}/heartbeat"),
            ]
        );
    }

    #[test]
    fn an_undocumented_variant_is_an_error() {
        let source = "pub enum Route {\n    /// Health.\n    Healthz,\n}\n";
        let err = documented_routes(source).unwrap_err();
        assert!(err.contains("Route::Healthz"), "{err}");
        assert!(documented_routes("enum Other {}").is_err());
    }
}
