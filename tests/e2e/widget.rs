//! The web chat widget's server side: assets, the public widget configuration, the hosted
//! page, per-tenant origin allowlists (CORS and WebSocket) and rate limits.

use reqwest::header;
use sapa_tests::{TestApp, spawn_app};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SHOP: &str = "https://shop.example";
const EVIL: &str = "https://evil.example";

fn shop_config() -> String {
    format!(
        "[tenants.shop]\nname = \"Toko <script>alert(1)</script>\"\nlocale = \"en\"\n\
         color = \"#112233\"\ngreeting = \"Hi! Ask us anything.\"\n\
         allowed_origins = [\"{SHOP}\", \"https://*.shop.example\"]\n"
    )
}

async fn create_session(app: &TestApp, tenant: &str, origin: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/v1/webchat/sessions", app.address))
        .json(&json!({ "tenant": tenant }));
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    request.send().await.unwrap()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn widget_assets_are_small_typed_and_revalidated_with_an_etag() {
    let app = spawn_app("").await;
    let js = app.get("/widget.js").await;
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        js.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let etag = js.headers()[header::ETAG].clone();
    let body = js.text().await.unwrap();
    assert!(body.len() <= 40 * 1024, "widget.js is {} bytes", body.len());
    let again = app
        .client
        .get(format!("{}/widget.js", app.address))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let css = app.get("/widget.css").await;
    assert_eq!(css.status(), 200);
    assert_eq!(
        css.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_widget_configuration_is_public_and_per_tenant() {
    let app = spawn_app(&shop_config()).await;
    let get = |tenant: &'static str, origin: &'static str| {
        app.client
            .get(format!("{}/v1/webchat/config?tenant={tenant}", app.address))
            .header(header::ORIGIN, origin)
            .send()
    };
    let shop = get("shop", SHOP).await.unwrap();
    assert_eq!(shop.status(), 200);
    assert_eq!(shop.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let body: Value = shop.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "tenant": { "id": "shop", "name": "Toko <script>alert(1)</script>" },
            "locale": "en",
            "color": "#112233",
            "greeting": "Hi! Ask us anything.",
            "max_message_chars": 2000,
            "origin_allowed": true,
        })
    );
    let sub: Value = get("shop", "https://www.shop.example")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sub["origin_allowed"], true);
    let evil: Value = get("shop", EVIL).await.unwrap().json().await.unwrap();
    assert_eq!(evil["origin_allowed"], false);
    // The built-in demo tenant has its own defaults and, by default, no other website.
    let demo: Value = get("demo", SHOP).await.unwrap().json().await.unwrap();
    assert_eq!(demo["color"], "#6f4e37");
    assert!(
        demo["greeting"]
            .as_str()
            .unwrap()
            .contains("Kopi Nusantara")
    );
    assert_eq!(demo["origin_allowed"], false);
    let missing = get("nope", SHOP).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        error_code(&missing.json().await.unwrap()),
        "tenant_not_found"
    );
    app.stop().await;
}

#[tokio::test]
async fn browsers_may_use_a_tenant_only_from_its_allowed_origins() {
    let app = spawn_app(&shop_config()).await;
    let url = |path: &str| format!("{}{path}", app.address);

    // Preflight: allowed origin → 204 reflecting it; any other → 403 without CORS headers.
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, url("/v1/webchat/sessions"))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,authorization",
            )
            .send()
    };
    let ok = preflight(SHOP).await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    assert!(
        ok.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let refused = preflight(EVIL).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        !refused
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );

    // Sessions: the tenant's origin, same-origin pages and non-browser clients only.
    let created = create_session(&app, "shop", Some(SHOP)).await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    assert_eq!(created.headers()[header::VARY], "origin");
    let token = created.json::<Value>().await.unwrap()["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (tenant, origin) in [("shop", EVIL), ("demo", SHOP), ("shop", "null")] {
        let response = create_session(&app, tenant, Some(origin)).await;
        assert_eq!(response.status(), 403, "{tenant} from {origin}");
        assert_eq!(
            error_code(&response.json().await.unwrap()),
            "origin_not_allowed"
        );
    }
    assert_eq!(create_session(&app, "demo", None).await.status(), 201);
    let own_origin = app.address.clone();
    assert_eq!(
        create_session(&app, "demo", Some(&own_origin))
            .await
            .status(),
        201,
        "same origin (the hosted page)"
    );

    // Messages: checked against the session's tenant.
    let post = |origin: &'static str, id: &'static str| {
        app.client
            .post(url("/v1/webchat/messages"))
            .bearer_auth(&token)
            .header(header::ORIGIN, origin)
            .json(&json!({ "client_message_id": id, "text": "halo" }))
            .send()
    };
    assert_eq!(post(SHOP, "m-1").await.unwrap().status(), 202);
    let evil = post(EVIL, "m-2").await.unwrap();
    assert_eq!(evil.status(), 403);
    assert!(
        !evil
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
    let list = app
        .client
        .get(url("/v1/webchat/messages?after=0"))
        .bearer_auth(&token)
        .header(header::ORIGIN, EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 403);

    // WebSocket: no CORS in browsers, so the Origin header is checked before upgrading.
    let ws_url = format!(
        "{}/v1/webchat/ws?token={token}",
        app.address.replace("http://", "ws://")
    );
    let with_origin = |origin: &str| {
        let mut request = ws_url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert(header::ORIGIN, origin.parse().unwrap());
        request
    };
    match tokio_tungstenite::connect_async(with_origin(EVIL)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!("expected 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    let (socket, _) = tokio_tungstenite::connect_async(with_origin(SHOP))
        .await
        .unwrap();
    drop(socket);
    let (socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    drop(socket);
    app.stop().await;
}

#[tokio::test]
async fn too_many_messages_or_requests_get_429_with_retry_after() {
    let app = spawn_app(
        "[webchat]\nmessages_per_minute_per_session = 2\nrequests_per_minute_per_ip = 8\n",
    )
    .await;
    let session = app.session("demo").await;
    let other = app.session("demo").await;
    assert_eq!(app.post(&session, "r-1", "halo").await.status(), 202);
    assert_eq!(app.post(&session, "r-2", "halo").await.status(), 202);
    let limited = app.post(&session, "r-3", "halo").await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(&limited.json().await.unwrap()), "rate_limited");
    // Another session is not affected (6 requests so far from this address).
    assert_eq!(app.post(&other, "o-1", "halo").await.status(), 202);
    assert_eq!(
        app.get("/v1/webchat/config?tenant=demo").await.status(),
        200
    );
    // 8 requests per minute from one address (a burst of 8, then one per 7.5 s): the next
    // ones are refused, whatever the endpoint.
    let mut refused = None;
    for _ in 0..10 {
        let response = app.get("/v1/webchat/config?tenant=demo").await;
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the per-IP limit refuses requests");
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(error_code(&refused.json().await.unwrap()), "rate_limited");
    // Assets, pages and health are not limited.
    assert_eq!(app.get("/widget.js").await.status(), 200);
    assert_eq!(app.get("/chat/demo").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn the_hosted_chat_page_escapes_everything_and_allows_no_inline_code() {
    let app = spawn_app(&shop_config()).await;
    let page = app.get("/chat/shop").await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(
        csp.contains("frame-ancestors 'self' https://shop.example https://*.shop.example"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("<title>Toko &lt;script&gt;alert(1)&lt;&#x2F;script&gt;</title>"));
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("data-tenant=\"shop\""));
    let english = app.get("/chat/demo?lang=en").await.text().await.unwrap();
    assert!(english.contains("<html lang=\"en\">"));
    assert_eq!(app.get("/chat/nope").await.status(), 404);
    assert_eq!(app.get("/chat/Bad%20Slug").await.status(), 404);
    app.stop().await;
}
