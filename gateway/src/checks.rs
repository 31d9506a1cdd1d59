//! Dependency checks shared by `/health/ready` and `sapa check`.

use std::time::Duration;

use crate::config::{Config, redact_url};
use crate::store::Store;

/// Time allowed per check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The result of one check.
#[derive(Debug, Clone)]
pub struct Check {
    /// `database`, `redis`, `qdrant` or `llm`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, and on failure how to fix it.
    pub detail: String,
}

/// Checks the database (through `store` if given), the knowledge backend when it is a server
/// (through `knowledge` if given) and every configured dependency.
pub async fn run(
    config: &Config,
    store: Option<&Store>,
    knowledge: Option<&dyn knowledge::KnowledgeBase>,
    http: &reqwest::Client,
) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(store) = store {
        checks.push(
            match tokio::time::timeout(CHECK_TIMEOUT, store.ping()).await {
                Ok(Ok(())) => Check {
                    name: "database",
                    ok: true,
                    detail: "reachable".into(),
                },
                Ok(Err(err)) => Check {
                    name: "database",
                    ok: false,
                    detail: format!("{err}: check database.url and that the server is running"),
                },
                Err(_) => Check {
                    name: "database",
                    ok: false,
                    detail: "timed out after 3s".into(),
                },
            },
        );
    }
    if !config.redis.url.is_empty() {
        checks.push(match redis_ping(&config.redis.url).await {
            Ok(()) => Check {
                name: "redis",
                ok: true,
                detail: "PONG".into(),
            },
            Err(err) => Check {
                name: "redis",
                ok: false,
                detail: format!(
                    "{} unreachable: {err} (start Redis or clear redis.url); meanwhile leases, \
                     limits and live events are per replica",
                    redact_url(&config.redis.url)
                ),
            },
        });
    }
    if config.knowledge.uses_qdrant() {
        let url = redact_url(&config.qdrant.url);
        checks.push(match knowledge {
            None => Check {
                name: "qdrant",
                ok: false,
                detail: format!("{url} not connected"),
            },
            Some(knowledge) => match tokio::time::timeout(CHECK_TIMEOUT, knowledge.check()).await {
                Ok(Ok(detail)) => Check {
                    name: "qdrant",
                    ok: true,
                    detail: format!("{url}: {detail}"),
                },
                Ok(Err(err)) => Check {
                    name: "qdrant",
                    ok: false,
                    detail: format!(
                        "{url}: {err} (start Qdrant or fix qdrant.url); meanwhile messages are \
                         accepted and wait for their answers"
                    ),
                },
                Err(_) => Check {
                    name: "qdrant",
                    ok: false,
                    detail: format!("{url}: timed out after 3s"),
                },
            },
        });
    }
    if !config.llm.base_url.is_empty() {
        checks.push(llm_check(config, http).await);
    }
    checks
}

/// Connects with the redis crate and sends `PING` (authentication from the URL, if any).
async fn redis_ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis.url is not valid: {e}"))?;
    let work = async {
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let reply: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(format!("unexpected reply {reply}"))
        }
    };
    tokio::time::timeout(CHECK_TIMEOUT, work)
        .await
        .map_err(|_| "timed out after 3s".to_owned())?
}

async fn llm_check(config: &Config, http: &reqwest::Client) -> Check {
    let url = format!("{}/models", config.llm.base_url.trim_end_matches('/'));
    let mut request = http.get(&url).timeout(CHECK_TIMEOUT);
    if !config.llm.api_key.expose().is_empty() {
        request = request.bearer_auth(config.llm.api_key.expose());
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Check {
            name: "llm",
            ok: true,
            detail: format!("{url} answered"),
        },
        Ok(response) if matches!(response.status().as_u16(), 401 | 403) => Check {
            name: "llm",
            ok: false,
            detail: format!(
                "{url} rejected the API key ({}); set SAPA_LLM__API_KEY",
                response.status()
            ),
        },
        Ok(response) => Check {
            name: "llm",
            ok: false,
            detail: format!("{url} answered {}", response.status()),
        },
        Err(err) => Check {
            name: "llm",
            ok: false,
            detail: format!("{url} unreachable: {err}"),
        },
    }
}
