//! HTTP limits and exposure: header-read and request timeouts, the connection cap, a bounded
//! shutdown, admin authentication before the body, WebSocket caps, idle session expiry, and
//! what the public port shows of health and metrics.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use sapa_tests::{TestApp, eventually, spawn_app};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn host(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Reads what the server sends until it closes the connection (bounded).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    String::from_utf8_lossy(&all).into_owned()
}

/// Reads until a whole response head has arrived (bounded).
async fn read_head(stream: &mut TcpStream, within: Duration) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        while !all.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a response");
            all.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response in time");
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn a_client_stalled_mid_header_is_disconnected() {
    let app = spawn_app("[server]\nheader_read_timeout = \"500ms\"\n").await;
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Half")
        .await
        .unwrap();
    read_until_closed(&mut stream, Duration::from_secs(10)).await;
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_client_does_not_hold_up_shutdown_beyond_the_grace() {
    let app = spawn_app("[server]\nheader_read_timeout = \"60s\"\nshutdown_grace = \"1s\"\n").await;
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    stream
        .write_all(b"POST /v1/webchat/sessions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Also a WebSocket that stays open.
    let session = app.session("demo").await;
    let ws_url = format!(
        "{}/v1/webchat/ws?token={}",
        app.address.replacen("http", "ws", 1),
        session.token
    );
    let (_socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    // Three grace periods at most: connections, conversations, sends.
    tokio::time::timeout(Duration::from_secs(8), app.stop())
        .await
        .expect("shutdown finishes despite the stalled client");
}

#[tokio::test]
async fn a_request_slower_than_the_request_timeout_gets_a_clear_503() {
    let app = spawn_app("[server]\nrequest_timeout = \"500ms\"\n").await;
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    stream
        .write_all(
            b"POST /v1/webchat/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"tenant\":",
        )
        .await
        .unwrap();
    let response = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("\"request_timeout\""), "{response}");
    assert!(response.contains("server.request_timeout"), "{response}");
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let app = spawn_app("[server]\nmax_connections = 1\n").await;
    let mut first = TcpStream::connect(host(&app)).await.unwrap();
    first
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut first, Duration::from_secs(10)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The first (keep-alive) connection holds the only slot: a second client is not served.
    let second = reqwest::Client::new()
        .get(format!("{}/health/live", app.address))
        .timeout(Duration::from_millis(700))
        .send()
        .await;
    assert!(second.is_err(), "served over the cap: {second:?}");
    drop(first);
    let third = reqwest::Client::new()
        .get(format!("{}/health/live", app.address))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_admin_request_gets_401_before_its_body_is_read() {
    let app = spawn_app("").await;
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    // Announces 9 MB and sends none of it: a server that reads the body first never answers.
    stream
        .write_all(
            b"POST /v1/admin/conversations/c-1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9000000\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut stream, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    app.stop().await;
}

#[tokio::test]
async fn the_public_port_shows_bare_readiness_and_no_metrics() {
    // Port 9 (discard) on loopback: nothing listens there, so readiness is degraded, with
    // details only on the operator listener.
    let app = spawn_app("[redis]\nurl = \"redis://127.0.0.1:9\"\n").await;
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "degraded" }));
    assert_eq!(app.get("/metrics").await.status(), 404);
    // The operator listener has the details and the metrics.
    let ready = app.get_operator("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["redis"]["ok"], false, "{body}");
    assert!(app.metrics().await.contains("sapa_inbox_depth"));
    app.stop().await;

    // `admin_bind = ""` disables it.
    let app = spawn_app("[server]\nadmin_bind = \"\"\n").await;
    assert!(app.admin_address.is_empty());
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "ready" }));
    app.stop().await;
}

fn ws_url(app: &TestApp, token: &str) -> String {
    format!(
        "{}/v1/webchat/ws?token={token}",
        app.address.replacen("http", "ws", 1)
    )
}

fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn websockets_are_capped_per_session_and_in_total_and_topics_are_freed() {
    let app = spawn_app("[webchat]\nmax_sockets_per_session = 2\nmax_sockets = 3\n").await;
    let one = app.session("demo").await;
    let two = app.session("demo").await;
    let (a1, _) = tokio_tungstenite::connect_async(ws_url(&app, &one.token))
        .await
        .unwrap();
    let (a2, _) = tokio_tungstenite::connect_async(ws_url(&app, &one.token))
        .await
        .unwrap();
    match tokio_tungstenite::connect_async(ws_url(&app, &one.token)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        other => panic!("a third socket for one session must be refused: {other:?}"),
    }
    let (b1, _) = tokio_tungstenite::connect_async(ws_url(&app, &two.token))
        .await
        .unwrap();
    match tokio_tungstenite::connect_async(ws_url(&app, &two.token)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("a socket over the process total must be refused: {other:?}"),
    }
    let metrics = app.metrics().await;
    assert_eq!(
        gauge(&metrics, "sapa_webchat_topics"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        gauge(&metrics, "sapa_webchat_sockets"),
        Some(3.0),
        "{metrics}"
    );
    for mut socket in [a1, a2, b1] {
        socket.close(None).await.unwrap();
    }
    // Every listener gone: no topic, no socket left.
    eventually(Duration::from_secs(10), || async {
        let metrics = app.metrics().await;
        (gauge(&metrics, "sapa_webchat_topics") == Some(0.0)
            && gauge(&metrics, "sapa_webchat_sockets") == Some(0.0))
        .then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_websocket_message_over_64_kib_closes_the_socket() {
    let app = spawn_app("").await;
    let session = app.session("demo").await;
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url(&app, &session.token))
        .await
        .unwrap();
    socket
        .send(Message::Text("x".repeat(100 * 1024).into()))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                None | Some(Err(_) | Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the oversized message was accepted");
    app.stop().await;
}

#[tokio::test]
async fn an_idle_web_chat_session_expires_and_a_new_one_works() {
    let app = spawn_app("[webchat]\nsession_idle_timeout = \"1s\"\n").await;
    let idle = app.session("demo").await;
    let active = app.session("demo").await;
    let list = |token: String| {
        let (client, base) = (app.client.clone(), app.address.clone());
        async move {
            client
                .get(format!("{base}/v1/webchat/messages"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(list(idle.token.clone()).await.status(), 200);
    // The active session is used every 300 ms for 1.8 s; the idle one is left alone that long.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(list(active.token.clone()).await.status(), 200);
    }
    let expired = list(idle.token.clone()).await;
    assert_eq!(expired.status(), 401);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_expired", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("create a new session"),
        "{body}"
    );
    // The WebSocket refuses it too; a new session works.
    assert!(
        tokio_tungstenite::connect_async(ws_url(&app, &idle.token))
            .await
            .is_err()
    );
    let fresh = app.session("demo").await;
    assert_eq!(list(fresh.token).await.status(), 200);
    app.stop().await;
}
