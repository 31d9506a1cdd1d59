//! Tenants' flows in the running server: the live registry (parsed documents by tenant, kept
//! current from the store), the demo tenant's two flows, the built-in demo order API, and the
//! webhook caller of `call_webhook` steps with its rules.
//!
//! Webhook rules: only `https://` hosts on the tenant's `webhook_hosts`; never a private,
//! loopback, link-local or otherwise internal address, checked on the addresses DNS returns
//! (the resolver drops them, so a name that points inside is refused on every attempt, and a
//! redirect cannot get around it); no redirects at all; a response size cap; a timeout per
//! attempt and a bounded number of retries. The body is signed: `X-Sapa-Timestamp` (Unix
//! seconds) and `X-Sapa-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with the
//! tenant's `webhook_secret`. `[flows] allow_private_webhooks = true` lifts the address rule
//! and allows `http://` (tests and development only).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flows::flow::Flow;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{Store, StoreError, now_ms};

/// The demo tenant's flows, as shipped in `demo/flows/`.
pub const DEMO_FLOWS: &[&str] = &[
    include_str!("../../demo/flows/cek-pesanan.yaml"),
    include_str!("../../demo/flows/reservasi.yaml"),
];

/// Each tenant's live flows.
#[derive(Debug, Default)]
pub struct FlowRegistry {
    by_tenant: RwLock<HashMap<String, Arc<Vec<Flow>>>>,
    /// The documents the live flows were parsed from: a reload that reads the same ones parses
    /// nothing.
    loaded: std::sync::Mutex<Vec<crate::store::StoredFlow>>,
}

impl FlowRegistry {
    /// The tenant's flows (none for an unknown tenant).
    pub fn get(&self, tenant_id: &str) -> Arc<Vec<Flow>> {
        self.by_tenant
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Re-reads every tenant's flows from the store. A stored document that no longer parses
    /// (written by a newer version) is skipped with a warning.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let all = store.all_flows().await?;
        {
            let mut loaded = self
                .loaded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *loaded == all {
                return Ok(());
            }
            loaded.clone_from(&all);
        }
        let mut by_tenant: HashMap<String, Vec<Flow>> = HashMap::new();
        for stored in all {
            match flows::flow::parse(&stored.source) {
                Ok(flow) => by_tenant.entry(stored.tenant_id).or_default().push(flow),
                Err(errors) => tracing::warn!(
                    tenant = %stored.tenant_id,
                    flow = %stored.name,
                    problems = errors.len(),
                    "a stored flow does not parse; it is not run"
                ),
            }
        }
        let fresh = by_tenant
            .into_iter()
            .map(|(tenant, flows)| (tenant, Arc::new(flows)))
            .collect();
        *self
            .by_tenant
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// Checks a flow document before it is stored for `tenant_id`: [`flows::flow::parse`], and
/// every `call_webhook` URL is the demo API or an `http(s)` URL on the tenant's `hosts`.
///
/// # Errors
/// Every problem, with its line and column.
pub fn check(
    source: &str,
    tenant_id: &str,
    hosts: &[String],
) -> Result<Flow, Vec<flows::flow::FlowError>> {
    let flow = flows::flow::parse(source)?;
    let mut errors = Vec::new();
    for step in &flow.steps {
        let flows::flow::Step::CallWebhook(call) = step else {
            continue;
        };
        if call.url == flows::flow::DEMO_ORDERS_URL {
            continue;
        }
        let host = reqwest::Url::parse(&call.url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
        let listed = host
            .as_deref()
            .is_some_and(|h| hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(h)));
        if !listed {
            let (line, column) = locate(source, &call.url);
            errors.push(flows::flow::FlowError {
                line,
                column,
                message: format!(
                    "`{}` is not on the webhook hosts of tenant {tenant_id}; add its host to `tenants.{tenant_id}.webhook_hosts` in sapa.toml",
                    call.url
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(flow)
    } else {
        Err(errors)
    }
}

/// 1-based line and column of the first occurrence of `needle` in `source` (1, 1 if absent).
fn locate(source: &str, needle: &str) -> (usize, usize) {
    for (index, line) in source.lines().enumerate() {
        if let Some(column) = line.find(needle) {
            return (index + 1, line[..column].chars().count() + 1);
        }
    }
    (1, 1)
}

/// Loads `<data dir>/flows/<tenant slug>/*.yaml` (and `*.yml`) at start: each document is
/// checked like `sapa flows load` and stored when it differs from the stored one. A directory
/// for a tenant that does not exist, or a document that fails its checks, fails the start with
/// every problem as `FILE:LINE:COLUMN: message`.
///
/// # Errors
/// The problems found, or the store's error.
pub async fn load_data_dir(
    store: &Store,
    dir: &std::path::Path,
    hosts: &HashMap<String, Vec<String>>,
) -> anyhow::Result<usize> {
    let Ok(tenants) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut problems = Vec::new();
    let mut ready = Vec::new();
    let mut tenant_dirs: Vec<_> = tenants.flatten().filter(|e| e.path().is_dir()).collect();
    tenant_dirs.sort_by_key(std::fs::DirEntry::file_name);
    for entry in tenant_dirs {
        let slug = entry.file_name().to_string_lossy().into_owned();
        if store.tenant(&slug).await?.is_none() {
            problems.push(format!(
                "{}: there is no tenant `{slug}`; create it or rename the directory",
                entry.path().display()
            ));
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(entry.path())?
            .flatten()
            .map(|f| f.path())
            .filter(|p| {
                p.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")
                })
            })
            .collect();
        files.sort();
        let allowed = hosts.get(&slug).cloned().unwrap_or_default();
        for file in files {
            let source = std::fs::read_to_string(&file)?;
            match check(&source, &slug, &allowed) {
                Ok(flow) => ready.push((slug.clone(), flow.name, source)),
                Err(errors) => {
                    problems.extend(errors.iter().map(|e| {
                        format!("{}:{}:{}: {}", file.display(), e.line, e.column, e.message)
                    }))
                }
            }
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "flow documents in {}:\n{}",
            dir.display(),
            problems.join("\n")
        );
    }
    let mut stored = 0;
    for (tenant, name, source) in ready {
        let current = store.flows_of(&tenant).await?;
        if current.iter().any(|f| f.name == name && f.source == source) {
            continue;
        }
        store
            .put_flow(&tenant, &name, &source, "data-dir", now_ms())
            .await?;
        stored += 1;
    }
    Ok(stored)
}

/// Stores the demo flows for `tenant_id`, each unless the tenant has one by its name (an
/// owner's edit is kept across restarts).
///
/// # Errors
/// [`StoreError::Unavailable`].
pub async fn seed_demo(store: &Store, tenant_id: &str) -> Result<(), StoreError> {
    for source in DEMO_FLOWS {
        let Ok(flow) = flows::flow::parse(source) else {
            // A unit test keeps the shipped documents valid.
            continue;
        };
        store
            .put_flow_if_absent(tenant_id, &flow.name, source, "demo", now_ms())
            .await?;
    }
    Ok(())
}

/// The built-in demo order API (`builtin:demo-orders`): orders `KN-1001` … `KN-1005` of the
/// demo shop. Body `{"order": "KN-1003", "locale": "id"}` → `{"order": "KN-1003", "found":
/// true, "status": "sedang dikirim"}`; an unknown order is `found: false` with a status that
/// says so.
pub fn demo_orders(body: &serde_json::Value) -> serde_json::Value {
    if let Some(outlet) = body["reservation_outlet"].as_str() {
        return demo_reservation(body, outlet);
    }
    let order = body["order"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_uppercase()
        .replace(' ', "");
    let order = match order.strip_prefix("KN") {
        Some(rest) if !rest.starts_with('-') => format!("KN-{rest}"),
        _ => order,
    };
    let english = body["locale"].as_str() == Some("en");
    let status = match order.as_str() {
        "KN-1001" => Some(("sudah diterima", "delivered")),
        "KN-1002" => Some(("sedang dikemas", "being packed")),
        "KN-1003" => Some(("sedang dikirim", "on its way")),
        "KN-1004" => Some(("menunggu pembayaran", "awaiting payment")),
        "KN-1005" => Some(("dibatalkan", "cancelled")),
        _ => None,
    };
    let (found, status) = match status {
        Some((id, en)) => (true, if english { en } else { id }),
        None if english => (false, "not found, please check the number"),
        None => (false, "tidak ditemukan, mohon cek nomornya"),
    };
    serde_json::json!({"order": order, "found": found, "status": status})
}

/// A reservation at the demo shop (`reservation_outlet`, `reservation_when`,
/// `reservation_people`) → `{"booking": "RSV-1234"}`: the same booking number for the same
/// request, so a retried turn books once.
fn demo_reservation(body: &serde_json::Value, outlet: &str) -> serde_json::Value {
    use sha2::Digest;
    let key = format!(
        "{outlet}|{}|{}",
        body["reservation_when"].as_str().unwrap_or_default(),
        body["reservation_people"].as_str().unwrap_or_default()
    );
    let digest = Sha256::digest(key.as_bytes());
    let number = u16::from_be_bytes([digest[0], digest[1]]) % 9000 + 1000;
    serde_json::json!({"booking": format!("RSV-{number}"), "outlet": outlet})
}

/// The webhook rules of one tenant.
#[derive(Debug, Clone, Default)]
pub struct TenantWebhooks {
    /// Hosts its flows may call.
    pub hosts: Vec<String>,
    /// The signing key.
    pub secret: crate::config::Secret,
}

/// Calls flows' webhooks under the rules in the module docs.
#[derive(Debug, Clone)]
pub struct WebhookCaller {
    client: reqwest::Client,
    allow_private: bool,
    max_response_bytes: usize,
    tenants: Arc<HashMap<String, TenantWebhooks>>,
}

/// Whether `ip` is an address a tenant's webhook must never reach: loopback, private,
/// link-local, shared (CGNAT), unspecified, multicast, broadcast, documentation, unique local
/// (IPv6), or an IPv4 address mapped into IPv6 that is one of those.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// DNS that drops internal addresses (unless allowed): a host name that resolves only inside
/// fails to connect, whatever it resolves to on a later attempt.
#[derive(Debug)]
struct PublicOnly {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

impl WebhookCaller {
    /// A caller with `[flows]` rules and each tenant's hosts and key.
    ///
    /// # Errors
    /// The HTTP client could not be built (TLS roots).
    pub fn new(
        config: &crate::config::FlowsConfig,
        tenants: HashMap<String, TenantWebhooks>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnly {
                allow_private: config.allow_private_webhooks,
            }))
            .user_agent(concat!("sapa/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_private: config.allow_private_webhooks,
            max_response_bytes: config.max_webhook_response_bytes,
            tenants: Arc::new(tenants),
        })
    }

    /// Calls `url` for `tenant_id` with `body`: the JSON response, or why it failed (after
    /// `retries` more attempts for failures that may pass: connection errors, timeouts, 429
    /// and 5xx). The demo order API answers in-process.
    pub async fn call(
        &self,
        tenant_id: &str,
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
        retries: u8,
    ) -> Result<serde_json::Value, String> {
        if url == flows::flow::DEMO_ORDERS_URL {
            return Ok(demo_orders(body));
        }
        let rules = self.tenants.get(tenant_id).cloned().unwrap_or_default();
        let target = self.check_url(&rules, url)?;
        let payload = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let mut last = String::new();
        for attempt in 0..=retries {
            if attempt > 0 {
                // 250 ms, 500 ms, 1 s …: a short outage passes, a long one hands off quickly.
                tokio::time::sleep(Duration::from_millis(250 << (attempt - 1).min(4))).await;
            }
            match self.attempt(&rules, &target, &payload, timeout).await {
                Ok(json) => return Ok(json),
                Err(Attempt::Final(why)) => return Err(why),
                Err(Attempt::Retry(why)) => last = why,
            }
        }
        Err(format!(
            "{last} (after {} attempts)",
            u32::from(retries) + 1
        ))
    }

    fn check_url(&self, rules: &TenantWebhooks, url: &str) -> Result<reqwest::Url, String> {
        let target = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
        match target.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            scheme => return Err(format!("{scheme}:// is not allowed; webhooks use https://")),
        }
        let host = target
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']']);
        if !rules.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(format!(
                "{host} is not on the tenant's webhook_hosts; add it there to allow it"
            ));
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && !self.allow_private
            && is_internal(ip)
        {
            return Err(format!(
                "{ip} is an internal address; webhooks may not call it"
            ));
        }
        if rules.secret.expose().is_empty() {
            return Err("the tenant has no webhook_secret to sign with".to_owned());
        }
        Ok(target)
    }

    async fn attempt(
        &self,
        rules: &TenantWebhooks,
        target: &reqwest::Url,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<serde_json::Value, Attempt> {
        let timestamp = (now_ms() / 1000).to_string();
        let signature = sign(rules.secret.expose(), &timestamp, payload);
        let sent = self
            .client
            .post(target.clone())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Sapa-Timestamp", &timestamp)
            .header("X-Sapa-Signature", format!("sha256={signature}"))
            .body(payload.to_vec())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) if err.is_timeout() => return Err(Attempt::Retry("timed out".to_owned())),
            Err(err) => {
                return Err(Attempt::Retry(format!(
                    "could not connect: {}",
                    error_chain(&err)
                )));
            }
        };
        let status = response.status();
        if status.is_redirection() {
            return Err(Attempt::Final(format!(
                "answered {status} (a redirect); webhooks are not redirected"
            )));
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Attempt::Retry(format!("answered {status}")));
        }
        if !status.is_success() {
            return Err(Attempt::Final(format!("answered {status}")));
        }
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > self.max_response_bytes {
                        return Err(Attempt::Final(format!(
                            "the response is larger than {} bytes",
                            self.max_response_bytes
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(err) if err.is_timeout() => {
                    return Err(Attempt::Retry("timed out".to_owned()));
                }
                Err(err) => return Err(Attempt::Retry(format!("the response broke off: {err}"))),
            }
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Attempt::Final(format!("the response is not JSON: {e}")))
    }
}

/// One attempt's failure.
enum Attempt {
    /// May pass on another attempt.
    Retry(String),
    /// Will not.
    Final(String),
}

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"` with `secret`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length.
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_demo_flows_parse() {
        for source in DEMO_FLOWS {
            assert!(flows::flow::parse(source).is_ok(), "{source}");
        }
    }

    #[test]
    fn the_demo_order_api_knows_five_orders() {
        let status = |order: &str, locale: &str| {
            demo_orders(&serde_json::json!({"order": order, "locale": locale}))["status"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(status("KN-1003", "id"), "sedang dikirim");
        assert_eq!(status("kn1003", "en"), "on its way");
        assert_eq!(status("KN-1001", "id"), "sudah diterima");
        assert!(status("KN-9999", "id").starts_with("tidak ditemukan"));
        assert_eq!(
            demo_orders(&serde_json::json!({"order": "KN-1005"}))["found"],
            true
        );
        let booking = demo_orders(&serde_json::json!({"reservation_outlet": "kemang",
            "reservation_when": "2026-12-08 19:00", "reservation_people": "4"}));
        assert!(booking["booking"].as_str().unwrap().starts_with("RSV-"));
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let a = sign("s3cret-s3cret-s3cret", "1700000000", b"{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, sign("s3cret-s3cret-s3cret", "1700000001", b"{}"));
        assert_ne!(a, sign("s3cret-s3cret-s3cret", "1700000000", b"{ }"));
    }

    fn caller(allow_private: bool, hosts: &[&str]) -> WebhookCaller {
        let config = crate::config::FlowsConfig {
            allow_private_webhooks: allow_private,
            max_webhook_response_bytes: 1024,
        };
        let mut tenants = HashMap::new();
        tenants.insert(
            "shop".to_owned(),
            TenantWebhooks {
                hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
                secret: serde_json::from_str("\"0123456789abcdef\"").unwrap(),
            },
        );
        WebhookCaller::new(&config, tenants).unwrap()
    }

    #[tokio::test]
    async fn loopback_and_unlisted_hosts_are_refused_before_any_request() {
        let strict = caller(false, &["127.0.0.1", "localhost"]);
        let body = serde_json::json!({});
        let refused = |r: Result<serde_json::Value, String>| r.unwrap_err();
        let why = refused(
            strict
                .call(
                    "shop",
                    "http://127.0.0.1:9/x",
                    &body,
                    Duration::from_secs(1),
                    0,
                )
                .await,
        );
        assert!(why.contains("http:// is not allowed"), "{why}");
        let why = refused(
            strict
                .call(
                    "shop",
                    "https://127.0.0.1:9/x",
                    &body,
                    Duration::from_secs(1),
                    0,
                )
                .await,
        );
        assert!(why.contains("internal address"), "{why}");
        // A name that resolves to loopback: the resolver drops the address.
        let why = refused(
            strict
                .call(
                    "shop",
                    "https://localhost:9/x",
                    &body,
                    Duration::from_secs(1),
                    0,
                )
                .await,
        );
        assert!(why.contains("no public address"), "{why}");
        let why = refused(
            strict
                .call(
                    "shop",
                    "https://api.elsewhere.example/x",
                    &body,
                    Duration::from_secs(1),
                    0,
                )
                .await,
        );
        assert!(why.contains("not on the tenant's webhook_hosts"), "{why}");
        let why = refused(
            strict
                .call(
                    "other",
                    "https://127.0.0.1/x",
                    &body,
                    Duration::from_secs(1),
                    0,
                )
                .await,
        );
        assert!(why.contains("not on the tenant's webhook_hosts"), "{why}");
    }
}
