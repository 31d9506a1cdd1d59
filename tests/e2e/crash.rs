//! Crash safety: the server is SIGKILLed repeatedly while web chat clients keep sending.
//! Afterwards every accepted message has exactly one answer and answers are in order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sapa_tests::{Session, create_session, eventually, list_messages, try_post_message};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::process::ServerProcess;

const SESSIONS: usize = 20;
const PER_SESSION: usize = 25;
const KILLS: usize = 3;

const QUESTIONS: &[&str] = &[
    "jam buka outlet Blok M hari Minggu?",
    "apakah ada wifi?",
    "berapa harga kopi susu gula aren?",
    "bisa bayar pakai qris?",
    "outlet depok buka hari minggu?",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_message_gets_exactly_one_answer_across_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("SAPA_CONVERSATION__DEBOUNCE", "0s"),
        ("SAPA_CONVERSATION__POLL_INTERVAL", "200ms"),
    ];
    let server = ServerProcess::start(dir.path(), &envs).await;
    let address = Arc::new(RwLock::new(server.address.clone()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(create_session(&client, &server.address, "demo").await);
    }
    let accepted = Arc::new(AtomicUsize::new(0));

    // Clients: each sends its messages one after another, retrying the same
    // client_message_id until the server answers 202 (as the widget does).
    let mut clients = Vec::new();
    for (s, session) in sessions.iter().cloned().enumerate() {
        let (client, address, accepted) = (client.clone(), address.clone(), accepted.clone());
        clients.push(tokio::spawn(async move {
            for n in 0..PER_SESSION {
                let id = format!("s{s}-m{n}");
                let text = QUESTIONS[(s + n) % QUESTIONS.len()];
                loop {
                    let base = address.read().await.clone();
                    match try_post_message(&client, &base, &session, &id, text).await {
                        Ok(r) if r.status() == 202 => break,
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }));
    }

    // Killer: SIGKILL at three points spread over the run, then restart on the same data dir.
    let total = SESSIONS * PER_SESSION;
    let mut server = server;
    for k in 1..=KILLS {
        let threshold = total * k / (KILLS + 1);
        eventually(Duration::from_secs(120), || async {
            (accepted.load(Ordering::SeqCst) >= threshold).then_some(())
        })
        .await;
        server.kill().await;
        server = ServerProcess::start(dir.path(), &envs).await;
        *address.write().await = server.address.clone();
    }
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), total);

    // Every conversation must end with all its messages answered.
    let base = server.address.clone();
    let transcripts: Vec<Vec<Value>> = eventually(Duration::from_secs(120), || async {
        let mut all = Vec::new();
        for session in &sessions {
            let messages = list_messages(&client, &base, session).await.ok()?;
            let answered: usize = messages
                .iter()
                .filter(|m| m["author"] == "bot")
                .map(|m| m["in_reply_to"].as_array().map_or(0, Vec::len))
                .sum();
            if answered < PER_SESSION {
                return None;
            }
            all.push(messages);
        }
        Some(all)
    })
    .await;
    // Nothing left pending: a wrongly repeated answer would already be visible.
    sapa_tests::settled(&client, &server.admin_address).await;
    let mut answers_total = 0;
    for (s, session) in sessions.iter().enumerate() {
        let messages = list_messages(&client, &base, session).await.unwrap();
        assert!(messages.len() >= transcripts[s].len());
        answers_total += check_transcript(s, PER_SESSION, session, &messages);
    }
    eprintln!(
        "crash test: {total} messages accepted, {KILLS} SIGKILLs, {answers_total} answers, 0 lost, 0 duplicated"
    );
    server.kill().await;
}

/// Asserts one conversation: each customer message stored once, answered exactly once, and
/// answers in the order of the messages they answer (`s{s}-m{n}` for n < `per_session`).
/// Returns the number of answers.
pub(crate) fn check_transcript(
    s: usize,
    per_session: usize,
    session: &Session,
    messages: &[Value],
) -> usize {
    let customer: Vec<String> = messages
        .iter()
        .filter(|m| m["author"] == "customer")
        .map(|m| m["client_message_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..per_session).map(|n| format!("s{s}-m{n}")).collect();
    assert_eq!(
        customer, expected,
        "conversation {}: customer messages stored once each, in order",
        session.conversation_id
    );
    let position: HashMap<&str, usize> = customer
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut answered = HashSet::new();
    let mut last_position = None;
    let mut answers = 0;
    for bot in messages.iter().filter(|m| m["author"] == "bot") {
        answers += 1;
        let replies: Vec<&str> = bot["in_reply_to"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(!replies.is_empty());
        for id in &replies {
            assert!(
                answered.insert(id.to_string()),
                "conversation {s}: {id} answered twice"
            );
            let p = position[id];
            assert!(
                last_position.is_none_or(|last| p > last),
                "conversation {s}: answer for {id} out of order"
            );
            last_position = Some(p);
        }
        assert!(!bot["text"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        answered.len(),
        per_session,
        "conversation {s}: every message answered"
    );
    answers
}
