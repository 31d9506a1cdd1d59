#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::webhook::{decode, sign, verify_challenge, verify_signature};
use super::*;
use crate::model::{
    Author, DeliveryState, InboundEvent, InboundMessage, MediaKind, MediaSource, MessageContent,
    OutboundMedia, StatusUpdate, TurnHint,
};

const NUMBER: &str = "106540352242922";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/src/whatsapp/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn messages(name: &str) -> Vec<InboundMessage> {
    let delivery = decode(&fixture(name)).unwrap();
    assert_eq!(delivery.values.len(), 1, "{name}");
    assert_eq!(delivery.values[0].phone_number_id, NUMBER, "{name}");
    assert_eq!(delivery.values[0].undecodable, 0, "{name}");
    delivery.values[0]
        .events
        .iter()
        .map(|e| match e {
            InboundEvent::Message(m) => m.clone(),
            InboundEvent::Status(_) => panic!("{name}: unexpected status"),
        })
        .collect()
}

fn statuses(name: &str) -> Vec<StatusUpdate> {
    let delivery = decode(&fixture(name)).unwrap();
    delivery
        .values
        .iter()
        .flat_map(|v| v.events.iter())
        .filter_map(|e| match e {
            InboundEvent::Status(s) => Some(s.clone()),
            InboundEvent::Message(_) => None,
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
    assert!(matches!(multi.values[2].events[0], InboundEvent::Status(_)));

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
    assert_eq!(n, 23);
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
        },
    );
    assert_eq!(body["template"]["name"], "follow_up_1");
    assert_eq!(body["template"]["language"]["code"], "id");
    assert_eq!(
        body["template"]["components"][0]["parameters"][1]["text"],
        "#12"
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
