//! The `deploy/` files: every metric the Grafana dashboard and the alert rules use is exported
//! by the app, and the compose stack has the services it promises.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use sapa_tests::spawn_app;
use serde_json::Value;

fn deploy_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(name: &str) -> Value {
    yaml_serde::from_str(&deploy_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A series name without the suffixes Prometheus adds to histograms and summaries.
fn base_name(series: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

/// Every `sapa_…` metric named in a PromQL expression (as written: suffixes kept).
fn series_in(expr: &str, into: &mut BTreeSet<String>) {
    let metric_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    for (start, _) in expr.match_indices("sapa_") {
        let inside_a_word = expr[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !inside_a_word {
            let len = expr[start..]
                .find(|c: char| !metric_char(c))
                .unwrap_or(expr.len() - start);
            into.insert(expr[start..start + len].to_owned());
        }
    }
}

/// The strings under `keys` anywhere in a JSON document.
fn strings_under(value: &Value, keys: &[&str], out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(s) if keys.contains(&key.as_str()) => out.push(s.clone()),
                    other => strings_under(other, keys, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, keys, out)),
        _ => {}
    }
}

/// The series the dashboard's panels and template variables and the alert rules query.
fn used_series() -> BTreeSet<String> {
    let dashboard: Value =
        serde_json::from_str(&deploy_file("grafana/sapa-dashboard.json")).expect("dashboard JSON");
    let mut exprs = Vec::new();
    strings_under(&dashboard, &["expr", "query", "definition"], &mut exprs);
    let rules = yaml("alerts.yml");
    let groups = rules["groups"].as_array().expect("alerts.yml: groups");
    for rule in groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
    {
        exprs.push(rule["expr"].as_str().expect("a rule's expr").to_owned());
    }
    let mut series = BTreeSet::new();
    for expr in &exprs {
        series_in(expr, &mut series);
    }
    series
}

/// `/metrics` as series base name → `# TYPE` (`counter`, `gauge`, `histogram`, …).
fn exported(text: &str) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_owned(), kind.to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.split(['{', ' ']).next().unwrap_or_default();
            types
                .entry(base_name(series).to_owned())
                .or_insert_with(|| "untyped".to_owned());
        }
    }
    types
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    // Arrange
    let used = used_series();
    assert!(
        used.contains("sapa_answer_latency_seconds_bucket")
            && used.contains("sapa_dead_letters_total"),
        "the extractor finds the dashboard's and the rules' metrics: {used:?}"
    );
    let app = spawn_app("").await;

    // Act: one web chat message answered and sent, then a scrape.
    let session = app.session("demo").await;
    app.post(&session, "m-1", "berapa harga kopi susu?").await;
    app.bot_messages(&session, 1).await;
    app.settled().await;
    let metrics = app.metrics().await;
    let exported = exported(&metrics);

    // Assert
    let missing: Vec<&String> = used
        .iter()
        .filter(|s| !exported.contains_key(base_name(s)))
        .collect();
    assert!(
        missing.is_empty(),
        "used by deploy/ but not exported: {missing:?}\n{metrics}"
    );
    // histogram_quantile needs real histograms, not summaries.
    for series in used.iter().filter(|s| s.ends_with("_bucket")) {
        assert_eq!(
            exported[base_name(series)],
            "histogram",
            "{series} is queried as a histogram"
        );
    }
    // The dashboard's tenant variable reads a series that has a tenant label.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sapa_quota_exceeded_total{") && l.contains("tenant=\"demo\"")),
        "{metrics}"
    );
    app.stop().await;
}

#[test]
fn compose_stack_runs_two_replicas_with_their_dependencies_and_prometheus_scrapes_both() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().expect("services");
    for name in ["postgres", "redis", "qdrant", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "no {name} service");
    }
    assert!(
        services.values().any(|s| s["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("otel/opentelemetry-collector"))),
        "no OpenTelemetry collector"
    );
    // A replica's keys may come from a `<<: *anchor` merge.
    let field = |service: &Value, key: &str| -> Value {
        let own = &service[key];
        if own.is_null() {
            service["<<"][key].clone()
        } else {
            own.clone()
        }
    };
    let replicas: Vec<&String> = services
        .iter()
        .filter(|(_, s)| field(s, "build")["dockerfile"] == "deploy/Dockerfile")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    for replica in &replicas {
        let env = field(&services[replica.as_str()], "environment");
        for key in ["SAPA_SECRET_KEY", "SAPA_DATABASE__URL", "SAPA_REDIS__URL"] {
            assert!(env[key].is_string(), "{replica} lacks {key}");
        }
    }
    let prometheus = deploy_file("prometheus.yml");
    for replica in &replicas {
        assert!(
            prometheus.contains(&format!("{replica}:9091")),
            "prometheus.yml does not scrape {replica}"
        );
    }
    for file in [
        "alerts.yml",
        "otel-collector.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/sapa.yml",
    ] {
        yaml(file);
    }
}
