//! The web chat widget: its script and styles (compiled into the binary), the hosted chat page
//! `/chat/{tenant}`, and the public widget configuration `/v1/webchat/config`.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::valid_slug;
use crate::http::error::ApiError;
use crate::http::origin::{self, WidgetSettings};
use crate::state::AppState;

/// The widget script (plain JavaScript, no build step).
pub const WIDGET_JS: &str = include_str!("../../ui/widget.js");
/// The widget styles (loaded into the widget's shadow root).
pub const WIDGET_CSS: &str = include_str!("../../ui/widget.css");
const CHAT_PAGE: &str = include_str!("../../ui/chat.html.tera");

/// How long browsers may reuse the script and styles before revalidating (ETag).
const ASSET_CACHE: &str = "public, max-age=600";

static JS_ETAG: LazyLock<String> = LazyLock::new(|| etag(WIDGET_JS));
static CSS_ETAG: LazyLock<String> = LazyLock::new(|| etag(WIDGET_CSS));
static TEMPLATES: LazyLock<Result<tera::Tera, String>> = LazyLock::new(|| {
    let mut tera = tera::Tera::default();
    // Escape every value in the page.
    tera.autoescape_on(vec![".html"]);
    tera.add_raw_template("chat.html", CHAT_PAGE)
        .map_err(|e| format!("chat page template: {e}"))?;
    Ok(tera)
});

/// Asset and page routes (no CORS: scripts and styles load cross-origin without it).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/widget.js", get(widget_js))
        .route("/widget.css", get(widget_css))
        .route("/chat/{tenant}", get(chat_page))
}

/// The public widget configuration (mounted with the web chat API).
pub fn api_router() -> Router<AppState> {
    Router::new().route("/v1/webchat/config", get(widget_config))
}

pub(crate) fn etag(body: &str) -> String {
    format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..20]
    )
}

pub(crate) fn asset(
    headers: &HeaderMap,
    body: &'static str,
    content_type: &'static str,
    tag: &str,
) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(tag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(ASSET_CACHE));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    response
}

async fn widget_js(headers: HeaderMap) -> Response {
    asset(
        &headers,
        WIDGET_JS,
        "text/javascript; charset=utf-8",
        &JS_ETAG,
    )
}

async fn widget_css(headers: HeaderMap) -> Response {
    asset(&headers, WIDGET_CSS, "text/css; charset=utf-8", &CSS_ETAG)
}

/// `GET /v1/webchat/config?tenant=T`: what the widget shows. Public (readable from any page:
/// it holds nothing secret), and says whether the calling page may use the chat.
async fn widget_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let slug = params.get("tenant").map(String::as_str).unwrap_or_default();
    let tenant = match valid_slug(slug) {
        true => state.store.tenant(slug).await?,
        false => None,
    };
    let Some(tenant) = tenant else {
        return Err(ApiError::not_found(
            "tenant_not_found",
            "no tenant with that id; pass ?tenant=<id> (lowercase letters, digits and `-`)",
        ));
    };
    let mut settings = WidgetSettings::for_tenant(&state.config, &tenant.id);
    // The published greeting (console or sapa.toml) wins.
    if let Some(greeting) = &state.bots.get(&tenant.id).greeting {
        settings.greeting.clone_from(greeting);
    }
    let origin_allowed = origin::allowed(&headers, &state.config, &settings);
    let mut response = axum::Json(json!({
        "tenant": { "id": tenant.id, "name": tenant.name },
        "locale": tenant.locale,
        "color": settings.color,
        "greeting": settings.greeting,
        "max_message_chars": state.config.webchat.max_message_chars,
        "origin_allowed": origin_allowed,
    }))
    .into_response();
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::VARY, HeaderValue::from_static("origin"));
    Ok(response)
}

/// `GET /chat/{tenant}`: a full-page chat on this server's origin (`?lang=en|id` overrides the
/// tenant's language). Framing is limited to the tenant's allowed origins.
async fn chat_page(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let tenant = if valid_slug(&slug) {
        match state.store.tenant(&slug).await {
            Ok(tenant) => tenant,
            Err(err) => return ApiError::from(err).into_response(),
        }
    } else {
        None
    };
    let Some(tenant) = tenant else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><title>Not found</title><p>No chat here. / Chat tidak ditemukan.</p>",
        )
            .into_response();
    };
    let lang = params
        .get("lang")
        .and_then(|l| flows::Locale::parse(l))
        .or_else(|| flows::Locale::parse(&tenant.locale))
        .unwrap_or_default();
    let settings = WidgetSettings::for_tenant(&state.config, &tenant.id);
    match render_page(&tenant.id, &tenant.name, lang, &settings) {
        Ok(page) => {
            let ancestors: Vec<String> = std::iter::once("'self'".to_owned())
                .chain(settings.allowed_origins.iter().map(|p| p.csp_source()))
                .collect();
            let csp = format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors {}",
                ancestors.join(" ")
            );
            let mut response = Html(page).into_response();
            let out = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&csp) {
                out.insert(header::CONTENT_SECURITY_POLICY, value);
            }
            out.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            out.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "chat page rendering failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .into_response()
        }
    }
}

/// Renders the hosted chat page; every value is HTML-escaped by the template engine.
fn render_page(
    tenant: &str,
    name: &str,
    lang: flows::Locale,
    settings: &WidgetSettings,
) -> Result<String, String> {
    let tera = TEMPLATES.as_ref().map_err(Clone::clone)?;
    let mut context = tera::Context::new();
    context.insert("tenant", tenant);
    context.insert("name", name);
    context.insert("lang", lang.as_str());
    context.insert("color", &settings.color);
    context.insert("widget_url", "/widget.js");
    context.insert(
        "noscript",
        match lang {
            flows::Locale::En => "This chat needs JavaScript.",
            flows::Locale::Id => "Chat ini memerlukan JavaScript.",
        },
    );
    tera.render("chat.html", &context)
        .map_err(|e| format!("chat page: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_widget_stays_small_and_never_renders_data_as_html() {
        assert!(
            WIDGET_JS.len() <= 40 * 1024,
            "widget.js is {} bytes",
            WIDGET_JS.len()
        );
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!WIDGET_JS.contains(forbidden), "widget.js uses {forbidden}");
        }
    }

    #[test]
    fn the_chat_page_escapes_every_value() {
        let settings = WidgetSettings {
            color: "#123456".into(),
            greeting: String::new(),
            allowed_origins: vec![],
        };
        let page = render_page(
            "shop",
            "<script>alert(1)</script> \"Toko\" & 'Co'",
            flows::Locale::En,
            &settings,
        )
        .unwrap();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
            "{page}"
        );
        assert!(
            page.contains("&quot;Toko&quot; &amp; &#x27;Co&#x27;"),
            "{page}"
        );
        assert!(page.contains("<html lang=\"en\">"), "{page}");
        assert!(page.contains("data-tenant=\"shop\""), "{page}");
        // The only script is the external widget: nothing inline.
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<script src=\"&#x2F;widget.js\""), "{page}");
    }
}
