#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use channels::ChannelKind;
use serde_json::json;

use super::*;
use crate::state::Locale;

const DEMO_ORDERS: &str = include_str!("../../../demo/flows/cek-pesanan.yaml");
const DEMO_RESERVATION: &str = include_str!("../../../demo/flows/reservasi.yaml");

fn ctx(channel: ChannelKind, locale: Locale) -> RunContext {
    RunContext {
        locale,
        channel,
        customer_phone: (channel == ChannelKind::Whatsapp).then(|| "+6281234567890".to_owned()),
        customer_name: Some("Budi".to_owned()),
        // Monday 7 December 2026, 10:00 in the tenant's zone.
        now: jiff::civil::date(2026, 12, 7).at(10, 0, 0, 0),
    }
}

fn id_whatsapp() -> RunContext {
    ctx(ChannelKind::Whatsapp, Locale::Id)
}

fn text(t: &str) -> FlowEvent {
    FlowEvent::CustomerText(t.to_owned())
}

fn said(outcome: &Outcome) -> Vec<String> {
    outcome
        .actions
        .iter()
        .filter_map(|a| match a {
            FlowAction::Say { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn left(outcome: &Outcome) -> Option<LeaveReason> {
    match outcome.actions.last() {
        Some(FlowAction::Left { reason }) => Some(*reason),
        _ => None,
    }
}

/// Feeds `event` to the outcome's run, which must still be going.
fn next(flow: &Flow, outcome: Outcome, event: FlowEvent, ctx: &RunContext) -> Outcome {
    let run = outcome.run.expect("the flow is still running");
    // The gateway persists the run between messages: it must survive a round trip.
    let stored = serde_json::to_string(&run).unwrap();
    step(flow, serde_json::from_str(&stored).unwrap(), event, ctx)
}

fn flow(source: &str) -> Flow {
    parse(source).unwrap_or_else(|e| panic!("{e:?}"))
}

fn ask_flow(kind: &str, extra: &str) -> Flow {
    flow(&format!(
        "name: t\ndescription: test\nsteps:\n  - ask:\n      slot: x\n      type: {kind}\n      prompt: {{ id: Isi?, en: Fill? }}\n{extra}  - say:\n      text: {{ id: \"x={{{{ slots.x }}}}\", en: \"x={{{{ slots.x }}}}\" }}\n"
    ))
}

#[test]
fn order_status_on_whatsapp_verifies_the_number_then_looks_the_order_up() {
    let orders = flow(DEMO_ORDERS);
    let ctx = id_whatsapp();
    // Arrange: the flow asks for the order number first.
    let o = start(&orders, &ctx);
    assert_eq!(
        said(&o),
        ["Boleh minta nomor pesanannya, Kak? Contohnya KN-1003."]
    );
    assert_eq!(o.run.as_ref().unwrap().awaiting, Awaiting::Answer);
    // Act: the number; on WhatsApp the customer's own number gets a code.
    let o = next(&orders, o, text("kn-1003"), &ctx);
    assert_eq!(
        o.actions[0],
        FlowAction::SendOtp {
            phone: "+6281234567890".to_owned()
        }
    );
    assert!(said(&o)[0].contains("+62812…7890"), "{:?}", said(&o));
    assert_eq!(o.run.as_ref().unwrap().awaiting, Awaiting::OtpCode);
    let o = next(&orders, o, text("kodenya 482 913"), &ctx);
    assert_eq!(
        o.actions,
        [FlowAction::VerifyOtp {
            code: "482913".to_owned()
        }]
    );
    let o = next(&orders, o, FlowEvent::OtpResult { verified: true }, &ctx);
    assert!(
        said(&o)[0].contains("berhasil diverifikasi"),
        "{:?}",
        said(&o)
    );
    let Some(FlowAction::CallWebhook {
        url,
        body,
        timeout,
        retries,
    }) = o.actions.last()
    else {
        panic!("{:?}", o.actions)
    };
    assert_eq!(url, DEMO_ORDERS_URL);
    assert_eq!(body, &json!({ "order": "kn-1003", "locale": "id" }));
    assert_eq!((*timeout, *retries), (Duration::from_secs(5), 2));
    // Assert: the status is said and the flow is left.
    let o = next(
        &orders,
        o,
        FlowEvent::WebhookResult(Ok(json!({ "order": "KN-1003", "status": "Dikirim" }))),
        &ctx,
    );
    assert_eq!(said(&o), ["KN-1003: Dikirim"]);
    assert_eq!(left(&o), Some(LeaveReason::Finished));
    assert!(o.run.is_none());
}

#[test]
fn order_status_on_web_chat_goes_straight_to_the_lookup() {
    let orders = flow(DEMO_ORDERS);
    let ctx = ctx(ChannelKind::Webchat, Locale::En);
    let o = start(&orders, &ctx);
    assert_eq!(
        said(&o),
        ["What is your order number? For example KN-1003."]
    );
    let o = next(&orders, o, text("KN-1001"), &ctx);
    assert!(
        matches!(o.actions.as_slice(), [FlowAction::CallWebhook { body, .. }] if body == &json!({"order": "KN-1001", "locale": "en"})),
        "{:?}",
        o.actions
    );
    let o = next(
        &orders,
        o,
        FlowEvent::WebhookResult(Ok(json!({ "order": "KN-1001", "status": "Delivered" }))),
        &ctx,
    );
    assert_eq!(said(&o), ["KN-1001: Delivered"]);
    assert_eq!(left(&o), Some(LeaveReason::Finished));
}

#[test]
fn a_failed_lookup_says_so_politely_and_hands_off() {
    let orders = flow(DEMO_ORDERS);
    let ctx = ctx(ChannelKind::Webchat, Locale::Id);
    let o = next(&orders, start(&orders, &ctx), text("KN-1001"), &ctx);
    let failed = next(
        &orders,
        o.clone(),
        FlowEvent::WebhookResult(Err("timeout after 3 attempts".to_owned())),
        &ctx,
    );
    assert!(said(&failed)[0].starts_with("Maaf, datanya belum bisa kami cek"));
    assert!(matches!(
        &failed.actions[1],
        FlowAction::Handoff { reason } if reason.contains("timeout after 3 attempts")
    ));
    assert_eq!(left(&failed), Some(LeaveReason::HandedOff));
    assert!(failed.run.is_none());
    // A response without the field the flow saves is a failure too.
    let missing = next(
        &orders,
        o,
        FlowEvent::WebhookResult(Ok(json!({ "order": "KN-1001", "error": "not found" }))),
        &ctx,
    );
    assert!(matches!(
        &missing.actions[1],
        FlowAction::Handoff { reason } if reason.contains("/status")
    ));
    assert_eq!(left(&missing), Some(LeaveReason::HandedOff));
}

#[test]
fn reservation_takes_a_choice_a_date_time_and_a_number_and_can_be_changed() {
    let reservation = flow(DEMO_RESERVATION);
    let ctx = id_whatsapp();
    let o = start(&reservation, &ctx);
    let Some(FlowAction::Say {
        text: prompt,
        choices,
    }) = o.actions.first()
    else {
        panic!("{:?}", o.actions)
    };
    assert_eq!(prompt, "Mau reservasi di outlet mana, Kak?");
    assert_eq!(
        choices,
        &[
            ("blok-m".to_owned(), "Blok M".to_owned()),
            ("kemang".to_owned(), "Kemang".to_owned()),
            ("bandung-dago".to_owned(), "Bandung Dago".to_owned()),
        ]
    );
    // A button reply, then typed answers.
    let o = next(
        &reservation,
        o,
        FlowEvent::Button("kemang".to_owned()),
        &ctx,
    );
    assert_eq!(said(&o), ["Untuk kapan? Contohnya \"besok jam 7 malam\"."]);
    let o = next(&reservation, o, text("besok jam 7 malam"), &ctx);
    assert_eq!(said(&o), ["Untuk berapa orang?"]);
    let o = next(&reservation, o, text("empat orang"), &ctx);
    assert_eq!(
        said(&o),
        ["Reservasi di kemang untuk 4 orang, 2026-12-08 19:00. Sudah benar?"]
    );
    // "Ubah" jumps back to the outlet.
    let o = next(&reservation, o, text("ubah"), &ctx);
    assert_eq!(said(&o), ["Mau reservasi di outlet mana, Kak?"]);
    let o = next(&reservation, o, text("1"), &ctx);
    let o = next(&reservation, o, text("Sabtu 18.30"), &ctx);
    let o = next(&reservation, o, text("2"), &ctx);
    assert_eq!(
        said(&o),
        ["Reservasi di blok-m untuk 2 orang, 2026-12-12 18:30. Sudah benar?"]
    );
    let o = next(&reservation, o, text("ya, benar"), &ctx);
    assert_eq!(
        o.actions,
        [FlowAction::CallWebhook {
            url: DEMO_ORDERS_URL.to_owned(),
            body: json!({
                "reservation_outlet": "blok-m",
                "reservation_when": "2026-12-12 18:30",
                "reservation_people": "2",
            }),
            timeout: Duration::from_secs(5),
            retries: 2,
        }]
    );
    let o = next(
        &reservation,
        o,
        FlowEvent::WebhookResult(Ok(json!({ "booking": "RSV-0042" }))),
        &ctx,
    );
    assert_eq!(
        said(&o),
        ["Siap, reservasi RSV-0042 tercatat. Sampai jumpa!"]
    );
    assert_eq!(left(&o), Some(LeaveReason::Finished));
}

#[test]
fn templates_render_in_the_turns_locale() {
    let reservation = flow(DEMO_RESERVATION);
    let en = ctx(ChannelKind::Telegram, Locale::En);
    let o = start(&reservation, &en);
    assert_eq!(said(&o), ["Which outlet would you like to book?"]);
    let o = next(&reservation, o, text("Bandung Dago"), &en);
    let o = next(&reservation, o, text("tomorrow at 7pm"), &en);
    let o = next(&reservation, o, text("three"), &en);
    assert_eq!(
        said(&o),
        ["A table at bandung-dago for 3, 2026-12-08 19:00. Is that right?"]
    );
    let Some(FlowAction::Say { choices, .. }) = o.actions.first() else {
        panic!()
    };
    assert_eq!(
        choices,
        &[
            ("ya".to_owned(), "Yes".to_owned()),
            ("ubah".to_owned(), "Change".to_owned())
        ]
    );
}

#[test]
fn an_invalid_answer_gets_the_steps_invalid_text_or_the_built_in_one() {
    let orders = flow(DEMO_ORDERS);
    let id = id_whatsapp();
    let o = next(&orders, start(&orders, &id), text("pesanan kemarin"), &id);
    assert_eq!(
        said(&o),
        [
            "Nomor pesanan diawali KN lalu 4 angka, contohnya KN-1003. Ketik \"batal\" untuk berhenti."
        ]
    );
    assert_eq!(o.run.as_ref().unwrap().attempts, 1);
    // Without `invalid`, the sentence for the slot's type, with the options again.
    let choice = ask_flow(
        "choice",
        "      choices:\n        - { value: a, title: { id: Satu, en: One } }\n        - { value: b, title: { id: Dua, en: Two } }\n",
    );
    let o = next(&choice, start(&choice, &id), text("tiga"), &id);
    let Some(FlowAction::Say {
        text: said_text,
        choices,
    }) = o.actions.first()
    else {
        panic!()
    };
    assert_eq!(
        said_text,
        "Silakan pilih salah satu pilihan di bawah, atau ketik nomornya."
    );
    assert_eq!(choices.len(), 2);
    let date = ask_flow("date", "");
    let en = ctx(ChannelKind::Webchat, Locale::En);
    let o = next(&date, start(&date, &en), text("someday"), &en);
    assert!(
        said(&o)[0].starts_with("I did not understand the date."),
        "{:?}",
        said(&o)
    );
    let o = next(&date, o, text("Dec 24"), &en);
    assert_eq!(said(&o), ["x=2026-12-24"]);
}

#[test]
fn the_third_invalid_answer_hands_off_politely() {
    let number = ask_flow("number", "");
    let ctx = id_whatsapp();
    let mut o = start(&number, &ctx);
    for _ in 0..2 {
        o = next(&number, o, text("banyak"), &ctx);
        assert_eq!(said(&o), ["Mohon tulis angkanya saja, contohnya 4."]);
    }
    let o = next(&number, o, text("banyak sekali"), &ctx);
    assert!(said(&o)[0].starts_with("Maaf, sepertinya saya belum bisa memahami"));
    assert!(
        matches!(&o.actions[1], FlowAction::Handoff { reason } if reason.starts_with("flow t:"))
    );
    assert_eq!(left(&o), Some(LeaveReason::HandedOff));
    assert!(o.run.is_none());
}

#[test]
fn a_cancel_word_leaves_the_flow_with_a_confirmation() {
    let reservation = flow(DEMO_RESERVATION);
    for (word, locale, sentence) in [
        ("batal", Locale::Id, "Baik, sudah saya batalkan."),
        ("Keluar.", Locale::Id, "Baik, sudah saya batalkan."),
        ("CANCEL", Locale::En, "Okay, I have cancelled that."),
        ("exit", Locale::En, "Okay, I have cancelled that."),
    ] {
        let c = ctx(ChannelKind::Whatsapp, locale);
        let o = next(&reservation, start(&reservation, &c), text(word), &c);
        assert!(said(&o)[0].starts_with(sentence), "{word}: {:?}", said(&o));
        assert_eq!(left(&o), Some(LeaveReason::Cancelled), "{word}");
        assert!(o.run.is_none());
    }
}

#[test]
fn a_question_is_answered_from_knowledge_then_the_step_is_asked_again() {
    let reservation = flow(DEMO_RESERVATION);
    let ctx = id_whatsapp();
    let o = next(
        &reservation,
        start(&reservation, &ctx),
        FlowEvent::Button("blok-m".to_owned()),
        &ctx,
    );
    for question in [
        "Jam buka sampai jam berapa?",
        "apakah ada parkir",
        "can I bring a cake",
    ] {
        let d = next(&reservation, o.clone(), text(question), &ctx);
        assert_eq!(
            d.actions[0],
            FlowAction::AnswerFromKnowledge {
                question: question.to_owned()
            }
        );
        assert_eq!(said(&d), ["Untuk kapan? Contohnya \"besok jam 7 malam\"."]);
        // A digression is not a strike.
        assert_eq!(d.run.as_ref().unwrap().attempts, 0, "{question}");
        // And the flow resumes where it was.
        let r = next(&reservation, d, text("lusa jam 8 malam"), &ctx);
        assert_eq!(said(&r), ["Untuk berapa orang?"]);
    }
}

#[test]
fn on_web_chat_without_a_number_the_otp_step_asks_for_one_first() {
    let verify = flow(
        "name: v\ndescription: test\nsteps:\n  - verify_otp: {}\n  - say:\n      text: { id: Terverifikasi, en: Verified }\n",
    );
    let ctx = ctx(ChannelKind::Webchat, Locale::Id);
    let o = start(&verify, &ctx);
    assert!(said(&o)[0].starts_with("Silakan ketik nomor WhatsApp"));
    assert_eq!(o.run.as_ref().unwrap().awaiting, Awaiting::Phone);
    let o = next(&verify, o, text("nomor saya"), &ctx);
    assert!(said(&o)[0].starts_with("Nomor itu sepertinya belum benar"));
    let o = next(&verify, o, text("0812-3456-7890"), &ctx);
    assert_eq!(
        o.actions[0],
        FlowAction::SendOtp {
            phone: "+6281234567890".to_owned()
        }
    );
    // Wrong codes: "try again" twice, the third hands off.
    let o = next(&verify, o, text("111111"), &ctx);
    let o = next(&verify, o, FlowEvent::OtpResult { verified: false }, &ctx);
    assert!(said(&o)[0].contains("Sisa 2 kali"), "{:?}", said(&o));
    let o = next(&verify, o, text("kirim ulang"), &ctx);
    assert!(matches!(o.actions[0], FlowAction::SendOtp { .. }));
    let o = next(&verify, o, FlowEvent::OtpResult { verified: false }, &ctx);
    assert!(said(&o)[0].contains("Sisa 1 kali"), "{:?}", said(&o));
    let right = next(
        &verify,
        o.clone(),
        FlowEvent::OtpResult { verified: true },
        &ctx,
    );
    assert_eq!(said(&right)[1], "Terverifikasi");
    assert_eq!(left(&right), Some(LeaveReason::Finished));
    let wrong = next(&verify, o, FlowEvent::OtpResult { verified: false }, &ctx);
    assert!(said(&wrong)[0].starts_with("Maaf, sepertinya saya belum bisa memahami"));
    assert_eq!(left(&wrong), Some(LeaveReason::HandedOff));
}

#[test]
fn the_otp_step_uses_a_phone_slot_when_the_flow_has_one() {
    let verify = flow(
        "name: v\ndescription: test\nsteps:\n  - ask:\n      slot: hp\n      type: phone\n      prompt: { id: Nomor?, en: Number? }\n  - verify_otp: { phone_slot: hp }\n  - end\n",
    );
    let ctx = id_whatsapp();
    let o = next(&verify, start(&verify, &ctx), text("0813 1111 2222"), &ctx);
    assert_eq!(
        o.actions[0],
        FlowAction::SendOtp {
            phone: "+6281311112222".to_owned()
        }
    );
    let o = next(&verify, o, text("halo"), &ctx);
    assert!(said(&o)[0].starts_with("Silakan ketik 6 angka kode"));
}

#[test]
fn non_waiting_steps_run_in_one_turn() {
    let all = flow(
        r#"name: semua
description: test
steps:
  - say:
      text: { id: "Halo {{ slots.customer_name }} di {{ slots.channel }}", en: "Hi {{ slots.customer_name }}" }
  - tag: { tags: [prospek, reservasi] }
  - schedule_follow_up:
      after: 30m
      text: { id: "Masih tertarik, {{ slots.customer_name }}?", en: "Still interested?" }
  - if: { slot: customer_phone, present: true, then: human, else: bye }
  - say:
      label: bye
      text: { id: Sampai jumpa, en: Bye }
  - end
  - handoff: { label: human, reason: prospek panas }
"#,
    );
    let o = start(&all, &id_whatsapp());
    assert_eq!(
        o.actions,
        [
            FlowAction::Say {
                text: "Halo Budi di whatsapp".to_owned(),
                choices: vec![]
            },
            FlowAction::Tag(vec!["prospek".to_owned(), "reservasi".to_owned()]),
            FlowAction::ScheduleFollowUp {
                after: Duration::from_secs(30 * 60),
                text: "Masih tertarik, Budi?".to_owned()
            },
            FlowAction::Say {
                text: "Baik, percakapan ini saya teruskan ke tim kami. Mohon ditunggu ya."
                    .to_owned(),
                choices: vec![]
            },
            FlowAction::Handoff {
                reason: "flow semua: prospek panas".to_owned()
            },
            FlowAction::Left {
                reason: LeaveReason::HandedOff
            },
        ]
    );
    assert!(o.run.is_none());
    // Without a phone, `else` jumps to the goodbye, and `end` leaves.
    let o = start(&all, &ctx(ChannelKind::Webchat, Locale::En));
    assert_eq!(said(&o)[1], "Bye");
    assert_eq!(left(&o), Some(LeaveReason::Finished));
}

#[test]
fn if_matches_equals_one_of_and_presence() {
    let branch = flow(
        r#"name: cabang
description: test
steps:
  - ask:
      slot: kota
      prompt: { id: Kota?, en: City? }
  - if: { slot: kota, one_of: [jakarta, bandung], then: dekat }
  - say:
      text: { id: Jauh, en: Far }
  - end
  - say:
      label: dekat
      text: { id: Dekat, en: Near }
"#,
    );
    let ctx = id_whatsapp();
    let near = next(&branch, start(&branch, &ctx), text("Bandung"), &ctx);
    assert_eq!(said(&near), ["Dekat"]);
    // Running past the last step leaves too.
    assert_eq!(left(&near), Some(LeaveReason::Finished));
    let far = next(&branch, start(&branch, &ctx), text("Medan"), &ctx);
    assert_eq!(said(&far), ["Jauh"]);
}

#[test]
fn slot_types_are_read_and_normalized() {
    let ctx = id_whatsapp();
    for (kind, answer, want) in [
        ("text", "  apa saja  ", "x=apa saja"),
        ("number", "dua belas", "x=12"),
        ("phone", "62812 3456 7890", "x=+6281234567890"),
        ("email", "Budi@Contoh.COM", "x=Budi@contoh.com"),
        ("date", "lusa", "x=2026-12-09"),
        ("time", "jam 3 sore", "x=15:00"),
        ("datetime", "besok jam 3 sore", "x=2026-12-08 15:00"),
    ] {
        let f = ask_flow(kind, "");
        let o = next(&f, start(&f, &ctx), text(answer), &ctx);
        assert_eq!(said(&o), [want], "{kind}");
    }
}

#[test]
fn events_the_run_does_not_wait_for_change_nothing() {
    let reservation = flow(DEMO_RESERVATION);
    let ctx = id_whatsapp();
    let o = start(&reservation, &ctx);
    let run = o.run.clone().unwrap();
    for event in [
        FlowEvent::OtpResult { verified: true },
        FlowEvent::WebhookResult(Ok(json!({}))),
    ] {
        let same = step(&reservation, run.clone(), event, &ctx);
        assert_eq!(same.run.as_ref(), Some(&run));
        assert!(same.actions.is_empty());
    }
}

#[test]
fn a_run_that_no_longer_fits_its_flow_is_left() {
    let reservation = flow(DEMO_RESERVATION);
    let ctx = id_whatsapp();
    let mut run = start(&reservation, &ctx).run.unwrap();
    run.step = 5; // now a `call_webhook`, not the `ask` it waited on
    let o = step(&reservation, run, text("kemang"), &ctx);
    assert_eq!(
        o.actions,
        [FlowAction::Left {
            reason: LeaveReason::FlowChanged
        }]
    );
}

fn simple_analyzer(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn flows_are_triggered_by_button_or_by_all_words_of_a_keyword() {
    let flows = [flow(DEMO_ORDERS), flow(DEMO_RESERVATION)];
    let name = |text: &str, button: Option<&str>| {
        triggered(&flows, text, button, &simple_analyzer).map(|f| f.name.as_str())
    };
    assert_eq!(name("", Some("reservasi")), Some("reservasi"));
    assert_eq!(name("", Some("cek_pesanan")), Some("cek-pesanan"));
    assert_eq!(name("Kak, mau cek pesanan dong", None), Some("cek-pesanan"));
    assert_eq!(
        name("pesanan saya sudah sampai mana ya?", None),
        Some("cek-pesanan")
    );
    assert_eq!(name("I'd like to book a table", None), Some("reservasi"));
    assert_eq!(name("mau booking meja buat 4", None), Some("reservasi"));
    assert_eq!(name("jam buka kapan?", None), None);
    assert_eq!(name("pesanan", None), None);
    assert_eq!(name("halo", Some("unknown")), None);
}

#[test]
fn every_runtime_sentence_exists_in_indonesian_and_english() {
    use crate::texts;
    let errors = [
        SlotError::Empty,
        SlotError::Pattern,
        SlotError::Number,
        SlotError::Phone,
        SlotError::Email,
        SlotError::Date,
        SlotError::Time,
        SlotError::Datetime,
        SlotError::Choice,
    ];
    let mut pairs: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.sentence(Locale::Id), e.sentence(Locale::En)))
        .collect();
    let sentences: [fn(Locale) -> &'static str; 5] = [
        texts::flow_cancelled,
        texts::flow_too_many_invalid,
        texts::flow_webhook_failed,
        texts::flow_handoff,
        texts::flow_type_the_code,
    ];
    pairs.extend(sentences.iter().map(|f| (f(Locale::Id), f(Locale::En))));
    for (id, en) in pairs {
        assert!(!id.is_empty() && !en.is_empty() && id != en, "{id} / {en}");
    }
}

#[test]
fn if_steps_jumping_in_a_circle_hand_off_instead_of_spinning() {
    let circle = flow(
        "name: lingkaran\ndescription: test\nsteps:\n  - if: { label: a, slot: channel, equals: whatsapp, then: b }\n  - if: { label: b, slot: channel, equals: whatsapp, then: a }\n  - end\n",
    );
    let o = start(&circle, &id_whatsapp());
    assert!(matches!(&o.actions[1], FlowAction::Handoff { reason } if reason.contains("loop")));
    assert_eq!(left(&o), Some(LeaveReason::HandedOff));
}

#[test]
fn while_a_lookup_runs_a_question_is_answered_and_other_text_waits() {
    let orders = flow(DEMO_ORDERS);
    let ctx = ctx(ChannelKind::Webchat, Locale::Id);
    let o = next(&orders, start(&orders, &ctx), text("KN-1002"), &ctx);
    let q = next(&orders, o.clone(), text("berapa lama pengiriman?"), &ctx);
    assert_eq!(
        q.actions,
        [FlowAction::AnswerFromKnowledge {
            question: "berapa lama pengiriman?".to_owned()
        }]
    );
    assert_eq!(q.run, o.run);
    let ok = next(&orders, o.clone(), text("ok"), &ctx);
    assert!(ok.actions.is_empty());
    assert_eq!(ok.run, o.run);
}
