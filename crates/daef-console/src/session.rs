//! Who is asking: the session cookie, and the `Origin` check that keeps other sites from
//! acting with it (CSRF).
//!
//! The session cookie holds the API token the operator logged in with, `HttpOnly` (no script
//! can read it), `SameSite=Strict` (no other site's page sends it) and `Secure` when the
//! request came over TLS. Every request authenticates it again with the API's authenticator,
//! so a token removed from `DAEF_API_TOKENS` stops working at once, on every replica, with no
//! session store to share.

use daef_auth::Principal;
use daef_http::App;
use hyper::header::{self, HeaderMap};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "daef_session";

/// The principal of a request, and the token to make API requests with.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) principal: Principal,
    /// `None` when auth is off.
    pub(crate) token: Option<String>,
    /// Whether `DAEF_API_TOKENS` is set.
    pub(crate) auth_on: bool,
}

impl Session {
    /// The session the request's cookie holds; `None` when auth is on and the cookie is
    /// missing or its token is not (or no longer) valid.
    pub(crate) fn from_headers(app: &App, headers: &HeaderMap) -> Option<Session> {
        let auth = app.authenticator();
        if !auth.is_enabled() {
            return Some(Session {
                principal: Principal::anonymous(),
                token: None,
                auth_on: false,
            });
        }
        let token = cookie(headers, COOKIE)?;
        Session::from_token(app, token)
    }

    /// The session of a token typed at the login page.
    pub(crate) fn from_token(app: &App, token: &str) -> Option<Session> {
        let principal = app
            .authenticator()
            .authenticate(Some(&format!("Bearer {token}")), None)
            .ok()?;
        Some(Session {
            principal,
            token: Some(token.to_owned()),
            auth_on: true,
        })
    }
}

/// A cookie's value from the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Whether the request came over TLS (as a TLS-terminating proxy in front says).
pub(crate) fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a session holding `token`. A token is printable ASCII without spaces,
/// `;` or `,` (the login page refuses others), so it needs no quoting.
pub(crate) fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict{secure}")
}

/// `Set-Cookie` that ends the session.
pub(crate) fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// Whether a token can live in a cookie as it is.
pub(crate) fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 1024
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

/// The CSRF check for a state-changing request: its `Origin` (or, when a browser sent none,
/// its `Referer`) must be this console's own scheme and host. A request with neither is
/// refused: every browser that runs the console sends `Origin` on a POST.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let scheme = if over_tls(headers) { "https" } else { "http" };
    let own = format!("{scheme}://{host}");
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match (text(header::ORIGIN), text(header::REFERER)) {
        (Some(origin), _) => origin == own,
        (None, Some(referer)) => referer
            .strip_prefix(&own)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        (None, None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; daef_session=tok-1; b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("tok-1"));
        assert_eq!(
            cookie(&headers(&[("cookie", "daef_session=")]), COOKIE),
            None
        );
        assert_eq!(cookie(&headers(&[]), COOKIE), None);
    }

    #[test]
    fn only_the_consoles_own_origin_may_post() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "https://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(same_origin(&headers(&[
            host,
            ("referer", "http://127.0.0.1:8080/console/jobs")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("referer", "http://127.0.0.1:8080.evil.example/")
        ])));
        assert!(!same_origin(&headers(&[host])));
        assert!(same_origin(&headers(&[
            host,
            ("x-forwarded-proto", "https"),
            ("origin", "https://127.0.0.1:8080")
        ])));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_tls() {
        assert_eq!(
            set_cookie("t", false),
            "daef_session=t; Path=/console; HttpOnly; SameSite=Strict"
        );
        assert!(set_cookie("t", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert!(cookie_safe("op-token_1.x"));
        assert!(!cookie_safe("a;b"));
        assert!(!cookie_safe("a b"));
        assert!(!cookie_safe(""));
    }
}
