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

use crate::config::origin::{Origin, OriginPattern};
use crate::config::{Config, DEFAULT_WIDGET_COLOR};
use crate::http::error::ApiError;
use crate::state::AppState;

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
        .is_some_and(|h| origin.is_host(h));
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
            RequestOrigin::Cross(Origin::parse("https://chat.example").unwrap())
        );
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert_eq!(classify(&headers, ""), RequestOrigin::Opaque);
    }
}
