#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::format::{MAX_TEXT_UNITS, callback_data, choice_inline, choice_reference, escape_html};
use super::update::{BotIdentity, CustomerMessage, Event, decode, verify_secret};
use super::*;
use crate::model::{Author, MediaKind, MediaSource, MessageContent, OutboundMedia, TurnHint};

const CHAT: &str = "5123456789";

fn bot() -> BotIdentity {
    BotIdentity {
        id: 7_000_000_001,
        username: "kopinusantara_bot".to_owned(),
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/src/telegram/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn event(name: &str) -> (i64, Event) {
    let update = decode(&fixture(name), &bot()).unwrap();
    (update.update_id, update.event)
}

fn customer(name: &str) -> CustomerMessage {
    match event(name).1 {
        Event::Message(m) => m,
        other => panic!("{name}: expected a message, got {other:?}"),
    }
}

#[test]
fn text_decodes_with_sender_language_and_key() {
    let (update_id, _) = event("message_text.json");
    assert_eq!(update_id, 912_345_001);
    let m = customer("message_text.json");
    assert_eq!(m.chat_id, CHAT);
    assert!(!m.group && m.addressed && !m.command);
    assert_eq!(m.language.as_deref(), Some("id"));
    assert_eq!(m.message.external_id, "5123456789:101");
    assert_eq!(m.message.from, CHAT);
    assert_eq!(m.message.sender_name.as_deref(), Some("Dewi Lestari"));
    assert_eq!(m.message.timestamp_s, 1_763_792_000);
    assert_eq!(
        m.message.content.answer_text(),
        Some((
            "Halo, apakah bisa pesan untuk catering 50 orang?",
            TurnHint::Text
        ))
    );
}

#[test]
fn start_is_a_command() {
    let m = customer("message_start.json");
    assert!(m.command && m.addressed);
    assert_eq!(
        m.message.content,
        MessageContent::Text {
            body: "/start".into()
        }
    );
}

#[test]
fn photo_takes_the_largest_size_and_caption() {
    let m = customer("message_photo.json");
    match &m.message.content {
        MessageContent::Media {
            kind,
            media,
            caption,
        } => {
            assert_eq!(*kind, MediaKind::Image);
            assert_eq!(media.id, "AgACAgUAAxkBAAIBZ2large");
            assert_eq!(caption.as_deref(), Some("ini bukti transfernya"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        m.message.content.answer_text(),
        Some(("ini bukti transfernya", TurnHint::Text))
    );
}

#[test]
fn voice_is_media_without_answer() {
    let m = customer("message_voice.json");
    match &m.message.content {
        MessageContent::Media { kind, media, .. } => {
            assert_eq!(*kind, MediaKind::Voice);
            assert_eq!(media.id, "AwACAgUAAxkBAAIBaHvoice");
            assert_eq!(media.mime_type.as_deref(), Some("audio/ogg"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.message.content.answer_text(), None);
}

#[test]
fn own_contact_keeps_the_phone_number() {
    let m = customer("message_contact.json");
    assert_eq!(m.shared_phone.as_deref(), Some("6281311112222"));
    assert_eq!(
        m.message.content,
        MessageContent::Contacts {
            cards: vec![crate::model::ContactCard {
                name: "Dewi Lestari".into(),
                phones: vec!["6281311112222".into()],
            }]
        }
    );
}

#[test]
fn location_decodes() {
    let m = customer("message_location.json");
    assert_eq!(
        m.message.content,
        MessageContent::Location {
            latitude: -6.2,
            longitude: 106.816_666,
            name: None,
            address: None
        }
    );
}

#[test]
fn edited_message_names_the_original() {
    assert_eq!(
        event("edited_message.json").1,
        Event::Edited {
            external_id: "5123456789:101".into(),
            chat_id: CHAT.into(),
            text: "Halo, apakah bisa pesan untuk catering 60 orang?".into(),
        }
    );
}

#[test]
fn callback_query_is_a_choice_with_the_button_title() {
    let Event::Callback { query_id, message } = event("callback_query.json").1 else {
        panic!("not a callback");
    };
    assert_eq!(query_id, "4382bfdwdsb323b2d9");
    assert_eq!(message.chat_id, CHAT);
    assert_eq!(message.message.external_id, "cb:4382bfdwdsb323b2d9");
    assert_eq!(message.message.reply_to.as_deref(), Some("5123456789:110"));
    assert_eq!(
        message.message.content,
        MessageContent::Choice {
            id: "handoff:yes".into(),
            title: "Ya".into(),
            description: None
        }
    );
    assert_eq!(
        message.message.content.answer_text(),
        Some(("Ya", TurnHint::Choice))
    );
}

#[test]
fn our_inline_payloads_carry_the_choice() {
    let body = serde_json::json!({
        "update_id": 1,
        "callback_query": {"id": "q1", "from": {"id": 42, "is_bot": false, "first_name": "A"},
            "chat_instance": "x", "data": callback_data(0, "Hubungi admin")}
    });
    let Event::Callback { message, .. } =
        decode(body.to_string().as_bytes(), &bot()).unwrap().event
    else {
        panic!()
    };
    // No message (too old): the chat is the user's private chat.
    assert_eq!(message.chat_id, "42");
    assert_eq!(message.message.reply_to, None);
    assert_eq!(
        message.message.content.answer_text(),
        Some(("Hubungi admin", TurnHint::Choice))
    );
}

#[test]
fn blocking_the_bot_makes_the_chat_unreachable() {
    assert_eq!(
        event("my_chat_member_blocked.json").1,
        Event::MemberStatus {
            chat_id: CHAT.into(),
            reachable: false
        }
    );
}

#[test]
fn group_mention_is_addressed_and_stripped() {
    let m = customer("group_message.json");
    assert!(m.group && m.addressed);
    assert_eq!(m.chat_id, "-1001234567890");
    assert_eq!(m.message.from, "-1001234567890");
    assert_eq!(
        m.message.content,
        MessageContent::Text {
            body: "stok biji arabika gayo masih ada?".into()
        }
    );
}

#[test]
fn group_chatter_without_mention_is_not_addressed() {
    let body = serde_json::json!({"update_id": 5, "message": {
        "message_id": 9, "date": 1, "text": "@someone_else halo semua",
        "from": {"id": 1, "is_bot": false, "first_name": "B"},
        "chat": {"id": -100, "type": "supergroup", "title": "G"},
        "entities": [{"offset": 0, "length": 14, "type": "mention"}]}});
    let Event::Message(m) = decode(body.to_string().as_bytes(), &bot()).unwrap().event else {
        panic!()
    };
    assert!(!m.addressed);
    // Replying to the bot's message addresses it.
    let body = serde_json::json!({"update_id": 6, "message": {
        "message_id": 10, "date": 1, "text": "berapa harganya?",
        "from": {"id": 1, "is_bot": false, "first_name": "B"},
        "chat": {"id": -100, "type": "supergroup", "title": "G"},
        "reply_to_message": {"message_id": 8, "date": 1, "chat": {"id": -100, "type": "supergroup"},
            "from": {"id": 7_000_000_001_i64, "is_bot": true, "first_name": "Kopi"}, "text": "x"}}});
    let Event::Message(m) = decode(body.to_string().as_bytes(), &bot()).unwrap().event else {
        panic!()
    };
    assert!(m.addressed);
    assert_eq!(m.message.reply_to.as_deref(), Some("-100:8"));
}

#[test]
fn mention_offsets_are_utf16() {
    // An emoji before the mention takes two UTF-16 units.
    let body = serde_json::json!({"update_id": 7, "message": {
        "message_id": 11, "date": 1, "text": "😀 @kopinusantara_bot ada promo?",
        "from": {"id": 1, "is_bot": false, "first_name": "B"},
        "chat": {"id": -100, "type": "group", "title": "G"},
        "entities": [{"offset": 3, "length": 18, "type": "mention"}]}});
    let Event::Message(m) = decode(body.to_string().as_bytes(), &bot()).unwrap().event else {
        panic!()
    };
    assert!(m.addressed);
    assert_eq!(
        m.message.content,
        MessageContent::Text {
            body: "😀 ada promo?".into()
        }
    );
}

#[test]
fn reactions_and_unknown_kinds_are_ignored() {
    assert_eq!(
        event("message_reaction.json").1,
        Event::Ignored {
            kind: "message_reaction".into()
        }
    );
    let update = decode(br#"{"update_id": 9, "brand_new_kind": {"x": 1}}"#, &bot()).unwrap();
    assert_eq!(
        update.event,
        Event::Ignored {
            kind: "brand_new_kind".into()
        }
    );
    assert!(decode(b"not json", &bot()).is_err());
    assert!(decode(br#"{"message": {}}"#, &bot()).is_err());
}

#[test]
fn long_text_fixture_decodes() {
    let m = customer("long_text.json");
    assert!(matches!(m.message.content, MessageContent::Text { ref body } if body.len() > 4000));
}

#[test]
fn migration_service_message_is_reported() {
    let body = serde_json::json!({"update_id": 8, "message": {
        "message_id": 12, "date": 1, "chat": {"id": -55, "type": "group"},
        "from": {"id": 1, "is_bot": false, "first_name": "B"}, "migrate_to_chat_id": -1_005_555_i64}});
    assert_eq!(
        decode(body.to_string().as_bytes(), &bot()).unwrap().event,
        Event::Migrated {
            from_chat_id: "-55".into(),
            to_chat_id: "-1005555".into()
        }
    );
}

#[test]
fn secret_check() {
    assert!(verify_secret("s3cret_-X", Some("s3cret_-X")));
    assert!(!verify_secret("s3cret_-X", Some("s3cret_-Y")));
    assert!(!verify_secret("s3cret_-X", None));
    assert!(!verify_secret("", Some("")));
    assert!(config::valid_webhook_secret("abc_DEF-123"));
    assert!(!config::valid_webhook_secret("with space"));
    assert!(!config::valid_webhook_secret(""));
}

#[test]
fn html_escaping_covers_the_three_characters() {
    assert_eq!(
        escape_html("a < b && c > d <b>x</b>"),
        "a &lt; b &amp;&amp; c &gt; d &lt;b&gt;x&lt;/b&gt;"
    );
    // Markdown is left alone (sent as plain characters, never as MarkdownV2).
    assert_eq!(escape_html("*bold* _x_ [l](u)"), "*bold* _x_ [l](u)");
}

#[test]
fn split_prefers_paragraphs_then_sentences() {
    let para = "Kalimat satu. ".repeat(200); // 2,800 chars
    let text = format!("{}\n\n{}", para.trim(), para.trim());
    let parts = split_text(&text, MAX_TEXT_UNITS, Measure::Utf16);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0], para.trim());
    assert_eq!(parts[1], para.trim());
    // No paragraph break: split after a sentence, never mid-word.
    let long = "Ini kalimat yang cukup panjang untuk diuji. ".repeat(120); // 5,280 chars
    let parts = split_text(&long, MAX_TEXT_UNITS, Measure::Utf16);
    assert_eq!(parts.len(), 2);
    assert!(
        parts[0].ends_with('.'),
        "{}",
        &parts[0][parts[0].len() - 20..]
    );
    assert!(
        parts
            .iter()
            .all(|p| p.encode_utf16().count() <= MAX_TEXT_UNITS)
    );
    assert_eq!(
        parts.join(" ").split_whitespace().collect::<Vec<_>>(),
        long.split_whitespace().collect::<Vec<_>>()
    );
    // Astral characters count two units each.
    let emoji = "😀".repeat(3000);
    let parts = split_text(&emoji, MAX_TEXT_UNITS, Measure::Utf16);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].chars().count(), 2048);
    assert_eq!(
        split_text("pendek", MAX_TEXT_UNITS, Measure::Utf16),
        vec!["pendek"]
    );
}

#[test]
fn callback_data_stays_within_64_bytes() {
    assert_eq!(callback_data(0, "Hubungi admin"), "t:Hubungi admin");
    assert_eq!(choice_inline("t:Hubungi admin"), Some("Hubungi admin"));
    let long = "Saya ingin berbicara dengan admin tentang pesanan katering besar";
    let data = callback_data(3, long);
    assert_eq!(data, "i:3");
    assert_eq!(choice_reference(&data), Some(3));
    assert_eq!(choice_inline(&data), None);
    // Multi-byte text counts bytes.
    assert!(callback_data(1, &"é".repeat(40)).len() <= 64);
}

fn outbound(text: &str, choices: &[&str]) -> OutboundMessage {
    OutboundMessage {
        message_id: 7,
        conversation_id: "c".into(),
        recipient: CHAT.into(),
        author: Author::Bot,
        text: text.into(),
        choices: choices.iter().map(|c| (*c).to_owned()).collect(),
        in_reply_to: vec!["5123456789:101".into()],
        created_at_ms: 0,
        idempotency_key: "msg-7".into(),
        customer_last_seen_ms: None,
        template: None,
        media: None,
    }
}

fn with_media(text: &str, kind: MediaKind, source: MediaSource) -> OutboundMessage {
    OutboundMessage {
        media: Some(OutboundMedia {
            kind,
            source,
            caption: None,
            filename: None,
        }),
        ..outbound(text, &[])
    }
}

#[test]
fn media_kinds_map_to_their_send_methods() {
    for (kind, method, field) in [
        (MediaKind::Image, "sendPhoto", "photo"),
        (MediaKind::Video, "sendVideo", "video"),
        (MediaKind::Audio, "sendAudio", "audio"),
        (MediaKind::Voice, "sendVoice", "voice"),
        (MediaKind::Document, "sendDocument", "document"),
        (MediaKind::Sticker, "sendSticker", "sticker"),
    ] {
        let calls = outbound_calls(
            &with_media("", kind, MediaSource::ProviderId("AgACAgIAAxk".into())),
            CHAT,
        )
        .unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].method, method);
        assert_eq!(calls[0].body["chat_id"], 5_123_456_789_i64);
        assert_eq!(calls[0].body[field], "AgACAgIAAxk");
        assert!(calls[0].body.get("caption").is_none());
    }
}

#[test]
fn text_becomes_the_escaped_html_caption() {
    let calls = outbound_calls(
        &with_media(
            "Menu <baru> & promo",
            MediaKind::Image,
            MediaSource::Url("https://cdn.example.com/menu.jpg".into()),
        ),
        CHAT,
    )
    .unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "sendPhoto");
    assert_eq!(calls[0].body["photo"], "https://cdn.example.com/menu.jpg");
    assert_eq!(calls[0].body["caption"], "Menu &lt;baru&gt; &amp; promo");
    assert_eq!(calls[0].body["parse_mode"], "HTML");
}

#[test]
fn own_caption_wins_and_the_text_follows_with_the_keyboard() {
    let mut msg = with_media(
        "Mau pesan?",
        MediaKind::Document,
        MediaSource::ProviderId("BQACAgIAAxk".into()),
    );
    msg.choices = vec!["Ya".into()];
    if let Some(media) = msg.media.as_mut() {
        media.caption = Some("Daftar harga".into());
    }
    let calls = outbound_calls(&msg, CHAT).unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].method, "sendDocument");
    assert_eq!(calls[0].body["caption"], "Daftar harga");
    assert!(calls[0].body.get("reply_markup").is_none());
    assert_eq!(calls[1].method, "sendMessage");
    assert_eq!(calls[1].body["text"], "Mau pesan?");
    assert_eq!(
        calls[1].body["reply_markup"]["inline_keyboard"][0][0]["text"],
        "Ya"
    );
}

#[test]
fn captions_over_1024_units_and_sticker_text_go_in_a_message() {
    let long = "kata ".repeat(250);
    let calls = outbound_calls(
        &with_media(
            &long,
            MediaKind::Video,
            MediaSource::Url("https://cdn.example.com/a.mp4".into()),
        ),
        CHAT,
    )
    .unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].method, "sendVideo");
    assert!(calls[0].body.get("caption").is_none());
    assert_eq!(calls[1].body["text"], long.trim());

    let calls = outbound_calls(
        &with_media(
            "Halo!",
            MediaKind::Sticker,
            MediaSource::ProviderId("CAACAgIAAxk".into()),
        ),
        CHAT,
    )
    .unwrap();
    assert_eq!(
        calls.iter().map(|c| c.method).collect::<Vec<_>>(),
        vec!["sendSticker", "sendMessage"]
    );
    assert!(calls[0].body.get("caption").is_none());
}

#[test]
fn non_http_media_urls_are_refused_for_good() {
    let msg = with_media(
        "x",
        MediaKind::Image,
        MediaSource::Url("file:///etc/passwd".into()),
    );
    assert!(matches!(
        outbound_calls(&msg, CHAT),
        Err(ChannelError::Permanent { .. })
    ));
}

#[test]
fn bodies_use_html_and_put_the_keyboard_on_the_last_part() {
    let bodies = message_bodies(&outbound("Harga <promo> & diskon", &[]), CHAT);
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["chat_id"], 5_123_456_789_i64);
    assert_eq!(bodies[0]["parse_mode"], "HTML");
    assert_eq!(bodies[0]["text"], "Harga &lt;promo&gt; &amp; diskon");
    assert!(bodies[0].get("reply_parameters").is_none());

    let text = format!("{}\n\n{}", "a".repeat(3000), "b".repeat(2000));
    let bodies = message_bodies(&outbound(&text, &["Hubungi admin"]), CHAT);
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0].get("reply_markup").is_none());
    assert_eq!(
        bodies[1]["reply_markup"]["inline_keyboard"][0][0],
        serde_json::json!({"text": "Hubungi admin", "callback_data": "t:Hubungi admin"})
    );
}

#[test]
fn group_answers_reply_to_the_question() {
    let mut msg = outbound("Masih ada.", &[]);
    msg.recipient = "-1001234567890".into();
    msg.in_reply_to = vec!["-1001234567890:201".into()];
    let bodies = message_bodies(&msg, "-1001234567890");
    assert_eq!(bodies[0]["reply_parameters"]["message_id"], 201);
}

#[test]
fn account_debug_hides_secrets_and_bot_id_comes_from_the_token() {
    let account = TelegramAccount {
        bot_token: "7000000001:AAH-secret".into(),
        webhook_secret: "hook".into(),
        api_base_url: config::DEFAULT_API_BASE.into(),
        mode: UpdateMode::Webhook,
        poll_timeout_s: 25,
        bot_username: String::new(),
    };
    assert_eq!(account.bot_id(), Some(7_000_000_001));
    let debug = format!("{account:?}");
    assert!(
        !debug.contains("AAH-secret") && !debug.contains("hook\""),
        "{debug}"
    );
    let bad = TelegramAccount {
        bot_token: "nonsense".into(),
        ..account
    };
    assert_eq!(bad.bot_id(), None);
}

mod properties {
    //! Property tests over the update decoder (run in CI): arbitrary bytes and JSON shapes
    //! never panic, and a real update with arbitrary unknown fields still decodes.
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            prop_oneof![
                Just("private".to_owned()),
                Just("group".to_owned()),
                Just("/start".to_owned()),
                Just("bot_command".to_owned()),
                ".{0,12}",
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("update_id".to_owned()),
                            Just("message".to_owned()),
                            Just("edited_message".to_owned()),
                            Just("callback_query".to_owned()),
                            Just("my_chat_member".to_owned()),
                            Just("message_id".to_owned()),
                            Just("chat".to_owned()),
                            Just("from".to_owned()),
                            Just("id".to_owned()),
                            Just("type".to_owned()),
                            Just("date".to_owned()),
                            Just("text".to_owned()),
                            Just("entities".to_owned()),
                            Just("offset".to_owned()),
                            Just("length".to_owned()),
                            "[a-z_]{1,8}",
                        ],
                        inner
                    ),
                    0..5
                )
                .prop_map(|pairs| serde_json::Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&body, &bot());
        }

        #[test]
        fn arbitrary_json_never_panics(value in json()) {
            let _ = decode(value.to_string().as_bytes(), &bot());
            // Also as the payload of a well-formed update of every handled kind.
            for kind in ["message", "edited_message", "callback_query", "my_chat_member"] {
                let update = serde_json::json!({"update_id": 7, kind: value.clone()});
                let decoded = decode(update.to_string().as_bytes(), &bot());
                prop_assert!(decoded.is_ok(), "{kind}: {decoded:?}");
            }
        }

        #[test]
        fn unknown_fields_never_hide_a_text_message(key in "x_[a-z]{1,8}", value in json()) {
            let mut update: serde_json::Value =
                serde_json::from_slice(&fixture("message_text.json")).unwrap();
            update["message"][key.as_str()] = value;
            let decoded = decode(update.to_string().as_bytes(), &bot()).unwrap();
            prop_assert!(matches!(decoded.event, Event::Message(_)), "{:?}", decoded.event);
        }
    }
}

/// Found by the `telegram_update` fuzz target: teloxide's reader of `message_reaction`
/// unwrapped a missing actor and panicked. An update kind Sapa does not handle is ignored by
/// its id, without teloxide.
#[test]
fn a_reaction_without_its_actor_is_ignored_not_a_panic() {
    let update = decode(&fixture("fuzz_message_reaction_without_actor.json"), &bot()).unwrap();
    assert_eq!(update.update_id, 912_345_010);
    assert_eq!(
        update.event,
        Event::Ignored {
            kind: "message_reaction".into()
        }
    );
    for bad in [
        br#"{"update_id": -1, "message_reaction": {}}"#.as_slice(),
        br#"{"update_id": 4294967296, "poll": {}}"#.as_slice(),
        br#"{"update_id": "7", "poll": {}}"#.as_slice(),
    ] {
        assert!(decode(bad, &bot()).is_err());
    }
}
