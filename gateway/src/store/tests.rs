//! The store contract, run against SQLite and — when `SAPA_TEST_DATABASE_URL` is set — against
//! Postgres. With `CI` set and no Postgres URL, the Postgres half fails instead of skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use channels::ChannelKind;

use super::DatabaseTarget;

/// A store for one test, with whatever it needs cleaned up.
struct TestStore {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    name: &'static str,
}

async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&DatabaseTarget::Sqlite(dir.path().join("t.db")), 4)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    TestStore {
        store,
        _dir: Some(dir),
        name: "sqlite",
    }
}

/// A Postgres store in a fresh schema, or `None` when no server is configured (outside CI).
async fn postgres() -> Option<TestStore> {
    let url = match std::env::var("SAPA_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI is set but SAPA_TEST_DATABASE_URL is not: the Postgres store suite must run in CI"
            );
            eprintln!("SAPA_TEST_DATABASE_URL not set: Postgres half of the store suite skipped");
            return None;
        }
    };
    sqlx::any::install_default_drivers();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::AnyPool::connect(&url)
        .await
        .expect("SAPA_TEST_DATABASE_URL is set but Postgres is unreachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options[search_path]={schema}");
    let store = Store::connect(&DatabaseTarget::Postgres(scoped), 4)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some(TestStore {
        store,
        _dir: None,
        name: "postgres",
    })
}

async fn backends() -> Vec<TestStore> {
    let mut all = vec![sqlite().await];
    all.extend(postgres().await);
    all
}

async fn webchat_conversation(store: &Store, tenant: &str) -> (String, String) {
    store.upsert_tenant(tenant, "Shop", "id").await.unwrap();
    let account = store
        .ensure_channel_account(tenant, ChannelKind::Webchat, tenant, "Web chat", None)
        .await
        .unwrap();
    let conversation = store
        .create_webchat_session(
            tenant,
            &account,
            &format!("hash-{tenant}-{}", uuid::Uuid::new_v4()),
            "id",
        )
        .await
        .unwrap();
    (account, conversation)
}

fn item(
    tenant: &str,
    account: &str,
    conversation: &str,
    external: &str,
    text: &str,
) -> InboundItem {
    InboundItem {
        trace_id: None,
        tenant_id: tenant.into(),
        channel_account_id: account.into(),
        target: InboundTarget::Conversation(conversation.into()),
        external_id: external.into(),
        text: text.into(),
        kind: flows::TurnKind::Text,
        answer: true,
        content_kind: None,
        media: None,
        received_at_ms: now_ms(),
        channel_kind: ChannelKind::Webchat,
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    for t in backends().await {
        assert!(t.store.migrate().await.unwrap().is_empty(), "{}", t.name);
        t.store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn the_writer_leaves_the_log_to_the_checkpointer() {
    let t = sqlite().await;
    let s = &t.store;
    let (account, conv) = webchat_conversation(s, "shop").await;
    for i in 0..400 {
        s.accept_inbound(&[item("shop", &account, &conv, &format!("c{i}"), "halo")])
            .await
            .unwrap();
    }
    // The writer does not checkpoint on its own (SQLite's default would at 1,000 frames): its
    // commits are all still in the log...
    let (log, done) = s.checkpoint().await.unwrap();
    assert!(log > 1000, "{log} frames: the writer checkpointed");
    // ...until the checkpoint copies them, without anyone reading in between.
    assert_eq!(done, log);
    let (log, done) = s.checkpoint().await.unwrap();
    assert_eq!(done, log);
}

#[tokio::test]
async fn inbox_dedupes_on_the_unique_key_within_and_across_groups() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        let first = s
            .accept_inbound(&[
                item("shop", &account, &conv, "m1", "halo"),
                item("shop", &account, &conv, "m1", "halo"),
                item("shop", &account, &conv, "m2", "jam buka?"),
            ])
            .await
            .unwrap();
        assert!(matches!(first[0], Accepted::New { .. }), "{}", t.name);
        assert_eq!(first[1], Accepted::Duplicate, "{}", t.name);
        assert!(matches!(first[2], Accepted::New { .. }), "{}", t.name);
        let again = s
            .accept_inbound(&[item("shop", &account, &conv, "m1", "halo")])
            .await
            .unwrap();
        assert_eq!(again, vec![Accepted::Duplicate], "{}", t.name);
        let messages = s.messages_after("shop", &conv, 0, 100).await.unwrap();
        assert_eq!(messages.len(), 2, "{}", t.name);
        assert_eq!(messages[0].external_id.as_deref(), Some("m1"));
        assert!(messages[0].id < messages[1].id);
    }
}

#[tokio::test]
async fn a_turn_commits_state_messages_and_outbox_together_and_once() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        s.accept_inbound(&[
            item("shop", &account, &conv, "m1", "a"),
            item("shop", &account, &conv, "m2", "b"),
        ])
        .await
        .unwrap();
        assert_eq!(
            s.pending_conversations(10).await.unwrap(),
            vec![conv.clone()]
        );
        let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
        assert_eq!(batch.turns.len(), 2);
        let commit = Turn {
            trace_id: None,
            conversation: flows::Conversation {
                state: flows::ConversationState::Bot,
                locale: flows::Locale::Id,
                abstain_streak: 1,
                ..flows::Conversation::default()
            },
            handoff_reason: None,
            replies: vec![TurnReply {
                text: "jawaban".into(),
                choices: vec!["Hubungi admin".into()],
                citations: vec![],
            }],
            unanswered: vec!["a\nb".into()],
            llm_usage: vec![],
            accept_newer: false,
            follow_up: None,
            opt_out: None,
            ..Turn::new(batch.clone())
        };
        assert_eq!(
            s.commit_turn(&commit).await.unwrap(),
            TurnOutcome::Committed { outbox_rows: 1 },
            "{}",
            t.name
        );
        // Committing the same batch again (a second worker, a retry) changes nothing.
        assert_eq!(
            s.commit_turn(&commit).await.unwrap(),
            TurnOutcome::Stale,
            "{}",
            t.name
        );
        assert!(s.load_turn_batch(&conv).await.unwrap().is_none());
        let messages = s.messages_after("shop", &conv, 0, 100).await.unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[2].author, "bot");
        assert_eq!(
            messages[2].in_reply_to,
            vec!["m1".to_owned(), "m2".to_owned()]
        );
        assert_eq!(messages[2].choices, vec!["Hubungi admin".to_owned()]);
        assert_eq!(
            s.unanswered_questions("shop", 10).await.unwrap(),
            vec!["a\nb".to_owned()]
        );
        let claimed = s.claim_outbox(10, 30_000).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", t.name);
        assert_eq!(claimed[0].message.text, "jawaban");
        assert_eq!(
            claimed[0].message.in_reply_to,
            vec!["m1".to_owned(), "m2".to_owned()]
        );
        // A claimed row is leased: nobody else gets it meanwhile.
        assert!(
            s.claim_outbox(10, 30_000).await.unwrap().is_empty(),
            "{}",
            t.name
        );
        s.mark_sent(&claimed[0], Some("p1")).await.unwrap();
        let messages = s.messages_after("shop", &conv, 0, 100).await.unwrap();
        assert_eq!(messages[2].status.as_deref(), Some("sent"));
    }
}

#[tokio::test]
async fn usage_is_counted_with_the_messages_once_per_day_and_channel_on_both_backends() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        let first = item("shop", &account, &conv, "m1", "a");
        // The same message delivered twice, in one group and again later: counted once.
        s.accept_inbound(&[first.clone(), first.clone()])
            .await
            .unwrap();
        s.accept_inbound(&[first]).await.unwrap();
        let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
        let commit = Turn {
            trace_id: None,
            replies: vec![TurnReply {
                text: "jawaban".into(),
                choices: vec![],
                citations: vec![],
            }],
            unanswered: vec!["a".into()],
            llm_usage: vec![LlmUsage {
                model: "m".into(),
                prompt_tokens: 100,
                completion_tokens: 20,
            }],
            kind: "llm_answer",
            ..Turn::new(batch)
        };
        s.commit_turn(&commit).await.unwrap();
        assert_eq!(s.commit_turn(&commit).await.unwrap(), TurnOutcome::Stale);
        s.record_llm_usage(
            "shop",
            &conv,
            &[LlmUsage {
                model: "m".into(),
                prompt_tokens: 5,
                completion_tokens: 1,
            }],
        )
        .await
        .unwrap();
        s.accept_inbound(&[item("shop", &account, &conv, "m2", "b")])
            .await
            .unwrap();
        let today = s.usage_day("shop", now_ms());
        let days = s.usage("shop", &today, &today).await.unwrap();
        assert_eq!(days.len(), 1, "{}: {days:?}", t.name);
        let day = &days[0];
        assert_eq!(day.channel, "webchat");
        assert_eq!(
            (day.messages_in, day.messages_out, day.conversations),
            (2, 1, 1),
            "{}",
            t.name
        );
        assert_eq!(
            (day.answer_turns, day.answered, day.abstained),
            (1, 0, 1),
            "{}",
            t.name
        );
        assert_eq!((day.prompt_tokens, day.completion_tokens), (105, 21));
        assert!(day.first_response_p50_ms.is_some_and(|ms| ms >= 0));
        // The answer path's budget read: the month's counters, today's tokens (today only,
        // this tenant only) and no override yet.
        let used = s.budget_usage("shop", &today).await.unwrap();
        assert_eq!(
            (used.month_messages, used.month_tokens, used.day_tokens),
            (3, 126, 126),
            "{}",
            t.name
        );
        assert_eq!(used.quota_override, None);
        let month: String = today.chars().take(7).collect();
        let another_day = s
            .budget_usage("shop", &format!("{month}-00"))
            .await
            .unwrap();
        assert_eq!((another_day.month_tokens, another_day.day_tokens), (126, 0));
        assert_eq!(s.budget_usage("other", &today).await.unwrap().day_tokens, 0);
        // Other tenants see nothing of it.
        assert!(s.usage("other", &today, &today).await.unwrap().is_empty());
        assert_eq!(s.quota_override("shop").await.unwrap(), None);
        let set = QuotaOverride {
            monthly_messages: 10,
            monthly_llm_tokens: 0,
        };
        s.put_quota_override("shop", set, "owner@shop", 1)
            .await
            .unwrap();
        assert_eq!(s.quota_override("shop").await.unwrap(), Some(set));
        assert_eq!(
            s.budget_usage("shop", &today).await.unwrap().quota_override,
            Some(set)
        );
        let notice = |staff: &'static str, now: i64| {
            let month = month.clone();
            async move {
                s.notice_once("shop", staff, "quota_warning", &month, now)
                    .await
                    .unwrap()
            }
        };
        assert!(notice("owner-1", 1).await);
        assert!(!notice("owner-1", 2).await, "once");
        assert!(notice("owner-2", 3).await, "to each owner");
    }
}

#[tokio::test]
async fn a_newer_message_supersedes_an_answer_being_committed() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        s.accept_inbound(&[item("shop", &account, &conv, "m1", "a")])
            .await
            .unwrap();
        let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
        s.accept_inbound(&[item("shop", &account, &conv, "m2", "b")])
            .await
            .unwrap();
        let commit = Turn {
            trace_id: None,
            conversation: flows::Conversation {
                state: flows::ConversationState::Bot,
                locale: flows::Locale::Id,
                abstain_streak: 0,
                ..flows::Conversation::default()
            },
            handoff_reason: None,
            replies: vec![TurnReply {
                text: "x".into(),
                choices: vec![],
                citations: vec![],
            }],
            unanswered: vec![],
            llm_usage: vec![],
            accept_newer: false,
            follow_up: None,
            opt_out: None,
            ..Turn::new(batch.clone())
        };
        assert_eq!(
            s.commit_turn(&commit).await.unwrap(),
            TurnOutcome::Superseded,
            "{}",
            t.name
        );
        let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
        assert_eq!(batch.turns.len(), 2, "{}", t.name);
        assert!(s.claim_outbox(10, 30_000).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn outbox_sends_one_row_per_conversation_in_order_and_dead_letters() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        for n in 0..2 {
            s.accept_inbound(&[item("shop", &account, &conv, &format!("m{n}"), "q")])
                .await
                .unwrap();
            let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
            let commit = Turn {
                trace_id: None,
                conversation: flows::Conversation {
                    state: flows::ConversationState::Bot,
                    locale: flows::Locale::Id,
                    abstain_streak: 0,
                    ..flows::Conversation::default()
                },
                handoff_reason: None,
                replies: vec![TurnReply {
                    text: format!("r{n}"),
                    choices: vec![],
                    citations: vec![],
                }],
                unanswered: vec![],
                llm_usage: vec![],
                accept_newer: false,
                follow_up: None,
                opt_out: None,
                ..Turn::new(batch.clone())
            };
            s.commit_turn(&commit).await.unwrap();
        }
        let first = s.claim_outbox(10, 30_000).await.unwrap();
        assert_eq!(
            first.len(),
            1,
            "{}: only the oldest row of a conversation",
            t.name
        );
        assert_eq!(first[0].message.text, "r0");
        // A retry in the future holds back the later message too.
        s.record_send_failure(
            &first[0],
            &OutboxFailure::Retry {
                next_attempt_at: now_ms() + 60_000,
                error: "503".into(),
            },
        )
        .await
        .unwrap();
        assert!(
            s.claim_outbox(10, 30_000).await.unwrap().is_empty(),
            "{}",
            t.name
        );
        s.record_send_failure(
            &first[0],
            &OutboxFailure::Dead {
                error: "gave up".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(s.dead_letter_count("shop").await.unwrap(), 1);
        let next = s.claim_outbox(10, 30_000).await.unwrap();
        assert_eq!(next.len(), 1, "{}", t.name);
        assert_eq!(next[0].message.text, "r1");
        let messages = s.messages_after("shop", &conv, 0, 100).await.unwrap();
        let r0 = messages.iter().find(|m| m.body == "r0").unwrap();
        assert_eq!(r0.status.as_deref(), Some("failed"));
    }
}

#[tokio::test]
async fn tenant_scoping_hides_other_tenants_conversations() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop-a").await;
        webchat_conversation(s, "shop-b").await;
        s.accept_inbound(&[item("shop-a", &account, &conv, "m1", "rahasia")])
            .await
            .unwrap();
        assert_eq!(
            s.messages_after("shop-a", &conv, 0, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            s.messages_after("shop-b", &conv, 0, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            t.name
        );
        assert!(
            s.conversation_state("shop-b", &conv)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            s.channel_credentials("shop-b", &account)
                .await
                .unwrap()
                .is_none()
        );
        // An account id cannot be claimed by a second tenant.
        assert!(
            s.ensure_channel_account("shop-b", ChannelKind::Webchat, "shop-a", "x", None)
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn channel_credentials_are_stored_encrypted_and_read_back_per_tenant() {
    for t in backends().await {
        let s = &t.store;
        s.upsert_tenant("shop", "Shop", "id").await.unwrap();
        let secrets = crate::crypto::SecretBox::new(&[7u8; 32]);
        let sealed = secrets.seal(br#"{"access_token":"EAAG-secret"}"#);
        let account = s
            .ensure_channel_account(
                "shop",
                ChannelKind::Whatsapp,
                "106540352242922",
                "WA",
                Some(sealed.clone()),
            )
            .await
            .unwrap();
        let stored = s
            .channel_credentials("shop", &account)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, sealed, "{}", t.name);
        assert!(
            !stored.windows(11).any(|w| w == b"EAAG-secret"),
            "plaintext at rest"
        );
        assert_eq!(
            secrets.open(&stored).unwrap(),
            br#"{"access_token":"EAAG-secret"}"#
        );
    }
}

#[tokio::test]
async fn api_keys_are_tenant_scoped_and_revocable() {
    for t in backends().await {
        let s = &t.store;
        assert!(
            s.create_tenant("key-a", "A", "id").await.unwrap(),
            "{}",
            t.name
        );
        assert!(!s.create_tenant("key-a", "Other", "en").await.unwrap());
        assert_eq!(s.tenant("key-a").await.unwrap().unwrap().name, "A");
        s.create_tenant("key-b", "B", "en").await.unwrap();
        s.create_api_key("key-a", "pa1", "hash-a1").await.unwrap();
        s.create_api_key("key-a", "pa2", "hash-a2").await.unwrap();
        s.create_api_key("key-b", "pb1", "hash-b1").await.unwrap();
        // A prefix is unique across tenants, and a key needs an existing tenant.
        assert!(s.create_api_key("key-b", "pa1", "x").await.is_err());
        assert!(s.create_api_key("nobody", "pn1", "x").await.is_err());

        let found = s.active_api_key("pa1").await.unwrap().unwrap();
        assert_eq!(
            found,
            StoredApiKey {
                prefix: "pa1".into(),
                tenant_id: "key-a".into(),
                key_hash: "hash-a1".into(),
                scopes: crate::api_key::Scope::ALL.to_vec(),
                last_used_at_ms: None,
            }
        );
        // A key's last use is kept to the minute: one write per minute at most.
        s.touch_api_key("pa1", 100_000).await.unwrap();
        s.touch_api_key("pa1", 130_000).await.unwrap();
        assert_eq!(
            s.api_keys("key-a").await.unwrap()[0].last_used_at_ms,
            Some(100_000)
        );
        s.touch_api_key("pa1", 170_000).await.unwrap();
        assert_eq!(
            s.api_keys("key-a").await.unwrap()[0].last_used_at_ms,
            Some(170_000)
        );
        let found = s.active_api_key("pa1").await.unwrap().unwrap();
        assert!(!found.last_use_is_stale(200_000));
        assert!(found.last_use_is_stale(240_000));
        // A scoped key keeps exactly its scopes.
        s.upsert_tenant("key-s", "S", "id").await.unwrap();
        s.create_scoped_api_key("key-s", "ps1", "x", &[crate::api_key::Scope::Otp])
            .await
            .unwrap();
        assert_eq!(
            s.active_api_key("ps1").await.unwrap().unwrap().scopes,
            vec![crate::api_key::Scope::Otp]
        );
        let listed: Vec<String> = s
            .api_keys("key-a")
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.prefix)
            .collect();
        assert_eq!(listed, ["pa1", "pa2"]);

        // Tenant b cannot revoke a's key.
        assert!(!s.revoke_api_key("key-b", "pa1").await.unwrap());
        assert!(s.active_api_key("pa1").await.unwrap().is_some());
        assert!(s.revoke_api_key("key-a", "pa1").await.unwrap());
        assert!(!s.revoke_api_key("key-a", "pa1").await.unwrap());
        assert!(s.active_api_key("pa1").await.unwrap().is_none());
        assert!(s.active_api_key("pa2").await.unwrap().is_some());
        let keys = s.api_keys("key-a").await.unwrap();
        assert!(keys[0].revoked_at_ms.is_some() && keys[1].revoked_at_ms.is_none());
        assert_eq!(s.api_keys("key-b").await.unwrap().len(), 1);
    }
}

fn wa_item(tenant: &str, account: &str, wa_id: &str, external: &str, answer: bool) -> InboundItem {
    InboundItem {
        trace_id: None,
        tenant_id: tenant.into(),
        channel_account_id: account.into(),
        target: InboundTarget::Contact(ContactRef {
            external_id: wa_id.into(),
            display_name: Some("Rina".into()),
            locale: "id".into(),
            user_id: None,
            parent_user_id: None,
            username: None,
        }),
        external_id: external.into(),
        text: "halo".into(),
        kind: flows::TurnKind::Text,
        answer,
        content_kind: (!answer).then_some("reaction"),
        media: None,
        received_at_ms: now_ms(),
        channel_kind: ChannelKind::Whatsapp,
    }
}

fn conversation_of(accepted: &Accepted) -> String {
    match accepted {
        Accepted::New {
            conversation_id, ..
        } => conversation_id.clone(),
        Accepted::Duplicate | Accepted::Refused { .. } => panic!("expected a new message"),
    }
}

#[tokio::test]
async fn a_migration_missing_below_the_highest_applied_version_is_still_applied() {
    for t in backends().await {
        let s = &t.store;
        // Pretend version 1 was never recorded: the next migrate must run (only) its script
        // again, which fails on existing tables, proving it is not skipped by a MAX() check.
        sqlx::query("DELETE FROM sapa_migrations WHERE version = 1")
            .execute(&s.write)
            .await
            .unwrap();
        let err = s.migrate().await.unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version: 1, .. }),
            "{}: {err}",
            t.name
        );
    }
}

#[tokio::test]
async fn provider_messages_resolve_one_open_conversation_per_contact() {
    for t in backends().await {
        let s = &t.store;
        s.upsert_tenant("wa", "Shop", "id").await.unwrap();
        let account = s
            .ensure_channel_account("wa", ChannelKind::Whatsapp, "1065", "WA", Some(vec![1, 2]))
            .await
            .unwrap();
        let first = s
            .accept_inbound(&[
                wa_item("wa", &account, "628111", "wamid.1", true),
                wa_item("wa", &account, "628111", "wamid.2", true),
                wa_item("wa", &account, "628222", "wamid.3", true),
                wa_item("wa", &account, "628111", "wamid.1", true),
            ])
            .await
            .unwrap();
        let c1 = conversation_of(&first[0]);
        assert_eq!(conversation_of(&first[1]), c1, "{}", t.name);
        assert_ne!(conversation_of(&first[2]), c1, "{}", t.name);
        assert_eq!(first[3], Accepted::Duplicate, "{}", t.name);
        // A later group finds the same open conversation; replays stay duplicates.
        let later = s
            .accept_inbound(&[
                wa_item("wa", &account, "628111", "wamid.4", false),
                wa_item("wa", &account, "628111", "wamid.2", true),
            ])
            .await
            .unwrap();
        assert_eq!(conversation_of(&later[0]), c1, "{}", t.name);
        assert_eq!(later[1], Accepted::Duplicate, "{}", t.name);
        // The stored-only reaction is not pending for the bot.
        let batch = s.load_turn_batch(&c1).await.unwrap().unwrap();
        let pending: Vec<&str> = batch.turns.iter().map(|p| p.external_id.as_str()).collect();
        assert_eq!(pending, ["wamid.1", "wamid.2"], "{}", t.name);
        assert_eq!(batch.recipient, "628111", "{}", t.name);
        assert_eq!(batch.channel_kind, ChannelKind::Whatsapp, "{}", t.name);
        assert_eq!(
            s.channel_credentials("wa", &account).await.unwrap(),
            Some(vec![1, 2])
        );
        assert_eq!(
            s.channel_accounts_of_kind(ChannelKind::Whatsapp)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn delivery_statuses_only_move_forward() {
    for t in backends().await {
        let s = &t.store;
        s.upsert_tenant("wa2", "Shop", "id").await.unwrap();
        let account = s
            .ensure_channel_account("wa2", ChannelKind::Whatsapp, "2065", "WA", None)
            .await
            .unwrap();
        let accepted = s
            .accept_inbound(&[wa_item("wa2", &account, "628333", "wamid.in", true)])
            .await
            .unwrap();
        let conv = conversation_of(&accepted[0]);
        let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
        let commit = Turn {
            trace_id: None,
            conversation: flows::Conversation {
                state: flows::ConversationState::Bot,
                locale: flows::Locale::Id,
                abstain_streak: 0,
                ..flows::Conversation::default()
            },
            handoff_reason: None,
            replies: vec![TurnReply {
                text: "jawaban".into(),
                choices: vec![],
                citations: vec![],
            }],
            unanswered: vec![],
            llm_usage: vec![],
            accept_newer: false,
            follow_up: None,
            opt_out: None,
            ..Turn::new(batch.clone())
        };
        s.commit_turn(&commit).await.unwrap();
        let claimed = s.claim_outbox(10, 30_000).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", t.name);
        assert!(claimed[0].message.customer_last_seen_ms.is_some());
        s.mark_sent(&claimed[0], Some("wamid.OUT")).await.unwrap();
        let status = |state: &'static str, rank: i64, at_ms: i64| DeliveryStatus {
            provider_message_id: "wamid.OUT",
            state,
            rank,
            at_ms,
            error_code: None,
            error: None,
        };
        assert!(
            s.apply_delivery_status("wa2", &account, &status("read", 4, 3000))
                .await
                .unwrap()
        );
        assert!(
            !s.apply_delivery_status("wa2", &account, &status("delivered", 3, 2000))
                .await
                .unwrap()
        );
        assert!(
            !s.apply_delivery_status("wa2", &account, &status("sent", 1, 1000))
                .await
                .unwrap()
        );
        let failed = DeliveryStatus {
            error_code: Some("131026"),
            error: Some("undeliverable"),
            ..status("failed", 2, 4000)
        };
        assert!(
            !s.apply_delivery_status("wa2", &account, &failed)
                .await
                .unwrap()
        );
        // Another tenant cannot touch it; unknown ids change nothing.
        assert!(
            !s.apply_delivery_status("shop", &account, &status("read", 4, 1))
                .await
                .unwrap()
        );
        let unknown = DeliveryStatus {
            provider_message_id: "wamid.NOPE",
            ..status("read", 4, 1)
        };
        assert!(
            !s.apply_delivery_status("wa2", &account, &unknown)
                .await
                .unwrap()
        );
        let (state, code, at) = s
            .message_delivery("wa2", "wamid.OUT")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.as_deref(), Some("read"), "{}", t.name);
        assert_eq!(code, None);
        assert_eq!(at, Some(3000));
    }
}

#[tokio::test]
async fn statuses_of_any_part_of_a_split_message_reach_it() {
    for t in backends().await {
        let s = &t.store;
        let n = t.name;
        s.upsert_tenant("wa3", "Shop", "id").await.unwrap();
        s.upsert_tenant("other3", "Other", "id").await.unwrap();
        let account = s
            .ensure_channel_account("wa3", ChannelKind::Whatsapp, "2066", "WA", None)
            .await
            .unwrap();
        let accepted = s
            .accept_inbound(&[wa_item("wa3", &account, "628444", "wamid.in3", true)])
            .await
            .unwrap();
        let conv = conversation_of(&accepted[0]);
        let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
        let commit = Turn {
            trace_id: None,
            conversation: flows::Conversation {
                state: flows::ConversationState::Bot,
                locale: flows::Locale::Id,
                abstain_streak: 0,
                ..flows::Conversation::default()
            },
            handoff_reason: None,
            replies: vec![TurnReply {
                text: "jawaban panjang".into(),
                choices: vec![],
                citations: vec![],
            }],
            unanswered: vec![],
            llm_usage: vec![],
            accept_newer: false,
            follow_up: None,
            opt_out: None,
            ..Turn::new(batch.clone())
        };
        s.commit_turn(&commit).await.unwrap();
        let claimed = s.claim_outbox(10, 30_000).await.unwrap();
        assert_eq!(claimed.len(), 1, "{n}");
        let delivery = channels::model::Delivery {
            provider_message_id: Some("wamid.PART3".into()),
            extra_provider_message_ids: vec!["wamid.PART1".into(), "wamid.PART2".into()],
            ..channels::model::Delivery::default()
        };
        s.mark_sent_many(&[(&claimed[0], &delivery)]).await.unwrap();
        let status =
            |id: &'static str, state: &'static str, rank: i64, at_ms: i64| DeliveryStatus {
                provider_message_id: id,
                state,
                rank,
                at_ms,
                error_code: None,
                error: None,
            };
        // Every part finds the message.
        for part in ["wamid.PART1", "wamid.PART2", "wamid.PART3"] {
            let (state, _, _) = s.message_delivery("wa3", part).await.unwrap().unwrap();
            assert_eq!(state.as_deref(), Some("sent"), "{n} {part}");
        }
        // The first part is delivered: the message is delivered.
        assert!(
            s.apply_delivery_status(
                "wa3",
                &account,
                &status("wamid.PART1", "delivered", 3, 1000)
            )
            .await
            .unwrap(),
            "{n}"
        );
        // Another tenant, or another account, cannot touch it through a part id.
        assert!(
            !s.apply_delivery_status("other3", &account, &status("wamid.PART1", "read", 4, 1500))
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            !s.apply_delivery_status(
                "wa3",
                "no-such-account",
                &status("wamid.PART2", "read", 4, 1500)
            )
            .await
            .unwrap(),
            "{n}"
        );
        // A later part only reports `sent`/`delivered`: never moves it back.
        assert!(
            !s.apply_delivery_status("wa3", &account, &status("wamid.PART3", "sent", 1, 1100))
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            s.apply_delivery_status("wa3", &account, &status("wamid.PART2", "read", 4, 2000))
                .await
                .unwrap(),
            "{n}"
        );
        let (state, _, at) = s
            .message_delivery("wa3", "wamid.PART3")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.as_deref(), Some("read"), "{n}");
        assert_eq!(at, Some(2000), "{n}");
        // One part failed: the customer misses part of the message, so it is failed, for good.
        let failed = DeliveryStatus {
            error_code: Some("131047"),
            error: Some("window closed"),
            ..status("wamid.PART3", "failed", 2, 3000)
        };
        assert!(
            s.apply_delivery_status("wa3", &account, &failed)
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            !s.apply_delivery_status("wa3", &account, &failed)
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            !s.apply_delivery_status("wa3", &account, &status("wamid.PART1", "read", 4, 4000))
                .await
                .unwrap(),
            "{n}"
        );
        let (state, code, at) = s
            .message_delivery("wa3", "wamid.PART1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.as_deref(), Some("failed"), "{n}");
        assert_eq!(code.as_deref(), Some("131047"), "{n}");
        assert_eq!(at, Some(3000), "{n}");
        // The re-engagement template is found through an earlier part too, once.
        let template = channels::model::Template {
            name: "reengage".into(),
            language: "id".into(),
            body_params: vec![],
            copy_code: None,
        };
        assert!(
            s.enqueue_reengagement("wa3", &account, "wamid.PART1", &template)
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            !s.enqueue_reengagement("wa3", &account, "wamid.PART2", &template)
                .await
                .unwrap(),
            "{n}"
        );
    }
}

#[tokio::test]
async fn contacts_track_reachability_phone_edits_migration_and_poll_offset() {
    for t in backends().await {
        let s = &t.store;
        let n = t.name;
        s.upsert_tenant("tg", "Shop", "id").await.unwrap();
        s.upsert_tenant("other", "Other", "id").await.unwrap();
        let account = s
            .ensure_channel_account("tg", ChannelKind::Telegram, "7000000001", "Telegram", None)
            .await
            .unwrap();
        let first = s
            .accept_inbound(&[wa_item("tg", &account, "5123", "5123:1", true)])
            .await
            .unwrap();
        let conversation = conversation_of(&first[0]);
        // Blocked, then unblocked by writing again.
        assert!(
            s.set_contact_reachable("tg", &account, "5123", false)
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            s.conversation_unreachable("tg", &conversation)
                .await
                .unwrap(),
            "{n}"
        );
        let batch = s
            .unreachable_conversations(&[conversation.as_str(), "no-such-conversation"])
            .await
            .unwrap();
        assert_eq!(batch.len(), 1, "{n}");
        assert!(batch.contains(&conversation), "{n}");
        // Another tenant cannot see or change it.
        assert!(
            !s.conversation_unreachable("other", &conversation)
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            !s.set_contact_reachable("other", &account, "5123", true)
                .await
                .unwrap(),
            "{n}"
        );
        s.accept_inbound(&[wa_item("tg", &account, "5123", "5123:2", true)])
            .await
            .unwrap();
        assert_eq!(
            s.contact_unreachable("tg", &account, "5123").await.unwrap(),
            Some(false),
            "{n}"
        );
        s.mark_conversation_unreachable("tg", &conversation)
            .await
            .unwrap();
        assert_eq!(
            s.contact_unreachable("tg", &account, "5123").await.unwrap(),
            Some(true),
            "{n}"
        );
        // Shared phone number.
        s.set_contact_phone("tg", &account, "5123", "6281311112222")
            .await
            .unwrap();
        assert_eq!(
            s.contact_phone("tg", &account, "5123")
                .await
                .unwrap()
                .as_deref(),
            Some("6281311112222"),
            "{n}"
        );
        // Edits replace the stored text of a known message only.
        assert!(
            s.edit_inbound_text("tg", &account, "5123:1", "halo lagi")
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            !s.edit_inbound_text("tg", &account, "5123:9", "x")
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            !s.edit_inbound_text("other", &account, "5123:1", "x")
                .await
                .unwrap(),
            "{n}"
        );
        assert_eq!(
            s.inbound_text("tg", &account, "5123:1")
                .await
                .unwrap()
                .as_deref(),
            Some("halo lagi"),
            "{n}"
        );
        // Choices of a sent bot message can be looked up by its provider id (long inline
        // keyboard payloads reference them by index).
        let batch = s.load_turn_batch(&conversation).await.unwrap().unwrap();
        let long = "Saya ingin berbicara dengan admin tentang pesanan katering besar".to_owned();
        let commit = Turn {
            trace_id: None,
            conversation: flows::Conversation {
                state: flows::ConversationState::Bot,
                locale: flows::Locale::Id,
                abstain_streak: 0,
                ..flows::Conversation::default()
            },
            handoff_reason: None,
            replies: vec![TurnReply {
                text: "Pilih:".into(),
                choices: vec!["Ya".into(), long.clone()],
                citations: vec![],
            }],
            unanswered: vec![],
            llm_usage: vec![],
            accept_newer: false,
            follow_up: None,
            opt_out: None,
            ..Turn::new(batch.clone())
        };
        s.commit_turn(&commit).await.unwrap();
        let claimed = s.claim_outbox(10, 30_000).await.unwrap();
        s.mark_sent(&claimed[0], Some("5123:77")).await.unwrap();
        assert_eq!(
            s.sent_choice("tg", &account, "5123:77", 1).await.unwrap(),
            Some(long),
            "{n}"
        );
        assert_eq!(
            s.sent_choice("tg", &account, "5123:77", 5).await.unwrap(),
            None,
            "{n}"
        );
        assert_eq!(
            s.sent_choice("other", &account, "5123:77", 1)
                .await
                .unwrap(),
            None,
            "{n}"
        );
        // A group that became a supergroup keeps its contact.
        assert!(
            s.move_contact("tg", &account, "5123", "-1005123")
                .await
                .unwrap(),
            "{n}"
        );
        assert_eq!(
            s.contact_phone("tg", &account, "-1005123")
                .await
                .unwrap()
                .as_deref(),
            Some("6281311112222"),
            "{n}"
        );
        // The poll offset only moves forward.
        assert_eq!(s.poll_offset(&account).await.unwrap(), 0, "{n}");
        s.set_poll_offset(&account, 42).await.unwrap();
        s.set_poll_offset(&account, 40).await.unwrap();
        assert_eq!(s.poll_offset(&account).await.unwrap(), 42, "{n}");
    }
}

#[tokio::test]
async fn agent_messages_are_stored_and_queued_in_order_within_their_tenant() {
    use channels::model::{Author, MediaKind, MediaSource, OutboundMedia};
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        webchat_conversation(s, "other").await;
        let media = OutboundMedia {
            kind: MediaKind::Image,
            source: MediaSource::Url("https://cdn.example.com/menu.jpg".into()),
            caption: None,
            filename: None,
        };
        // Another tenant cannot queue into (or even see) the conversation.
        assert!(
            s.enqueue_agent_message("other", &conv, "x", None)
                .await
                .unwrap()
                .is_none(),
            "{}",
            t.name
        );
        assert_eq!(
            s.conversation_channel_kind("other", &conv).await.unwrap(),
            None
        );
        assert_eq!(
            s.conversation_channel_kind("shop", &conv).await.unwrap(),
            Some(ChannelKind::Webchat)
        );
        // The customer wrote: the queued message carries that time (WhatsApp's window).
        let inbound = item("shop", &account, &conv, "c1", "menu?");
        s.accept_inbound(std::slice::from_ref(&inbound))
            .await
            .unwrap();
        let first = s
            .enqueue_agent_message("shop", &conv, "Ini menunya", Some(&media))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.channel_kind, ChannelKind::Webchat);
        let second = s
            .enqueue_agent_message("shop", &conv, "Ada lagi?", None)
            .await
            .unwrap()
            .unwrap();
        assert!(second.message_id > first.message_id);
        let stored = s.messages_after("shop", &conv, 0, 10).await.unwrap();
        assert_eq!(stored.len(), 3, "{}", t.name);
        let stored = &stored[1..];
        assert_eq!(stored[0].author, "agent");
        assert_eq!(
            stored[0].body,
            "Ini menunya\n[image] https://cdn.example.com/menu.jpg"
        );
        assert_eq!(stored[0].status.as_deref(), Some("pending"));
        // One row per conversation at a time, oldest first; the payload carries the media.
        let claimed = s.claim_outbox(10, 30_000).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", t.name);
        let message = &claimed[0].message;
        assert_eq!(message.message_id, first.message_id);
        assert_eq!(message.author, Author::Agent);
        assert_eq!(message.text, "Ini menunya");
        assert_eq!(message.media.as_ref(), Some(&media));
        assert_eq!(message.customer_last_seen_ms, Some(inbound.received_at_ms));
        s.mark_sent(&claimed[0], None).await.unwrap();
        let claimed = s.claim_outbox(10, 30_000).await.unwrap();
        assert_eq!(claimed[0].message.message_id, second.message_id);
        assert!(claimed[0].message.media.is_none());
    }
}

#[tokio::test]
async fn web_chat_client_ids_are_deduplicated_per_conversation_not_per_tenant() {
    for t in backends().await {
        let s = &t.store;
        let (account, first) = webchat_conversation(s, "shop").await;
        let (_, second) = webchat_conversation(s, "shop").await;
        // API clients number their messages 1, 2, …: two sessions send "1".
        let accepted = s
            .accept_inbound(&[
                item("shop", &account, &first, "1", "halo"),
                item("shop", &account, &second, "1", "jam buka?"),
            ])
            .await
            .unwrap();
        assert!(matches!(accepted[0], Accepted::New { .. }), "{}", t.name);
        assert!(matches!(accepted[1], Accepted::New { .. }), "{}", t.name);
        // The same session resending it is a duplicate, in a later group too.
        let again = s
            .accept_inbound(&[item("shop", &account, &second, "1", "jam buka?")])
            .await
            .unwrap();
        assert_eq!(again, vec![Accepted::Duplicate], "{}", t.name);
        for conversation in [&first, &second] {
            let messages = s.messages_after("shop", conversation, 0, 10).await.unwrap();
            assert_eq!(messages.len(), 1, "{}", t.name);
            // The client sees its own id, not the scoped inbox key.
            assert_eq!(messages[0].external_id.as_deref(), Some("1"), "{}", t.name);
        }
        // Replies refer to the client's id too.
        let batch = s.load_turn_batch(&second).await.unwrap().unwrap();
        assert_eq!(batch.turns[0].external_id, "1", "{}", t.name);
    }
}

#[tokio::test]
async fn a_group_with_nul_text_and_a_refused_item_stores_every_other_item() {
    for t in backends().await {
        let s = &t.store;
        let (account, first) = webchat_conversation(s, "shop").await;
        let (_, second) = webchat_conversation(s, "shop").await;
        // A contact of a tenant that does not exist: the database refuses it (foreign key).
        let mut refused = item("ghost", &account, &first, "r1", "halo");
        refused.target = InboundTarget::Contact(ContactRef {
            external_id: "628000".into(),
            display_name: Some("Ghost".into()),
            locale: "id".into(),
            user_id: None,
            parent_user_id: None,
            username: None,
        });
        let accepted = s
            .accept_inbound(&[
                item("shop", &account, &first, "a1", "halo"),
                item("shop", &account, &second, "n1", "kopi\u{0}susu\u{0}"),
                refused,
                item("shop", &account, &first, "a2", "jam buka?"),
            ])
            .await
            .unwrap();
        assert!(matches!(accepted[0], Accepted::New { .. }), "{}", t.name);
        let Accepted::New { message, .. } = &accepted[1] else {
            panic!("{}: NUL text not stored: {:?}", t.name, accepted[1]);
        };
        assert_eq!(message.body, "kopisusu", "{}", t.name);
        let Accepted::Refused { refusal, cause } = &accepted[2] else {
            panic!("{}: expected a refusal: {:?}", t.name, accepted[2]);
        };
        assert_eq!(*refusal, Refusal::Rule, "{}", t.name);
        assert!(
            cause.contains("database unavailable: "),
            "{}: {cause}",
            t.name
        );
        assert!(matches!(accepted[3], Accepted::New { .. }), "{}", t.name);
        let firsts = s.messages_after("shop", &first, 0, 10).await.unwrap();
        let bodies: Vec<&str> = firsts.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["halo", "jam buka?"], "{}", t.name);
        let seconds = s.messages_after("shop", &second, 0, 10).await.unwrap();
        assert_eq!(seconds[0].body, "kopisusu", "{}", t.name);
        // The refused item left nothing behind: it can be sent again once fixed.
        assert!(s.tenant("ghost").await.unwrap().is_none());
    }
}

/// A WhatsApp message from a customer known by `address` and maybe a business-scoped user id.
fn wa_user_item(
    account: &str,
    address: &str,
    user_id: Option<&str>,
    external: &str,
) -> InboundItem {
    let mut item = wa_item("wa", account, address, external, true);
    if let InboundTarget::Contact(contact) = &mut item.target {
        contact.user_id = user_id.map(str::to_owned);
        contact.username = user_id.map(|_| "sari.kopi".to_owned());
    }
    item
}

#[tokio::test]
async fn contacts_are_found_by_phone_or_user_id_and_linked_when_both_appear() {
    const PHONE: &str = "6281399998888";
    const USER: &str = "ID.13491208655302741918";
    for t in backends().await {
        let s = &t.store;
        let n = t.name;
        s.upsert_tenant("wa", "Shop", "id").await.unwrap();
        let account = s
            .ensure_channel_account("wa", ChannelKind::Whatsapp, "106540352242922", "WA", None)
            .await
            .unwrap();
        let accept = |item: InboundItem| async move {
            conversation_of(&s.accept_inbound(&[item]).await.unwrap()[0])
        };
        // Username only, then both, then each alone: one contact, one conversation.
        let first = accept(wa_user_item(&account, USER, Some(USER), "wamid.U1")).await;
        let both = accept(wa_user_item(&account, PHONE, Some(USER), "wamid.U2")).await;
        let phone = accept(wa_user_item(&account, PHONE, None, "wamid.U3")).await;
        let user = accept(wa_user_item(&account, USER, Some(USER), "wamid.U4")).await;
        assert_eq!([&both, &phone, &user], [&first; 3], "{n}");
        let ids = s.contact_ids("wa", &account, USER).await.unwrap().unwrap();
        assert_eq!(
            ids.external_id, PHONE,
            "{n}: the phone number is the address once known"
        );
        assert_eq!(ids.user_id.as_deref(), Some(USER), "{n}");
        assert_eq!(ids.username.as_deref(), Some("sari.kopi"), "{n}");
        // A turn for it is addressed to the phone number.
        let batch = s.load_turn_batch(&first).await.unwrap().unwrap();
        assert_eq!(batch.recipient, PHONE, "{n}");

        // Two contacts (one by phone, one by user id) are linked when a message names both.
        let by_phone = accept(wa_user_item(&account, "6285600001111", None, "wamid.L1")).await;
        let by_user = accept(wa_user_item(&account, "ID.5", Some("ID.5"), "wamid.L2")).await;
        assert_ne!(by_phone, by_user, "{n}");
        let linked = accept(wa_user_item(
            &account,
            "6285600001111",
            Some("ID.5"),
            "wamid.L3",
        ))
        .await;
        assert!([&by_phone, &by_user].contains(&&linked), "{n}");
        let ids = s
            .contact_ids("wa", &account, "ID.5")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids.external_id, "6285600001111", "{n}");
        let again = accept(wa_user_item(&account, "ID.5", Some("ID.5"), "wamid.L4")).await;
        assert_eq!(again, linked, "{n}");

        // A number change keeps the contact and its conversation under the new number.
        assert!(
            s.change_contact_ids(
                "wa",
                &account,
                PHONE,
                &ContactIdsChange {
                    phone: Some("6281377776666"),
                    user_id: Some("ID.777"),
                    parent_user_id: None,
                },
            )
            .await
            .unwrap(),
            "{n}"
        );
        let moved = accept(wa_user_item(&account, "6281377776666", None, "wamid.U5")).await;
        assert_eq!(moved, first, "{n}");
        let ids = s
            .contact_ids("wa", &account, "ID.777")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids.external_id, "6281377776666", "{n}");
        assert!(
            !s.change_contact_ids("wa", &account, "000", &ContactIdsChange::default())
                .await
                .unwrap(),
            "{n}"
        );

        // A revoked message is marked, settled (never answered) and scoped by tenant.
        assert!(
            !s.revoke_inbound("other", &account, "wamid.U5", now_ms())
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            s.revoke_inbound("wa", &account, "wamid.U5", now_ms())
                .await
                .unwrap(),
            "{n}"
        );
        assert_eq!(
            s.inbound_text("wa", &account, "wamid.U5")
                .await
                .unwrap()
                .as_deref(),
            Some("[message deleted by the customer]"),
            "{n}"
        );
        let pending = s.load_turn_batch(&first).await.unwrap().unwrap();
        assert!(
            pending.turns.iter().all(|t| t.external_id != "wamid.U5"),
            "{n}"
        );
    }
}

fn otp_challenge(tenant: &str, id: &str, recipient: &str, now: i64) -> OtpChallenge {
    OtpChallenge {
        id: id.into(),
        tenant_id: tenant.into(),
        recipient: recipient.into(),
        purpose: "login".into(),
        locale: "id".into(),
        channel: "webchat".into(),
        code_hmac: "mac".into(),
        status: "pending".into(),
        attempts: 0,
        created_at_ms: now,
        expires_at_ms: now + 300_000,
        verified_at_ms: None,
    }
}

fn otp_send(account: &str, id: &str, kind: &str) -> OtpSend {
    OtpSend {
        channel_account_id: account.into(),
        channel_kind: ChannelKind::Webchat,
        message: channels::OutboundMessage {
            message_id: 0,
            conversation_id: format!("otp:{id}"),
            recipient: "r".into(),
            author: channels::model::Author::Bot,
            text: channels::model::CODE_PLACEHOLDER.into(),
            choices: vec![],
            in_reply_to: vec![],
            created_at_ms: 0,
            idempotency_key: format!("otp:{id}:{kind}"),
            customer_last_seen_ms: None,
            template: None,
            media: None,
        },
        sealed_code: "sealed".into(),
    }
}

const LIMITS: OtpLimits = OtpLimits {
    cooldown_ms: 60_000,
    max_per_recipient: 3,
    recipient_window_ms: 600_000,
    max_per_tenant_per_hour: 1000,
};

#[tokio::test]
async fn codes_go_out_first_fall_back_once_and_verify_once() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        // An ordinary answer is queued first; the code still leaves first.
        s.enqueue_agent_message("shop", &conv, "halo", None)
            .await
            .unwrap()
            .unwrap();
        let now = now_ms();
        let new = NewOtpChallenge {
            challenge: otp_challenge("shop", "otp_a", "+62811", now),
            idempotency_key: Some("k1".into()),
            sends: vec![
                otp_send(&account, "otp_a", "first"),
                otp_send(&account, "otp_a", "second"),
            ],
        };
        assert!(matches!(
            s.issue_otp(&new, LIMITS).await.unwrap(),
            OtpIssue::Created(_)
        ));
        // The same idempotency key returns the challenge without a second send.
        assert!(
            matches!(s.issue_otp(&new, LIMITS).await.unwrap(), OtpIssue::Existing(c) if c.id == "otp_a")
        );
        let claimed = s.claim_outbox(1, 30_000).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", t.name);
        let first = &claimed[0];
        let otp = first.otp.as_ref().expect("an OTP row first");
        assert_eq!(otp.sealed_code.as_deref(), Some("sealed"));
        // The fallback row is held: only the answer is claimable besides.
        let others = s.claim_outbox(10, 30_000).await.unwrap();
        assert!(others.iter().all(|c| c.otp.is_none()), "{}", t.name);
        // The first channel fails for good: the fallback is released, the failed row scrubbed.
        s.record_send_failure(first, &OutboxFailure::Permanent { error: "x".into() })
            .await
            .unwrap();
        let fallback = s.claim_outbox(10, 30_000).await.unwrap();
        assert_eq!(fallback.len(), 1, "{}", t.name);
        assert!(fallback[0].message.idempotency_key.ends_with(":second"));
        s.mark_sent(&fallback[0], Some("p-1")).await.unwrap();
        let sealed: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE sealed_code IS NOT NULL")
                .fetch_one(s.pool())
                .await
                .unwrap()
                .try_get("n")
                .unwrap();
        assert_eq!(sealed, 0, "{}", t.name);
        assert_eq!(
            s.otp_challenge("shop", "otp_a")
                .await
                .unwrap()
                .unwrap()
                .status,
            "sent"
        );
        // Another tenant does not see it.
        assert!(s.otp_challenge("other", "otp_a").await.unwrap().is_none());
        assert_eq!(
            s.check_otp("other", "otp_a", true, 5, now).await.unwrap(),
            OtpCheck::Closed
        );
        // Two right codes at once: exactly one verifies.
        let (a, b) = tokio::join!(
            s.check_otp("shop", "otp_a", true, 5, now),
            s.check_otp("shop", "otp_a", true, 5, now)
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == OtpCheck::Verified)
                .count(),
            1,
            "{} {outcomes:?}",
            t.name
        );

        // Limits: the cooldown, then three per window.
        let later = now + 1000;
        let next = NewOtpChallenge {
            challenge: otp_challenge("shop", "otp_b", "+62811", later),
            idempotency_key: None,
            sends: vec![otp_send(&account, "otp_b", "first")],
        };
        assert!(matches!(
            s.issue_otp(&next, LIMITS).await.unwrap(),
            OtpIssue::Refused(OtpRefusal::ResendTooSoon, ms) if ms > 0 && ms <= 60_000
        ));
        for (i, at) in [61_000, 122_000].into_iter().enumerate() {
            let id = format!("otp_c{i}");
            let new = NewOtpChallenge {
                challenge: otp_challenge("shop", &id, "+62811", now + at),
                idempotency_key: None,
                sends: vec![otp_send(&account, &id, "first")],
            };
            assert!(
                matches!(
                    s.issue_otp(&new, LIMITS).await.unwrap(),
                    OtpIssue::Created(_)
                ),
                "{}",
                t.name
            );
        }
        // The newest superseded the older live one.
        assert_eq!(
            s.otp_challenge("shop", "otp_c0")
                .await
                .unwrap()
                .unwrap()
                .status,
            "superseded"
        );
        let fourth = NewOtpChallenge {
            challenge: otp_challenge("shop", "otp_d", "+62811", now + 183_000),
            idempotency_key: None,
            sends: vec![otp_send(&account, "otp_d", "first")],
        };
        assert!(
            matches!(
                s.issue_otp(&fourth, LIMITS).await.unwrap(),
                OtpIssue::Refused(OtpRefusal::RecipientLimit, _)
            ),
            "{}",
            t.name
        );

        // Wrong codes count, and the last allowed one locks.
        for attempt in 1..=3 {
            let outcome = s
                .check_otp("shop", "otp_c1", false, 3, now + 122_000)
                .await
                .unwrap();
            assert_eq!(
                outcome,
                OtpCheck::Wrong {
                    attempts: attempt,
                    locked: attempt == 3
                }
            );
        }
        assert_eq!(
            s.check_otp("shop", "otp_c1", true, 3, now + 122_000)
                .await
                .unwrap(),
            OtpCheck::Closed
        );
    }
}

#[tokio::test]
async fn a_tenant_over_its_hourly_code_cap_is_refused_until_the_oldest_ages_out() {
    for t in backends().await {
        let s = &t.store;
        let (account, _) = webchat_conversation(s, "shop").await;
        let limits = OtpLimits {
            max_per_tenant_per_hour: 2,
            ..LIMITS
        };
        let now = now_ms();
        for (i, recipient) in ["+62811", "+62812", "+62813"].iter().enumerate() {
            let id = format!("otp_t{i}");
            let new = NewOtpChallenge {
                challenge: otp_challenge("shop", &id, recipient, now + i64::try_from(i).unwrap()),
                idempotency_key: None,
                sends: vec![otp_send(&account, &id, "first")],
            };
            let outcome = s.issue_otp(&new, limits).await.unwrap();
            if i < 2 {
                assert!(matches!(outcome, OtpIssue::Created(_)), "{}", t.name);
            } else {
                // Retry when the oldest of the hour is an hour old.
                assert!(
                    matches!(outcome, OtpIssue::Refused(OtpRefusal::TenantLimit, ms) if ms > 3_500_000 && ms <= 3_600_000),
                    "{} {outcome:?}",
                    t.name
                );
            }
        }
    }
}

#[tokio::test]
async fn staff_sessions_and_the_console_queues_work_on_both_backends() {
    for t in backends().await {
        let s = &t.store;
        let (_, conv) = webchat_conversation(s, "shop").await;
        webchat_conversation(s, "other").await;
        let member = StaffMember {
            id: "stf_a".into(),
            tenant_id: "shop".into(),
            email: "a@shop.local".into(),
            role: "agent".into(),
            whatsapp: Some("+62811".into()),
            telegram_chat_id: Some(42),
            disabled_at_ms: None,
            locked_until_ms: None,
            has_password: true,
        };
        assert!(
            s.add_staff(&member, Some("hash"), 1).await.unwrap(),
            "{}",
            t.name
        );
        assert!(
            !s.add_staff(&member, Some("hash"), 1).await.unwrap(),
            "{}",
            t.name
        );
        assert!(
            s.staff_login("other", "a@shop.local")
                .await
                .unwrap()
                .is_none()
        );
        let login = s
            .staff_login("shop", "a@shop.local")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(login.member, member);
        // Lockout at the third failure of three.
        assert!(!s.staff_login_failed("stf_a", 3, 999).await.unwrap());
        assert!(!s.staff_login_failed("stf_a", 3, 999).await.unwrap());
        assert!(
            s.staff_login_failed("stf_a", 3, 999).await.unwrap(),
            "{}",
            t.name
        );
        s.staff_login_succeeded("stf_a").await.unwrap();
        // Links work once; sessions expire when idle.
        s.add_staff_link("stf_a", "link-hash", 100).await.unwrap();
        assert!(
            s.use_staff_link("link-hash", "new", 50)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            s.use_staff_link("link-hash", "newer", 60)
                .await
                .unwrap()
                .is_none()
        );
        s.add_staff_session(&member, "session-hash", "csrf-hash", 1_000)
            .await
            .unwrap();
        let live = s
            .staff_session("session-hash", 0, 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(live.csrf_hash, "csrf-hash");
        assert!(
            s.staff_session("session-hash", 2_000, 3_000)
                .await
                .unwrap()
                .is_none()
        );
        s.audit("shop", Some("stf_a"), "login", None, 5)
            .await
            .unwrap();
        assert_eq!(s.audit_log("shop", 10).await.unwrap()[0].0, "login");
        assert!(s.audit_log("other", 10).await.unwrap().is_empty());

        // The queues: waiting, claimed (mine), handed back, resolved; tenant-scoped.
        sqlx::query(
            "UPDATE conversations SET state = 'waiting_human', waiting_since = 7 WHERE id = $1",
        )
        .bind(&conv)
        .execute(s.pool())
        .await
        .unwrap();
        let waiting = s
            .console_queue("shop", Queue::Waiting, "stf_a", 10)
            .await
            .unwrap();
        assert_eq!(waiting.len(), 1, "{}", t.name);
        assert_eq!(waiting[0].waiting_since_ms, Some(7));
        assert!(
            s.console_queue("other", Queue::Open, "x", 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.claim_conversation("other", &conv, "stf_x", 8)
                .await
                .unwrap(),
            ConsoleClaim::NotFound
        );
        assert_eq!(
            s.claim_conversation("shop", &conv, "stf_a", 8)
                .await
                .unwrap(),
            ConsoleClaim::Claimed
        );
        assert_eq!(
            s.claim_conversation("shop", &conv, "stf_b", 9)
                .await
                .unwrap(),
            ConsoleClaim::TakenBy("stf_a".into())
        );
        let mine = s
            .console_queue("shop", Queue::Mine, "stf_a", 10)
            .await
            .unwrap();
        assert_eq!(mine[0].assignee.as_deref(), Some("stf_a"));
        assert!(
            s.add_note("shop", &conv, "catatan", 10)
                .await
                .unwrap()
                .is_some()
        );
        assert!(s.add_note("other", &conv, "x", 10).await.unwrap().is_none());
        assert!(
            s.messages_after("shop", &conv, 0, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.console_messages("shop", &conv, 0, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            s.release_conversation("shop", &conv, "stf_b", true, 11)
                .await
                .unwrap()
                .is_none()
        );
        // The claim kept how long the chat waited (7 → 8).
        let load = s.wait_load("shop", &conv).await.unwrap();
        assert_eq!(load.recent_waits_ms, vec![1]);
        assert_eq!(load.typical_minutes(5), 1);
        assert!(
            s.wait_load("other", &conv)
                .await
                .unwrap()
                .recent_waits_ms
                .is_empty()
        );
        assert_eq!(
            s.release_conversation("shop", &conv, "stf_a", false, 11)
                .await
                .unwrap()
                .map(|step| step.to),
            Some(flows::handoff::Handoff::Resolved)
        );
        let resolved = s
            .console_queue("shop", Queue::Resolved, "stf_a", 10)
            .await
            .unwrap();
        assert_eq!(resolved[0].state, "closed", "{}", t.name);
        assert!(
            s.set_staff_disabled("shop", "a@shop.local", Some(12))
                .await
                .unwrap()
        );
        assert!(
            s.staff_session("session-hash", 0, 1_000)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn auto_assignment_is_round_robin_within_caps_on_both_backends() {
    for t in backends().await {
        let s = &t.store;
        let mut conversations = Vec::new();
        for _ in 0..3 {
            let (_, conv) = webchat_conversation(s, "shop").await;
            sqlx::query(
                "UPDATE conversations SET state = 'waiting_human', waiting_since = 1 WHERE id = $1",
            )
            .bind(&conv)
            .execute(s.pool())
            .await
            .unwrap();
            conversations.push(conv);
        }
        for (id, presence) in [("stf_a", "online"), ("stf_b", "online"), ("stf_c", "away")] {
            let member = StaffMember {
                id: id.into(),
                tenant_id: "shop".into(),
                email: format!("{id}@shop.local"),
                role: "agent".into(),
                whatsapp: None,
                telegram_chat_id: None,
                disabled_at_ms: None,
                locked_until_ms: None,
                has_password: true,
            };
            s.add_staff(&member, Some("h"), 0).await.unwrap();
            s.set_presence("shop", id, presence).await.unwrap();
        }
        assert_eq!(s.tenants_waiting().await.unwrap(), vec!["shop".to_owned()]);
        let assigned = s.auto_assign("shop", 1, 100).await.unwrap();
        let mut agents: Vec<&str> = assigned.iter().map(|(_, a)| a.as_str()).collect();
        agents.sort_unstable();
        assert_eq!(agents, vec!["stf_a", "stf_b"], "{}", t.name);
        // Both are at their cap: the third waits; with room, it goes to the one given a chat longest ago.
        assert!(s.auto_assign("shop", 1, 200).await.unwrap().is_empty());
        let next = s.auto_assign("shop", 2, 300).await.unwrap();
        assert_eq!(next.len(), 1, "{}", t.name);
        assert_eq!(next[0].1, assigned[0].1, "{}", t.name);
        assert!(s.auto_assign("other", 5, 400).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn sla_notices_are_sent_once_and_return_the_chat_to_the_bot_on_both_backends() {
    for t in backends().await {
        let s = &t.store;
        let (_, conv) = webchat_conversation(s, "shop").await;
        sqlx::query(
            "UPDATE conversations SET state = 'waiting_human', waiting_since = 1000 WHERE id = $1",
        )
        .bind(&conv)
        .execute(s.pool())
        .await
        .unwrap();
        let (renotify, back) = s.sla_due("shop", 2000, 500).await.unwrap();
        assert_eq!((renotify.len(), back.len()), (1, 0), "{}", t.name);
        assert!(
            s.sla_notice("shop", &conv, "tunggu", false, 2000)
                .await
                .unwrap()
        );
        assert!(
            !s.sla_notice("shop", &conv, "tunggu", false, 2001)
                .await
                .unwrap()
        );
        let (renotify, _) = s.sla_due("shop", 3000, 500).await.unwrap();
        assert!(renotify.is_empty(), "{}", t.name);
        let (_, back) = s.sla_due("shop", 9000, 5000).await.unwrap();
        assert_eq!(back.len(), 1, "{}", t.name);
        assert!(
            s.sla_notice("shop", &conv, "maaf", true, 9000)
                .await
                .unwrap()
        );
        assert_eq!(
            s.conversation_state("shop", &conv)
                .await
                .unwrap()
                .as_deref(),
            Some("bot")
        );
        let bodies: Vec<String> = s
            .messages_after("shop", &conv, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(bodies, vec!["tunggu", "maaf"], "{}", t.name);
        assert_eq!(
            s.claim_outbox(10, 30_000).await.unwrap().len(),
            1,
            "queued in order"
        );
    }
}

/// Inserts a pending follow-up due at `due_at` for `conversation` of `tenant`.
async fn pending_follow_up(s: &Store, tenant: &str, conversation: &str, due_at: i64) {
    sqlx::query(
        "INSERT INTO follow_ups (tenant_id, conversation_id, contact_id, kind, due_at, text, state, created_at, updated_at) \
         SELECT tenant_id, id, contact_id, 'scheduled', $1, 'Ada lagi?', 'pending', 0, 0 FROM conversations \
         WHERE id = $2 AND tenant_id = $3",
    )
    .bind(due_at)
    .bind(conversation)
    .bind(tenant)
    .execute(s.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn follow_ups_are_claimed_with_a_lease_and_sent_once_on_both_backends() {
    for t in backends().await {
        let s = &t.store;
        let (_, conv) = webchat_conversation(s, "shop").await;
        let (_, other) = webchat_conversation(s, "shop").await;
        pending_follow_up(s, "shop", &conv, 1000).await;
        // Not due yet: nothing claimed.
        assert!(s.claim_follow_ups(999, 10, 5000).await.unwrap().is_empty());
        let first = s.claim_follow_ups(1000, 10, 5000).await.unwrap();
        assert_eq!(first.len(), 1, "{}", t.name);
        // Leased: a second worker gets nothing until the lease ends, then the same row.
        assert!(s.claim_follow_ups(2000, 10, 5000).await.unwrap().is_empty());
        let second = s.claim_follow_ups(7000, 10, 5000).await.unwrap();
        assert_eq!(second.len(), 1, "{}", t.name);
        // Both workers try to deliver: exactly one sends.
        let now = now_ms();
        let a = s.deliver_follow_up(&first[0], 2, None, now).await.unwrap();
        let b = s.deliver_follow_up(&second[0], 2, None, now).await.unwrap();
        assert_eq!(a, FollowUpOutcome::Sent { template: false }, "{}", t.name);
        assert_eq!(b, FollowUpOutcome::Gone, "{}", t.name);
        let rows = s.follow_ups_of("shop", &conv).await.unwrap();
        assert_eq!(
            (rows[0].state.as_str(), rows[0].reason.clone()),
            ("sent", None)
        );
        // Other tenants see nothing of it.
        assert!(
            s.follow_ups_of("elsewhere", &conv)
                .await
                .unwrap()
                .is_empty()
        );

        // Another conversation's follow-up is independent.
        pending_follow_up(s, "shop", &other, 1000).await;
        let due = s.claim_follow_ups(now, 10, 5000).await.unwrap();
        assert_eq!(
            s.deliver_follow_up(&due[0], 2, None, now).await.unwrap(),
            FollowUpOutcome::Sent { template: false }
        );
        assert_eq!(
            s.claim_outbox(10, 30_000).await.unwrap().len(),
            2,
            "{}",
            t.name
        );

        // The weekly limit: one already sent to this contact, the limit is 1.
        pending_follow_up(s, "shop", &conv, 1000).await;
        let due = s.claim_follow_ups(now, 10, 5000).await.unwrap();
        assert_eq!(
            s.deliver_follow_up(&due[0], 1, None, now).await.unwrap(),
            FollowUpOutcome::Skipped("weekly_limit"),
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn a_follow_up_moved_after_its_claim_is_not_sent_early_on_both_backends() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        pending_follow_up(s, "shop", &conv, 1000).await;
        let now = now_ms();
        let claimed = s.claim_follow_ups(now, 10, 60_000).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", t.name);
        // The customer writes and is answered while the worker holds the claim: the answer
        // moves the follow-up to later (and drops the claim).
        s.accept_inbound(&[item("shop", &account, &conv, "again", "a")])
            .await
            .unwrap();
        let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
        let later = now + 3_600_000;
        let commit = Turn {
            trace_id: None,
            follow_up: Some(PlannedFollowUp {
                due_at: later,
                kind: "scheduled",
                text: "Ada lagi?".into(),
            }),
            ..Turn::new(batch)
        };
        assert!(matches!(
            s.commit_turn(&commit).await.unwrap(),
            TurnOutcome::Committed { .. }
        ));
        assert_eq!(
            s.deliver_follow_up(&claimed[0], 2, None, now + 1)
                .await
                .unwrap(),
            FollowUpOutcome::Gone,
            "{}",
            t.name
        );
        // Still pending, unclaimed, and claimed again (and sent) once due.
        assert!(
            s.claim_follow_ups(later - 1, 10, 60_000)
                .await
                .unwrap()
                .is_empty()
        );
        let due = s.claim_follow_ups(later, 10, 60_000).await.unwrap();
        assert_eq!(due.len(), 1, "{}", t.name);
        assert_eq!(
            s.deliver_follow_up(&due[0], 2, None, later).await.unwrap(),
            FollowUpOutcome::Sent { template: false },
            "{}",
            t.name
        );
        let rows = s.follow_ups_of("shop", &conv).await.unwrap();
        assert_eq!(rows.len(), 1, "{}", t.name);
        assert_eq!((rows[0].state.as_str(), rows[0].reschedules), ("sent", 1));
    }
}

#[tokio::test]
async fn live_answers_are_claimed_before_follow_ups_on_both_backends() {
    for t in backends().await {
        let s = &t.store;
        let (_, a) = webchat_conversation(s, "shop").await;
        let (_, b) = webchat_conversation(s, "shop").await;
        let now = now_ms();
        pending_follow_up(s, "shop", &a, 1000).await;
        let due = s.claim_follow_ups(now, 10, 5000).await.unwrap();
        s.deliver_follow_up(&due[0], 2, None, now).await.unwrap();
        let mut tx = s.write.begin().await.unwrap();
        outbox::queue_message(
            &mut tx,
            &s.days,
            "shop",
            &b,
            channels::model::Author::Bot,
            "live",
            None,
            now,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        // One row per claim: the later live answer wins over the earlier follow-up.
        let claimed = s.claim_outbox(1, 30_000).await.unwrap();
        assert_eq!(claimed[0].message.text, "live", "{}", t.name);
    }
}

#[tokio::test]
async fn a_turn_schedules_reschedules_and_opts_out_of_follow_ups_on_both_backends() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        let plan = |due_at| PlannedFollowUp {
            due_at,
            kind: "scheduled",
            text: "Ada lagi?".into(),
        };
        for (n, (follow_up, opt_out)) in [
            (Some(plan(5000)), None),
            (Some(plan(9000)), None),
            (None, Some(true)),
        ]
        .into_iter()
        .enumerate()
        {
            s.accept_inbound(&[item("shop", &account, &conv, &format!("f{n}"), "a")])
                .await
                .unwrap();
            let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
            let commit = Turn {
                trace_id: None,
                follow_up,
                opt_out,
                ..Turn::new(batch)
            };
            assert!(matches!(
                s.commit_turn(&commit).await.unwrap(),
                TurnOutcome::Committed { .. }
            ));
        }
        // One row: the second answer moved it, the third turn (no answer) cancelled it.
        let rows: Vec<(String, Option<String>, i64, i64)> = s
            .follow_ups_of("shop", &conv)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.state, r.reason, r.due_at, r.reschedules))
            .collect();
        assert_eq!(
            rows,
            vec![("cancelled".into(), Some("customer_wrote".into()), 9000, 1)],
            "{}",
            t.name
        );
        assert!(
            s.conversation_follow_up_opt_out("shop", &conv)
                .await
                .unwrap()
        );
        assert!(
            !s.conversation_follow_up_opt_out("other", &conv)
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn flows_are_stored_per_tenant_and_a_run_commits_with_its_turn_on_both_backends() {
    for t in backends().await {
        let s = &t.store;
        let (account, conv) = webchat_conversation(s, "shop").await;
        assert!(
            !s.put_flow("shop", "poin", "name: poin", "api", 1)
                .await
                .unwrap()
        );
        assert!(
            s.put_flow("shop", "poin", "name: poin\n", "cli", 2)
                .await
                .unwrap()
        );
        assert!(
            !s.put_flow_if_absent("shop", "poin", "x", "demo", 3)
                .await
                .unwrap()
        );
        let stored = s.flows_of("shop").await.unwrap();
        assert_eq!(
            (
                stored.len(),
                stored[0].source.as_str(),
                stored[0].updated_by.as_str()
            ),
            (1, "name: poin\n", "cli"),
            "{}",
            t.name
        );
        assert!(s.flows_of("other").await.unwrap().is_empty());
        assert!(!s.delete_flow("other", "poin").await.unwrap());

        // A turn stores the run and tags; a later one clears the run, tags accumulate.
        for (n, (run, tags)) in [
            (
                Some(Some("{\"flow\":\"poin\"}".to_owned())),
                vec!["vip".to_owned()],
            ),
            (Some(None), vec!["vip".to_owned(), "poin".to_owned()]),
        ]
        .into_iter()
        .enumerate()
        {
            s.accept_inbound(&[item("shop", &account, &conv, &format!("t{n}"), "a")])
                .await
                .unwrap();
            let batch = s.load_turn_batch(&conv).await.unwrap().unwrap();
            if n == 1 {
                assert_eq!(batch.flow_run.as_deref(), Some("{\"flow\":\"poin\"}"));
            }
            let commit = Turn {
                trace_id: None,
                flow_run: run,
                tags,
                ..Turn::new(batch)
            };
            assert!(matches!(
                s.commit_turn(&commit).await.unwrap(),
                TurnOutcome::Committed { .. }
            ));
        }
        let (run, tags) = s.conversation_flow("shop", &conv).await.unwrap();
        assert_eq!(run, None, "{}", t.name);
        assert_eq!(tags, vec!["vip", "poin"], "{}", t.name);
        // Tenant-scoped.
        assert_eq!(
            s.conversation_flow("other", &conv).await.unwrap(),
            (None, vec![])
        );
        assert!(s.delete_flow("shop", "poin").await.unwrap());
    }
}

#[tokio::test]
async fn a_conversation_lease_has_one_live_holder_until_released_or_expired() {
    for t in backends().await {
        let (s, name) = (&t.store, t.name);
        let ttl = Duration::from_secs(10);
        assert!(
            s.try_conversation_lease("c1", "a:1", ttl).await.unwrap(),
            "{name}"
        );
        assert!(
            !s.try_conversation_lease("c1", "b:1", ttl).await.unwrap(),
            "{name}"
        );
        // The holder's own retry extends it.
        assert!(
            s.try_conversation_lease("c1", "a:1", ttl).await.unwrap(),
            "{name}"
        );
        assert!(
            s.conversation_leased_by_other("c1", "b:1").await.unwrap(),
            "{name}"
        );
        assert!(
            !s.conversation_leased_by_other("c1", "a:1").await.unwrap(),
            "{name}"
        );
        // Only the holder renews or frees it.
        assert!(
            !s.renew_conversation_lease("c1", "b:1", ttl).await.unwrap(),
            "{name}"
        );
        assert!(
            !s.release_conversation_lease("c1", "b:1").await.unwrap(),
            "{name}"
        );
        assert!(
            s.renew_conversation_lease("c1", "a:1", ttl).await.unwrap(),
            "{name}"
        );
        assert!(
            !s.try_conversation_lease("c1", "b:1", ttl).await.unwrap(),
            "{name}"
        );
        // Conversations are leased independently.
        assert!(
            s.try_conversation_lease("c2", "b:1", ttl).await.unwrap(),
            "{name}"
        );
        assert!(
            s.release_conversation_lease("c1", "a:1").await.unwrap(),
            "{name}"
        );
        assert!(
            !s.conversation_leased_by_other("c1", "b:2").await.unwrap(),
            "{name}"
        );
        assert!(
            s.try_conversation_lease("c1", "b:2", ttl).await.unwrap(),
            "{name}"
        );

        // A lease nobody renews lapses after its TTL, by the database's clock.
        let short = Duration::from_millis(300);
        assert!(
            s.try_conversation_lease("c3", "a:2", short).await.unwrap(),
            "{name}"
        );
        assert!(
            !s.try_conversation_lease("c3", "b:3", ttl).await.unwrap(),
            "{name}"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            !s.conversation_leased_by_other("c3", "b:3").await.unwrap(),
            "{name}"
        );
        assert!(
            !s.renew_conversation_lease("c3", "a:2", ttl).await.unwrap(),
            "{name}: an expired lease is lost, not renewed"
        );
        assert!(
            s.try_conversation_lease("c3", "b:3", ttl).await.unwrap(),
            "{name}"
        );
        assert!(
            !s.release_conversation_lease("c3", "a:2").await.unwrap(),
            "{name}: the old holder frees nothing"
        );
        assert!(
            s.conversation_leased_by_other("c3", "a:2").await.unwrap(),
            "{name}"
        );

        // Racing replicas: exactly one wins.
        let racers = (0..8).map(|i| {
            let s = s.clone();
            async move {
                s.try_conversation_lease("c4", &format!("r{i}:1"), ttl)
                    .await
                    .unwrap()
            }
        });
        let won = futures::future::join_all(racers).await;
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{name}: {won:?}");
    }
}

#[tokio::test]
async fn one_group_stores_what_message_by_message_would() {
    for t in backends().await {
        let s = &t.store;
        for tenant in ["wa", "wb"] {
            s.upsert_tenant(tenant, "Shop", "id").await.unwrap();
        }
        let a = s
            .ensure_channel_account("wa", ChannelKind::Whatsapp, "1065", "WA", None)
            .await
            .unwrap();
        let b = s
            .ensure_channel_account("wb", ChannelKind::Whatsapp, "2065", "WB", None)
            .await
            .unwrap();
        let (web, conv) = webchat_conversation(s, "wa").await;
        let earlier = s
            .accept_inbound(&[wa_item("wa", &a, "628100", "wamid.old", true)])
            .await
            .unwrap();
        let known = conversation_of(&earlier[0]);
        let nameless = |mut item: InboundItem| {
            if let InboundTarget::Contact(contact) = &mut item.target {
                contact.display_name = None;
            }
            item
        };
        let mut renamed = wa_item("wa", &a, "628200", "wamid.n2", true);
        if let InboundTarget::Contact(contact) = &mut renamed.target {
            contact.display_name = Some("Budi".into());
        }
        let group = [
            wa_item("wa", &a, "628100", "wamid.m1", true),
            nameless(wa_item("wa", &a, "628200", "wamid.n1", true)),
            wa_item("wb", &b, "628200", "wamid.x1", true),
            renamed,
            wa_item("wa", &a, "628100", "wamid.m1", true),
            item("wa", &web, &conv, "c1", "halo"),
            wa_item("wa", &a, "628100", "wamid.old", true),
            item("wa", &web, &conv, "c1", "halo"),
            wa_item("wa", &a, "628100", "wamid.m2", false),
        ];
        let got = s.accept_inbound(&group).await.unwrap();
        let new: Vec<bool> = got
            .iter()
            .map(|g| matches!(g, Accepted::New { .. }))
            .collect();
        assert_eq!(
            new,
            [true, true, true, true, false, true, false, false, true],
            "{}",
            t.name
        );
        assert_eq!(conversation_of(&got[0]), known, "{}", t.name);
        assert_eq!(conversation_of(&got[8]), known, "{}", t.name);
        let fresh = conversation_of(&got[1]);
        assert_ne!(fresh, known, "{}", t.name);
        assert_eq!(conversation_of(&got[3]), fresh, "{}", t.name);
        assert_ne!(conversation_of(&got[2]), fresh, "one contact per tenant");
        assert_eq!(conversation_of(&got[5]), conv, "{}", t.name);
        let id = |g: &Accepted| match g {
            Accepted::New { message, .. } => message.id,
            _ => unreachable!(),
        };
        // Message ids follow arrival within a conversation.
        assert!(id(&got[1]) < id(&got[3]), "{}", t.name);
        assert!(id(&got[0]) < id(&got[8]), "{}", t.name);
        // The customer's pending messages in order; the reaction is stored, not pending.
        let batch = s.load_turn_batch(&known).await.unwrap().unwrap();
        let pending: Vec<&str> = batch.turns.iter().map(|p| p.external_id.as_str()).collect();
        assert_eq!(pending, ["wamid.old", "wamid.m1"], "{}", t.name);
        let name: Option<String> = sqlx::query_scalar(
            "SELECT display_name FROM contacts WHERE tenant_id = 'wa' AND external_id = '628200'",
        )
        .fetch_one(&s.write)
        .await
        .unwrap();
        assert_eq!(name.as_deref(), Some("Budi"), "{}", t.name);
        let count: i64 = sqlx::query_scalar(
            "SELECT inbound_count FROM conversations WHERE tenant_id = 'wa' AND id = $1",
        )
        .bind(&known)
        .fetch_one(&s.write)
        .await
        .unwrap();
        assert_eq!(count, 3, "{}", t.name);
        let today = s.usage_day("wa", now_ms());
        let mut days = s.usage("wa", &today, &today).await.unwrap();
        days.sort_by(|x, y| x.channel.cmp(&y.channel));
        let counted: Vec<(&str, i64, i64)> = days
            .iter()
            .map(|d| (d.channel.as_str(), d.messages_in, d.conversations))
            .collect();
        assert_eq!(
            counted,
            [("webchat", 1, 1), ("whatsapp", 5, 2)],
            "{}",
            t.name
        );
        let other = s.usage("wb", &today, &today).await.unwrap();
        assert_eq!((other[0].messages_in, other[0].conversations), (1, 1));
    }
}

#[test]
fn multi_row_statements_use_each_dialects_placeholders() {
    let sql = format!("INSERT INTO t VALUES {}", rows(2, "(?, 'x', ?)"));
    assert_eq!(sql, "INSERT INTO t VALUES (?, 'x', ?), (?, 'x', ?)");
    assert_eq!(bind_marks(Dialect::Sqlite, &sql), sql);
    assert_eq!(
        bind_marks(Dialect::Postgres, &sql),
        "INSERT INTO t VALUES ($1, 'x', $2), ($3, 'x', $4)"
    );
}

#[tokio::test]
async fn the_dialect_is_told_by_the_connection() {
    for t in backends().await {
        let mut conn = t.store.write.acquire().await.unwrap();
        let expected = if t.name == "postgres" {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        };
        assert_eq!(dialect_of(&conn), expected);
        // A multi-row statement with its dialect's placeholders runs.
        let sql = bind_marks(
            dialect_of(&conn),
            &format!("SELECT column1 AS a FROM (VALUES {}) AS v", rows(2, "(?)")),
        );
        let got: Vec<i64> = sqlx::query_scalar(&sql)
            .bind(1_i64)
            .bind(2_i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(got.len(), 2, "{}", t.name);
    }
}
