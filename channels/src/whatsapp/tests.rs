#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::webhook::{decode, sign, verify_challenge, verify_signature};
use super::*;
use crate::model::{
    Author, DeliveryState, InboundMessage, MediaKind, MediaSource, MessageContent, OrderItem,
    OutboundMedia, StatusUpdate, TurnHint,
};
use crate::provider::{CustomerIds, Event, Inbound};

const NUMBER: &str = "106540352242922";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/src/whatsapp/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn events(name: &str) -> Vec<Event> {
    let delivery = decode(&fixture(name)).unwrap();
    assert_eq!(delivery.values.len(), 1, "{name}");
    assert_eq!(delivery.values[0].phone_number_id, NUMBER, "{name}");
    assert_eq!(delivery.values[0].undecodable, 0, "{name}");
    delivery.values[0].events.clone()
}

fn inbounds(name: &str) -> Vec<Inbound> {
    events(name)
        .into_iter()
        .map(|e| match e {
            Event::Message(m) => m,
            other => panic!("{name}: unexpected {other:?}"),
        })
        .collect()
}

fn messages(name: &str) -> Vec<InboundMessage> {
    inbounds(name).into_iter().map(|i| i.message).collect()
}

fn statuses(name: &str) -> Vec<StatusUpdate> {
    let delivery = decode(&fixture(name)).unwrap();
    delivery
        .values
        .iter()
        .flat_map(|v| v.events.iter())
        .filter_map(|e| match e {
            Event::Status { update, .. } => Some(update.clone()),
            _ => None,
        })
        .collect()
}

fn only(name: &str) -> InboundMessage {
    let mut all = messages(name);
    assert_eq!(all.len(), 1, "{name}");
    all.remove(0)
}

#[test]
fn text_decodes_with_sender_and_timestamp() {
    let m = only("text.json");
    assert_eq!(m.from, "6281311112222");
    assert_eq!(m.sender_name.as_deref(), Some("Rina"));
    assert_eq!(m.timestamp_s, 1_763_791_200);
    assert!(m.external_id.starts_with("wamid.HBgN"));
    assert_eq!(
        m.content,
        MessageContent::Text {
            body: "Halo kak, jam berapa tokonya buka hari Minggu?".into()
        }
    );
    assert_eq!(
        m.content.answer_text(),
        Some((
            "Halo kak, jam berapa tokonya buka hari Minggu?",
            TurnHint::Text
        ))
    );
}

#[test]
fn burst_keeps_order() {
    let ids: Vec<String> = messages("text_burst.json")
        .into_iter()
        .map(|m| m.external_id)
        .collect();
    assert_eq!(ids, ["wamid.BURST01", "wamid.BURST02", "wamid.BURST03"]);
}

#[test]
fn interactive_and_template_replies_are_choices() {
    let b = only("interactive_button_reply.json");
    assert_eq!(b.reply_to.as_deref(), Some("wamid.OUT0002"));
    assert_eq!(
        b.content,
        MessageContent::Choice {
            id: "handoff:yes".into(),
            title: "Bicara dgn admin".into(),
            description: None
        }
    );
    assert_eq!(
        b.content.answer_text(),
        Some(("Bicara dgn admin", TurnHint::Choice))
    );
    let l = only("interactive_list_reply.json");
    assert_eq!(
        l.content,
        MessageContent::Choice {
            id: "menu:kopi-susu".into(),
            title: "Kopi Susu Gula Aren".into(),
            description: Some("Rp 22.000".into())
        }
    );
    let t = only("template_button.json");
    assert_eq!(
        t.content,
        MessageContent::Choice {
            id: "FOLLOWUP_REPLY".into(),
            title: "Masih tertarik".into(),
            description: None
        }
    );
    assert_eq!(t.reply_to.as_deref(), Some("wamid.OUT0004"));
}

#[test]
fn media_carry_id_mime_hash_and_caption() {
    let image = only("image.json");
    let MessageContent::Media {
        kind,
        media,
        caption,
    } = &image.content
    else {
        panic!("not media: {:?}", image.content)
    };
    assert_eq!(*kind, MediaKind::Image);
    assert_eq!(media.id, "1234567890123456");
    assert_eq!(media.mime_type.as_deref(), Some("image/jpeg"));
    assert!(media.sha256.is_some());
    assert_eq!(caption.as_deref(), Some("ini struknya kak"));
    assert_eq!(
        image.content.answer_text(),
        Some(("ini struknya kak", TurnHint::Text))
    );

    let voice = only("audio_voice.json");
    assert!(matches!(
        &voice.content,
        MessageContent::Media { kind: MediaKind::Voice, caption: None, media } if media.id == "2234567890123456"
    ));
    assert_eq!(voice.content.answer_text(), None);

    let doc = only("document.json");
    assert!(matches!(
        &doc.content,
        MessageContent::Media { kind: MediaKind::Document, media, caption: Some(c) }
            if media.filename.as_deref() == Some("pesanan.pdf") && c == "daftar pesanan catering"
    ));
    assert_eq!(
        doc.content.display_text(),
        "[document: pesanan.pdf] daftar pesanan catering"
    );
}

#[test]
fn location_contacts_reaction_unsupported_unknown() {
    let loc = only("location.json");
    assert_eq!(
        loc.content,
        MessageContent::Location {
            latitude: -6.261_492_7,
            longitude: 106.810_599_8,
            name: Some("Blok M Square".into()),
            address: Some("Jl. Melawai 5, Jakarta Selatan".into())
        }
    );
    assert_eq!(loc.content.answer_text(), None);

    let contacts = only("contacts.json");
    let MessageContent::Contacts { cards } = &contacts.content else {
        panic!("{:?}", contacts.content)
    };
    assert_eq!(cards[0].name, "Andi Wijaya");
    assert_eq!(cards[0].phones, ["+62 812-3456-7890"]);

    let reactions = messages("reaction.json");
    assert_eq!(
        reactions[0].content,
        MessageContent::Reaction {
            message_id: "wamid.OUT0005".into(),
            emoji: Some("👍".into())
        }
    );
    assert_eq!(
        reactions[1].content,
        MessageContent::Reaction {
            message_id: "wamid.OUT0005".into(),
            emoji: None
        }
    );
    assert!(reactions.iter().all(|r| r.content.answer_text().is_none()));

    assert_eq!(
        only("unsupported.json").content,
        MessageContent::Unsupported {
            code: Some(131_051)
        }
    );

    // An unknown future type never drops the normal text next to it.
    let mixed = messages("unknown_type.json");
    assert_eq!(mixed.len(), 2);
    assert_eq!(
        mixed[0].content,
        MessageContent::Unknown {
            kind: "nfm_reply".into()
        }
    );
    assert_eq!(
        mixed[1].content,
        MessageContent::Text {
            body: "dan ini pesan biasa".into()
        }
    );
}

#[test]
fn a_broken_message_does_not_drop_its_neighbours() {
    let body = String::from_utf8(fixture("text_burst.json"))
        .unwrap()
        .replacen("\"timestamp\": \"1763791202\"", "\"timestamp\": 17", 1);
    let delivery = decode(body.as_bytes()).unwrap();
    assert_eq!(delivery.values[0].undecodable, 1);
    assert_eq!(delivery.values[0].events.len(), 2);
}

#[test]
fn statuses_decode_with_errors() {
    let sent = statuses("status_sent.json");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].provider_message_id, "wamid.OUT0006");
    assert_eq!(sent[0].state, DeliveryState::Sent);
    assert_eq!(
        statuses("status_delivered.json")[0].state,
        DeliveryState::Delivered
    );
    assert_eq!(statuses("status_read.json")[0].state, DeliveryState::Read);
    let ooo: Vec<DeliveryState> = statuses("status_out_of_order.json")
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(
        ooo,
        [
            DeliveryState::Read,
            DeliveryState::Delivered,
            DeliveryState::Sent
        ]
    );
    let failed = &statuses("status_failed_131047.json")[0];
    assert_eq!(failed.state, DeliveryState::Failed);
    assert_eq!(failed.error.as_ref().unwrap().code, 131_047);
    assert_eq!(
        statuses("status_failed_131026.json")[0]
            .error
            .as_ref()
            .unwrap()
            .code,
        131_026
    );
}

#[test]
fn multi_entry_other_fields_and_value_errors() {
    let multi = decode(&fixture("multi_entry.json")).unwrap();
    assert_eq!(multi.values.len(), 3);
    let kinds: Vec<usize> = multi.values.iter().map(|v| v.events.len()).collect();
    assert_eq!(kinds, [1, 1, 1]);
    assert!(matches!(multi.values[2].events[0], Event::Status { .. }));

    let other = decode(&fixture("non_message_field.json")).unwrap();
    assert!(other.values.is_empty());
    assert_eq!(other.ignored_changes, 1);

    let errors = decode(&fixture("value_errors.json")).unwrap();
    assert_eq!(errors.values[0].errors[0].code, 131_000);
    assert!(errors.values[0].events.is_empty());

    let number = decode(&fixture("other_number.json")).unwrap();
    assert_eq!(number.values[0].phone_number_id, "109999999999999");

    assert!(decode(b"{\"object\":\"page\",\"entry\":[]}").is_err());
    assert!(decode(b"not json").is_err());
}

#[test]
fn every_fixture_decodes() {
    let dir = format!("{}/src/whatsapp/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let delivery = decode(&std::fs::read(&path).unwrap()).unwrap();
        assert!(
            delivery.values.iter().all(|v| v.undecodable == 0),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert_eq!(n, 46);
}

#[test]
fn signature_is_over_the_raw_bytes() {
    let body = fixture("text.json");
    let header = sign(b"app-secret", &body);
    assert!(verify_signature(b"app-secret", &body, Some(&header)));
    assert!(!verify_signature(b"other-secret", &body, Some(&header)));
    assert!(!verify_signature(b"app-secret", &body, None));
    assert!(!verify_signature(b"app-secret", &body, Some("sha256=zz")));
    assert!(!verify_signature(
        b"app-secret",
        &body,
        Some(header.trim_start_matches("sha256="))
    ));
    // Re-serialized JSON (same meaning, other bytes) fails.
    let reserialized =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).unwrap()).unwrap();
    assert_ne!(reserialized, body);
    assert!(!verify_signature(
        b"app-secret",
        &reserialized,
        Some(&header)
    ));
}

#[test]
fn challenge_needs_subscribe_and_the_token() {
    assert_eq!(
        verify_challenge(Some("subscribe"), Some("tok"), Some("1158201444"), "tok"),
        Some("1158201444")
    );
    assert_eq!(
        verify_challenge(Some("subscribe"), Some("bad"), Some("1"), "tok"),
        None
    );
    assert_eq!(
        verify_challenge(Some("unsubscribe"), Some("tok"), Some("1"), "tok"),
        None
    );
    assert_eq!(
        verify_challenge(Some("subscribe"), Some(""), Some("1"), ""),
        None
    );
}

fn outbound(text: &str, choices: &[&str]) -> OutboundMessage {
    OutboundMessage {
        message_id: 1,
        conversation_id: "c".into(),
        recipient: "6281311112222".into(),
        author: Author::Bot,
        text: text.into(),
        choices: choices.iter().map(|c| (*c).to_owned()).collect(),
        in_reply_to: vec!["wamid.IN1".into()],
        created_at_ms: 0,
        idempotency_key: "msg-1".into(),
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
fn image_by_link_takes_the_text_as_caption() {
    let msg = with_media(
        "Menu hari ini",
        MediaKind::Image,
        MediaSource::Url("https://cdn.example.com/menu.jpg".into()),
    );
    let bodies = message_bodies(&msg).unwrap();
    assert_eq!(
        bodies,
        vec![serde_json::json!({
            "to": "6281311112222",
            "type": "image",
            "image": {"link": "https://cdn.example.com/menu.jpg", "caption": "Menu hari ini"},
            "context": {"message_id": "wamid.IN1"},
        })]
    );
}

#[test]
fn document_by_id_keeps_its_caption_and_file_name_and_sends_the_text_after() {
    let mut msg = with_media(
        "Silakan dicek ya",
        MediaKind::Document,
        MediaSource::ProviderId("1013859600285441".into()),
    );
    if let Some(media) = msg.media.as_mut() {
        media.caption = Some("Daftar harga".into());
        media.filename = Some("harga.pdf".into());
    }
    let bodies = message_bodies(&msg).unwrap();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["type"], "document");
    assert_eq!(
        bodies[0]["document"],
        serde_json::json!({"id": "1013859600285441", "caption": "Daftar harga", "filename": "harga.pdf"})
    );
    assert_eq!(bodies[1]["type"], "text");
    assert_eq!(bodies[1]["text"]["body"], "Silakan dicek ya");
    // Only the first message quotes the customer.
    assert!(bodies[1].get("context").is_none());
}

#[test]
fn audio_and_stickers_have_no_caption_so_the_text_follows() {
    for (kind, wire) in [
        (MediaKind::Audio, "audio"),
        (MediaKind::Voice, "audio"),
        (MediaKind::Sticker, "sticker"),
    ] {
        let msg = with_media("Dengarkan ini", kind, MediaSource::ProviderId("42".into()));
        let bodies = message_bodies(&msg).unwrap();
        assert_eq!(bodies.len(), 2, "{kind:?}");
        assert_eq!(bodies[0]["type"], wire);
        assert_eq!(bodies[0][wire], serde_json::json!({"id": "42"}));
        assert_eq!(bodies[1]["text"]["body"], "Dengarkan ini");
    }
    // Media alone is one message.
    let alone = with_media("", MediaKind::Sticker, MediaSource::ProviderId("42".into()));
    assert_eq!(message_bodies(&alone).unwrap().len(), 1);
}

#[test]
fn long_text_or_choices_are_not_captions() {
    let long = "kata ".repeat(300);
    let msg = with_media(
        &long,
        MediaKind::Image,
        MediaSource::Url("https://cdn.example.com/a.jpg".into()),
    );
    let bodies = message_bodies(&msg).unwrap();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0]["image"].get("caption").is_none());
    assert_eq!(bodies[1]["text"]["body"], long.trim());

    let mut msg = with_media(
        "Mau pesan?",
        MediaKind::Image,
        MediaSource::Url("https://cdn.example.com/a.jpg".into()),
    );
    msg.choices = vec!["Ya".into(), "Tidak".into()];
    let bodies = message_bodies(&msg).unwrap();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0]["image"].get("caption").is_none());
    assert_eq!(bodies[1]["interactive"]["type"], "button");
    assert_eq!(bodies[1]["interactive"]["body"]["text"], "Mau pesan?");
}

#[test]
fn non_http_media_links_are_refused_for_good() {
    for url in ["ftp://example.com/a.jpg", "file:///tmp/a.jpg", "a.jpg"] {
        let msg = with_media("", MediaKind::Image, MediaSource::Url(url.into()));
        match message_bodies(&msg) {
            Err(ChannelError::Permanent { reason, .. }) => {
                assert!(reason.contains("http"), "{reason}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn choices_pick_buttons_then_list_then_numbered_text() {
    let b = message_bodies(&outbound("Mau dibantu admin?", &["Ya", "Tidak"])).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["interactive"]["type"], "button");
    assert_eq!(
        b[0]["interactive"]["action"]["buttons"][1]["reply"]["title"],
        "Tidak"
    );
    assert_eq!(b[0]["context"]["message_id"], "wamid.IN1");
    assert_eq!(b[0]["to"], "6281311112222");

    let four = ["a", "b", "c", "d"];
    let l = message_bodies(&outbound("Pilih", &four)).unwrap();
    assert_eq!(l[0]["interactive"]["type"], "list");
    assert_eq!(
        l[0]["interactive"]["action"]["sections"][0]["rows"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let long_title = ["Judul pilihan yang sangat panjang sekali"];
    let t = message_bodies(&outbound("Pilih", &long_title)).unwrap();
    assert_eq!(t[0]["type"], "text");
    assert!(
        t[0]["text"]["body"]
            .as_str()
            .unwrap()
            .ends_with("\n1. Judul pilihan yang sangat panjang sekali")
    );

    let eleven: Vec<String> = (0..11).map(|i| format!("opsi {i}")).collect();
    let refs: Vec<&str> = eleven.iter().map(String::as_str).collect();
    assert_eq!(
        message_bodies(&outbound("Pilih", &refs)).unwrap()[0]["type"],
        "text"
    );
}

#[test]
fn text_splits_only_beyond_the_limit() {
    let exact = "a".repeat(MAX_TEXT_CHARS);
    assert_eq!(message_bodies(&outbound(&exact, &[])).unwrap().len(), 1);
    let long = format!("{}\n\n{}", "kata ".repeat(700), "lagi ".repeat(300));
    let parts = split_text(&long, MAX_TEXT_CHARS, Measure::Chars);
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p.chars().count() <= MAX_TEXT_CHARS));
    let bodies = message_bodies(&outbound(&long, &[])).unwrap();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[1].get("context").is_none());
    // Multi-byte text splits on characters, not bytes.
    let emoji = "🙂".repeat(5000);
    let parts = split_text(&emoji, MAX_TEXT_CHARS, Measure::Chars);
    assert_eq!(parts[0].chars().count(), MAX_TEXT_CHARS);
    assert_eq!(parts[1].chars().count(), 5000 - MAX_TEXT_CHARS);
}

#[test]
fn window_and_templates() {
    let hour = 3_600_000;
    assert!(window_open(None, 0));
    assert!(window_open(Some(0), 23 * hour));
    assert!(!window_open(Some(0), 24 * hour));
    let body = template_body(
        "628",
        &crate::model::Template {
            name: "follow_up_1".into(),
            language: "id".into(),
            body_params: vec!["Rina".into(), "#12".into()],
            copy_code: None,
        },
    );
    assert_eq!(body["template"]["name"], "follow_up_1");
    assert_eq!(body["template"]["language"]["code"], "id");
    assert_eq!(
        body["template"]["components"][0]["parameters"][1]["text"],
        "#12"
    );
    assert_eq!(body["template"]["components"].as_array().unwrap().len(), 1);
    // An authentication template: the code in the body and in the copy-code button.
    let body = template_body(
        "US.13491208655302741918",
        &crate::model::Template {
            name: "login_code".into(),
            language: "en_US".into(),
            body_params: vec!["482913".into()],
            copy_code: Some("482913".into()),
        },
    );
    assert_eq!(
        body["template"]["components"],
        serde_json::json!([
            {"type": "body", "parameters": [{"type": "text", "text": "482913"}]},
            {"type": "button", "sub_type": "url", "index": "0",
             "parameters": [{"type": "text", "text": "482913"}]},
        ])
    );
}

#[test]
fn account_debug_redacts_secrets() {
    let account = WhatsappAccount {
        phone_number_id: NUMBER.into(),
        app_secret: "s3cret-app".into(),
        access_token: "EAAG-token".into(),
        verify_token: "verify-me".into(),
        api_base_url: config::DEFAULT_API_BASE.into(),
        api_version: config::DEFAULT_API_VERSION.into(),
        reengagement_template: None,
        reengagement_language: "id".into(),
        otp_template: Some("login_code".into()),
        otp_template_language: "en".into(),
        messages_per_second: 20,
        pair_interval: "2s".into(),
        pair_burst: 1,
    };
    let debug = format!("{account:?}");
    assert!(
        !debug.contains("s3cret-app")
            && !debug.contains("EAAG-token")
            && !debug.contains("verify-me")
    );
    let channel = WhatsappChannel::new(reqwest::Client::new(), &account);
    assert!(!format!("{channel:?}").contains("EAAG-token"));
    // The number's pacing comes from its settings.
    assert_eq!(
        channel.pacing(),
        crate::PacingPolicy {
            per_account_per_sec: Some(20),
            per_recipient_interval: std::time::Duration::from_secs(2),
            per_recipient_burst: 1,
        }
    );
}

const BSUID: &str = "ID.13491208655302741918";
const PARENT: &str = "ID.ENT.99887766554433221100";
const SARI: &str = "6281399998888";

#[test]
fn username_customers_decode_with_every_identifier_combination() {
    // (fixture suffix, phone, parent id)
    for (combo, phone, parent) in [
        ("username", false, false),
        ("username_parent", false, true),
        ("both", true, false),
        ("both_parent", true, true),
    ] {
        let name = format!("bsuid_text_{combo}.json");
        let inbound = inbounds(&name).remove(0);
        assert_eq!(
            inbound.ids,
            CustomerIds {
                phone: phone.then(|| SARI.to_owned()),
                user_id: Some(BSUID.to_owned()),
                parent_user_id: parent.then(|| PARENT.to_owned()),
                username: Some("sari.kopi".to_owned()),
            },
            "{name}"
        );
        // We answer to the phone number when shared, else to the user id.
        assert_eq!(
            inbound.message.from,
            if phone { SARI } else { BSUID },
            "{name}"
        );
        assert_eq!(inbound.message.sender_name.as_deref(), Some("Sari"));
        assert_eq!(
            inbound.message.content.answer_text(),
            Some(("Jam buka hari Minggu?", TurnHint::Text))
        );
    }
    // Phone-only customers keep working as before, with no user id.
    assert_eq!(inbounds("text.json")[0].ids.user_id, None);
    assert_eq!(
        inbounds("text.json")[0].ids.phone.as_deref(),
        Some("6281311112222")
    );
}

#[test]
fn statuses_of_username_customers_decode_by_recipient_user_id() {
    for state in ["sent", "delivered", "read"] {
        for (combo, phone) in [
            ("username", false),
            ("username_parent", false),
            ("both", true),
            ("both_parent", true),
        ] {
            let name = format!("bsuid_status_{state}_{combo}.json");
            let all = statuses(&name);
            assert_eq!(all.len(), 1, "{name}");
            assert_eq!(all[0].provider_message_id, "wamid.OUT_BSUID");
            assert_eq!(all[0].state.as_str(), state, "{name}");
            assert_eq!(all[0].recipient, if phone { SARI } else { BSUID }, "{name}");
            assert_eq!(decode(&fixture(&name)).unwrap().values[0].undecodable, 0);
        }
    }
}

#[test]
fn an_order_keeps_products_quantities_and_prices_and_is_acknowledged() {
    let order = only("order.json");
    assert_eq!(
        order.content,
        MessageContent::Order {
            catalog_id: Some("1029384756".into()),
            note: Some("Tolong dikirim sore ya".into()),
            items: vec![
                OrderItem {
                    product_id: "KOPI-SUSU-AREN".into(),
                    quantity: Some(2),
                    unit_price: Some("22000".into()),
                    currency: Some("IDR".into()),
                },
                OrderItem {
                    product_id: "CROISSANT".into(),
                    quantity: Some(1),
                    unit_price: Some("18500.50".into()),
                    currency: Some("IDR".into()),
                },
            ],
        }
    );
    assert_eq!(order.content.reply_hint(), Some(TurnHint::Order));
    assert_eq!(order.content.answer_text(), None);
    assert_eq!(
        order.content.display_text(),
        "[order] 2 x KOPI-SUSU-AREN @ 22000 IDR; 1 x CROISSANT @ 18500.50 IDR (Tolong dikirim sore ya)"
    );
}

#[test]
fn request_welcome_greets_and_flow_replies_are_stored_unanswered() {
    let welcome = only("request_welcome.json");
    assert_eq!(welcome.content, MessageContent::Welcome);
    assert_eq!(welcome.content.reply_hint(), Some(TurnHint::Welcome));

    let flow = only("nfm_reply.json");
    let MessageContent::FlowReply {
        name,
        body,
        response_json,
    } = &flow.content
    else {
        panic!("not a flow reply: {:?}", flow.content)
    };
    assert_eq!(name.as_deref(), Some("flow"));
    assert_eq!(body.as_deref(), Some("Sent"));
    let answers: serde_json::Value = serde_json::from_str(response_json).unwrap();
    assert_eq!(answers["flow_token"], "booking-42");
    assert_eq!(flow.reply_to.as_deref(), Some("wamid.OUT0010"));
    assert_eq!(flow.content.reply_hint(), None);
}

#[test]
fn edits_and_revokes_name_the_original_message() {
    let original = "wamid.HBgNNjI4MTMxMTExMjIyMhUCABIYFDNBMDFBQjQ1RjY1QjdCRDhGNUE0AA==";
    assert_eq!(
        events("edit.json"),
        vec![Event::Edited {
            external_id: original.into(),
            text: "Halo kak, jam berapa tokonya buka hari Sabtu?".into(),
        }]
    );
    assert_eq!(
        events("revoke.json"),
        vec![Event::Revoked {
            external_id: original.into()
        }]
    );
}

#[test]
fn a_number_change_is_stored_for_agents_then_moves_the_contact() {
    for name in [
        "system_number_changed.json",
        "system_customer_changed_number.json",
    ] {
        let all = events(name);
        assert_eq!(all.len(), 2, "{name}");
        let Event::Message(notice) = &all[0] else {
            panic!("{name}: {all:?}")
        };
        assert_eq!(notice.message.from, "6281311112222");
        assert!(matches!(
            notice.message.content,
            MessageContent::System { .. }
        ));
        assert_eq!(notice.message.content.reply_hint(), None, "never answered");
        let Event::ContactChanged { from, phone, .. } = &all[1] else {
            panic!("{name}: {all:?}")
        };
        assert_eq!(from, "6281311112222");
        assert_eq!(phone.as_deref(), Some("6281377776666"));
    }
    let Event::ContactChanged { user_id, .. } = &events("system_number_changed.json")[1] else {
        panic!()
    };
    assert_eq!(user_id.as_deref(), Some("ID.77712345678901234567"));
}

#[test]
fn sends_to_username_customers_use_recipient_instead_of_to() {
    assert!(super::api::is_user_id(BSUID));
    assert!(!super::api::is_user_id("6281311112222"));
    assert!(!super::api::is_user_id("+6281311112222"));
    let mut phone = serde_json::json!({"to": "6281311112222", "type": "text"});
    super::api::address_user_id(phone.as_object_mut().unwrap());
    assert_eq!(phone["to"], "6281311112222");
    assert!(phone.get("recipient").is_none());
    let mut user = serde_json::json!({"to": BSUID, "type": "text"});
    super::api::address_user_id(user.as_object_mut().unwrap());
    assert_eq!(user["recipient"], BSUID);
    assert!(user.get("to").is_none());
}

mod properties {
    //! Property tests over the decoder (run in CI): arbitrary JSON never panics, and a valid
    //! envelope with one broken message still yields the others.
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            prop_oneof![
                Just("messages".to_owned()),
                Just("whatsapp_business_account".to_owned()),
                Just("text".to_owned()),
                Just("order".to_owned()),
                Just("system".to_owned()),
                Just("1763791200".to_owned()),
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
                            Just("object".to_owned()),
                            Just("entry".to_owned()),
                            Just("changes".to_owned()),
                            Just("field".to_owned()),
                            Just("value".to_owned()),
                            Just("metadata".to_owned()),
                            Just("messages".to_owned()),
                            Just("statuses".to_owned()),
                            Just("contacts".to_owned()),
                            Just("type".to_owned()),
                            Just("from".to_owned()),
                            Just("from_user_id".to_owned()),
                            Just("id".to_owned()),
                            Just("timestamp".to_owned()),
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

    fn envelope(messages: Vec<serde_json::Value>) -> serde_json::Value {
        serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": NUMBER},
                "messages": messages,
            }}]}]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_json_never_panics(value in json()) {
            let _ = decode(&serde_json::to_vec(&value).unwrap());
            // The same shapes as messages inside a valid envelope.
            let _ = decode(&serde_json::to_vec(&envelope(vec![value])).unwrap());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn one_broken_message_never_drops_the_others(
            broken in json(),
            position in 0usize..3,
            texts in prop::collection::vec("[a-zA-Z ]{1,20}", 2..4),
        ) {
            let mut messages: Vec<serde_json::Value> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| serde_json::json!({
                    "from": "6281311112222", "id": format!("wamid.P{i}"),
                    "timestamp": "1763791200", "type": "text", "text": {"body": t},
                }))
                .collect();
            // Broken: arbitrary JSON, or a text message whose required parts are garbage.
            let broken = match broken {
                serde_json::Value::Object(mut map) => {
                    map.insert("type".into(), serde_json::json!("text"));
                    map.insert("timestamp".into(), serde_json::json!("not a time"));
                    serde_json::Value::Object(map)
                }
                other => other,
            };
            let at = position.min(messages.len());
            messages.insert(at, broken);
            let delivery = decode(&serde_json::to_vec(&envelope(messages)).unwrap()).unwrap();
            let value = &delivery.values[0];
            prop_assert_eq!(value.undecodable, 1);
            let ids: Vec<String> = value
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Message(m) => Some(m.message.external_id.clone()),
                    _ => None,
                })
                .collect();
            let expected: Vec<String> = (0..texts.len()).map(|i| format!("wamid.P{i}")).collect();
            prop_assert_eq!(ids, expected);
        }
    }
}
