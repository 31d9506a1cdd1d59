//! Which websites may use a tenant's web chat: browser `Origin`s matched against the tenant's
//! `allowed_origins`, and the CORS layer of the web chat API.
//!
//! Rules: a request without `Origin` (curl, servers) is not a browser page and passes; a
//! same-origin request (the hosted page `/chat/{tenant}`) passes; any other origin must be in
//! the tenant's list. The CORS layer answers preflights for origins some tenant allows, and
//! reflects the `Origin` (never `*`) on responses to them; the handlers then check the one
//! tenant the request is about and answer 403 `origin_not_allowed` otherwise.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{Config, DEFAULT_WIDGET_COLOR};
use crate::error::ApiError;
use crate::startup::AppState;

/// A normalized web origin: lowercase scheme and host, explicit port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (an `Origin` header or a config entry; a trailing `/` is
    /// tolerated). `None` for anything else, including the opaque origin `null`.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let (scheme, rest) = raw.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(rest)?;
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        };
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if self.port != self.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// `host[:port]` with a DNS name, IPv4 or bracketed IPv6 host, and nothing else (no path,
/// user info, query).
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        let valid = host[1..host.len() - 1]
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !valid {
            return None;
        }
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let valid = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '*');
        if !valid {
            return None;
        }
        (host, port)
    };
    if host.is_empty()
        || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((host, port))
}

/// One entry of a tenant's `allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: any website.
    Any,
    /// Exactly this origin.
    Exact(Origin),
    /// `scheme://*.domain[:port]`: every subdomain of `domain` (not `domain` itself).
    Subdomains(Origin),
}

impl OriginPattern {
    /// Parses one configured entry.
    ///
    /// # Errors
    /// What is wrong with it, for the configuration report.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "*" {
            return Ok(Self::Any);
        }
        let problem = || {
            format!(
                "`{raw}` is not an origin: write scheme://host[:port] with http or https and no path, e.g. \"https://www.example.com\" or \"https://*.example.com\""
            )
        };
        let origin = Origin::parse(raw).ok_or_else(problem)?;
        match origin.host.strip_prefix("*.") {
            Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                Ok(Self::Subdomains(Origin {
                    host: domain.to_owned(),
                    ..origin
                }))
            }
            Some(_) => Err(problem()),
            None if origin.host.contains('*') => Err(problem()),
            None => Ok(Self::Exact(origin)),
        }
    }

    /// Whether `origin` matches.
    pub fn matches(&self, origin: &Origin) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(allowed) => allowed == origin,
            Self::Subdomains(domain) => {
                domain.scheme == origin.scheme
                    && domain.port == origin.port
                    && origin
                        .host
                        .strip_suffix(domain.host.as_str())
                        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
            }
        }
    }

    /// The CSP `frame-ancestors` source for this entry.
    pub fn csp_source(&self) -> String {
        match self {
            Self::Any => "*".to_owned(),
            Self::Exact(origin) => origin.to_string(),
            Self::Subdomains(domain) => {
                let mut text = format!("{}://*.{}", domain.scheme, domain.host);
                if domain.port != domain.default_port() {
                    text.push_str(&format!(":{}", domain.port));
                }
                text
            }
        }
    }
}

/// A tenant's widget settings: from `[tenants.<slug>]`, else the `[demo]` keys for the demo
/// tenant, else defaults (tenants created through the CLI or admin API).
#[derive(Debug, Clone)]
pub struct WidgetSettings {
    /// Accent colour, `#rgb` or `#rrggbb`.
    pub color: String,
    /// Greeting; empty: the widget's built-in one.
    pub greeting: String,
    /// Websites that may use the widget.
    pub allowed_origins: Vec<OriginPattern>,
}

impl WidgetSettings {
    /// The settings of tenant `slug`.
    pub fn for_tenant(config: &Config, slug: &str) -> Self {
        let (color, greeting, origins) = if let Some(tenant) = config.tenants.get(slug) {
            (&tenant.color, &tenant.greeting, &tenant.allowed_origins)
        } else if slug == crate::demo::TENANT && config.demo.enabled {
            (
                &config.demo.color,
                &config.demo.greeting,
                &config.demo.allowed_origins,
            )
        } else {
            return Self {
                color: DEFAULT_WIDGET_COLOR.to_owned(),
                greeting: String::new(),
                allowed_origins: Vec::new(),
            };
        };
        Self {
            color: color.clone(),
            greeting: greeting.clone(),
            // Entries were validated at load; a bad one could only be skipped.
            allowed_origins: origins
                .iter()
                .filter_map(|o| OriginPattern::parse(o).ok())
                .collect(),
        }
    }

    /// Whether a page of `origin` may use this widget.
    pub fn allows(&self, origin: &Origin) -> bool {
        self.allowed_origins.iter().any(|p| p.matches(origin))
    }
}

/// Whether any configured tenant lets pages of `origin` use its widget (CORS preflights do not
/// say which tenant they are for).
pub fn any_tenant_allows(config: &Config, origin: &Origin) -> bool {
    let demo = config.demo.enabled && !config.tenants.contains_key(crate::demo::TENANT);
    config
        .tenants
        .keys()
        .map(String::as_str)
        .chain(demo.then_some(crate::demo::TENANT))
        .any(|slug| WidgetSettings::for_tenant(config, slug).allows(origin))
}

/// Where a request comes from, as far as browsers tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOrigin {
    /// No `Origin` header: not a cross-origin browser request (curl, servers, navigation).
    Absent,
    /// A page of this server (the hosted chat page).
    SameOrigin,
    /// A page of another website.
    Cross(Origin),
    /// An `Origin` that is not a web origin (`null` from sandboxed frames or files).
    Opaque,
}

/// Classifies a request by its `Origin`, comparing it with the `Host` it was sent to and with
/// `server.public_url`.
pub fn classify(headers: &HeaderMap, public_url: &str) -> RequestOrigin {
    let Some(raw) = headers.get(header::ORIGIN) else {
        return RequestOrigin::Absent;
    };
    let Some(origin) = raw.to_str().ok().and_then(Origin::parse) else {
        return RequestOrigin::Opaque;
    };
    let same_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| split_host_port(h.trim()))
        .is_some_and(|(host, port)| {
            host.eq_ignore_ascii_case(&origin.host)
                && port.map_or(origin.default_port(), |p| p.parse().unwrap_or(0)) == origin.port
        });
    if same_host || Origin::parse(public_url).is_some_and(|public| public == origin) {
        RequestOrigin::SameOrigin
    } else {
        RequestOrigin::Cross(origin)
    }
}

/// Whether the request may act for `tenant` (the settings of that tenant).
pub fn allowed(headers: &HeaderMap, config: &Config, settings: &WidgetSettings) -> bool {
    match classify(headers, &config.server.public_url) {
        RequestOrigin::Absent | RequestOrigin::SameOrigin => true,
        RequestOrigin::Cross(origin) => settings.allows(&origin),
        RequestOrigin::Opaque => false,
    }
}

/// 403 `origin_not_allowed` unless the request may act for `tenant`.
///
/// # Errors
/// When the page's origin is not in the tenant's `allowed_origins`.
pub fn enforce(headers: &HeaderMap, config: &Config, tenant: &str) -> Result<(), ApiError> {
    let settings = WidgetSettings::for_tenant(config, tenant);
    if allowed(headers, config, &settings) {
        return Ok(());
    }
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?");
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        format!(
            "pages of `{origin}` may not use the chat of tenant `{tenant}`; add the origin to the tenant's allowed_origins"
        ),
    ))
}

/// CORS for the web chat API (see the module docs). `/v1/webchat/config` is public and sets
/// its own headers.
pub async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/v1/webchat/config" {
        return next.run(request).await;
    }
    let RequestOrigin::Cross(origin) = classify(request.headers(), &state.config.server.public_url)
    else {
        return next.run(request).await;
    };
    let allowed = any_tenant_allows(&state.config, &origin);
    let reflected = request.headers().get(header::ORIGIN).cloned();
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!("pages of `{origin}` may not use this chat"),
            )
            .into_response();
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        reflect(headers, reflected);
        return response;
    }
    let mut response = next.run(request).await;
    if allowed {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after"),
        );
        reflect(headers, reflected);
    }
    response
}

fn reflect(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn origin(raw: &str) -> Origin {
        Origin::parse(raw).unwrap()
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            origin("HTTPS://Shop.Example:443/").to_string(),
            "https://shop.example"
        );
        assert_eq!(
            origin("http://127.0.0.1:8080").to_string(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin("http://[::1]:3000").to_string(), "http://[::1]:3000");
        for bad in [
            "null",
            "shop.example",
            "ftp://shop.example",
            "https://shop.example/path",
            "https://user@shop.example",
            "https://shop.example:99999",
            "https://",
            "https://shop.example:",
        ] {
            assert!(Origin::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_exact_origins_subdomains_or_anything() {
        let exact = OriginPattern::parse("https://shop.example").unwrap();
        assert!(exact.matches(&origin("https://shop.example")));
        assert!(!exact.matches(&origin("http://shop.example")));
        assert!(!exact.matches(&origin("https://shop.example:8443")));
        assert!(!exact.matches(&origin("https://evilshop.example")));
        let subs = OriginPattern::parse("https://*.shop.example").unwrap();
        assert!(subs.matches(&origin("https://www.shop.example")));
        assert!(subs.matches(&origin("https://a.b.shop.example")));
        assert!(!subs.matches(&origin("https://shop.example")));
        assert!(!subs.matches(&origin("https://evilshop.example")));
        assert!(!subs.matches(&origin("https://www.shop.example.evil")));
        assert_eq!(subs.csp_source(), "https://*.shop.example");
        assert!(
            OriginPattern::parse("*")
                .unwrap()
                .matches(&origin("http://x.y"))
        );
        for bad in [
            "https://a.*.example",
            "https://*",
            "shop.example",
            "https://*x.example",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn same_origin_is_recognized_from_the_host_header_or_public_url() {
        let mut headers = HeaderMap::new();
        assert_eq!(classify(&headers, ""), RequestOrigin::Absent);
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert_eq!(classify(&headers, ""), RequestOrigin::SameOrigin);
        headers.insert(header::HOST, HeaderValue::from_static("chat.example"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://chat.example"),
        );
        assert_eq!(classify(&headers, ""), RequestOrigin::SameOrigin);
        headers.insert(header::HOST, HeaderValue::from_static("10.0.0.5:8080"));
        assert_eq!(
            classify(&headers, "https://chat.example"),
            RequestOrigin::SameOrigin
        );
        assert_eq!(
            classify(&headers, ""),
            RequestOrigin::Cross(origin("https://chat.example"))
        );
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert_eq!(classify(&headers, ""), RequestOrigin::Opaque);
    }
}
