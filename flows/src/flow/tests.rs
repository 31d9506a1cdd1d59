#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const DEMO_ORDERS: &str = include_str!("../../../demo/flows/cek-pesanan.yaml");
const DEMO_RESERVATION: &str = include_str!("../../../demo/flows/reservasi.yaml");

fn errors(source: &str) -> Vec<FlowError> {
    parse(source).expect_err("the document has mistakes")
}

#[test]
fn the_demo_flows_pass_their_checks() {
    let orders = parse(DEMO_ORDERS).unwrap();
    assert_eq!(orders.name, "cek-pesanan");
    assert_eq!(orders.steps.len(), 6);
    assert!(matches!(orders.steps[0], Step::Ask(ref a) if a.slot == "order"));
    assert_eq!(orders.steps.last(), Some(&Step::End));
    let reservation = parse(DEMO_RESERVATION).unwrap();
    assert!(
        matches!(reservation.steps[0], Step::Ask(ref a) if a.kind == SlotType::Choice && a.choices.len() == 3)
    );
}

#[test]
fn a_misspelt_key_names_its_line_column_and_the_likely_word() {
    let source = "name: x\ntriggers:\n  keywords: [halo]\nsteps:\n  - ask:\n      slot: nama\n      promt: { id: Nama?, en: Name? }\n";
    let found = errors(source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].line, found[0].column), (7, 7), "{found:?}");
    assert!(
        found[0].message.contains("unknown field `promt`"),
        "{}",
        found[0].message
    );
    assert!(
        found[0].message.ends_with("(did you mean `prompt`?)"),
        "{}",
        found[0].message
    );
}

#[test]
fn a_misspelt_step_type_gets_a_suggestion() {
    let source = "name: x\ntriggers:\n  keywords: [halo]\nsteps:\n  - sey:\n      text: { id: Halo, en: Hello }\n";
    let found = errors(source);
    assert_eq!(found[0].line, 5, "{found:?}");
    assert!(
        found[0].message.contains("(did you mean `say`?)"),
        "{}",
        found[0].message
    );
}

#[test]
fn broken_yaml_says_where() {
    let found = errors("name: x\nsteps: [\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].line >= 2, "{found:?}");
}

#[test]
fn semantic_mistakes_are_all_reported_where_they_are() {
    let source = "\
name: Cek Pesanan
triggers:
  keywords: [cek]
steps:
  - ask:
      label: nomor
      slot: order
      prompt: { id: Nomor?, en: Number? }
  - if:
      slot: ordr
      equals: x
      then: nomr
  - say:
      label: nomor
      text: { id: \"{{ slots.status }}\", en: \"\" }
  - call_webhook:
      url: ftp://example.com
      timeout: 90s
  - end
";
    let found = errors(source);
    let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
    let has = |line: usize, text: &str| {
        found
            .iter()
            .any(|e| e.line == line && e.message.contains(text))
    };
    assert!(has(1, "name `Cek Pesanan`"), "{messages:#?}");
    assert!(
        has(10, "unknown slot `ordr`") && has(10, "did you mean `order`?"),
        "{messages:#?}"
    );
    assert!(
        has(12, "no step has the label `nomr` (did you mean `nomor`?)"),
        "{messages:#?}"
    );
    assert!(has(14, "label `nomor` is already used"), "{messages:#?}");
    assert!(has(15, "unknown slot `status`"), "{messages:#?}");
    assert!(
        has(15, "text.en: write the sentence in this language too"),
        "{messages:#?}"
    );
    assert!(has(17, "url `ftp://example.com`"), "{messages:#?}");
    assert!(has(18, "timeout `90s`"), "{messages:#?}");
    // In document order.
    let lines: Vec<usize> = found.iter().map(|e| e.line).collect();
    assert!(lines.is_sorted(), "{lines:?}");
}

#[test]
fn choices_patterns_and_durations_are_checked() {
    let source = "\
name: x
description: test
steps:
  - ask:
      slot: size
      type: choice
      prompt: { id: Ukuran?, en: Size? }
  - ask:
      slot: code
      pattern: '([a-z'
      prompt: { id: Kode?, en: Code? }
  - schedule_follow_up:
      after: 30 days
      text: { id: Halo, en: Hello }
  - tag:
      tags: []
";
    let found = errors(source);
    let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        found
            .iter()
            .any(|e| e.line == 4 && e.message.contains("needs 1 to 10 choices")),
        "{messages:#?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.line == 10 && e.message.contains("not a valid regular expression")),
        "{messages:#?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.line == 13 && e.message.contains("up to 7 days")),
        "{messages:#?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.line == 16 && e.message.contains("one or more tags")),
        "{messages:#?}"
    );
}

#[test]
fn a_flow_nothing_starts_is_refused() {
    let found = errors("name: x\nsteps:\n  - end\n");
    assert!(
        found[0].message.starts_with("nothing starts this flow"),
        "{found:?}"
    );
}

#[test]
fn a_broken_template_is_refused() {
    let source =
        "name: x\ndescription: d\nsteps:\n  - say:\n      text: { id: \"{{ slots.x \", en: ok }\n";
    let found = errors(source);
    assert!(
        found
            .iter()
            .any(|e| e.line == 5 && e.message.contains("not a valid template")),
        "{found:?}"
    );
}

#[test]
fn the_shipped_json_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/flow.schema.json");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, json_schema()).unwrap();
    }
    let shipped = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        shipped,
        json_schema(),
        "flows/flow.schema.json is stale: regenerate it with `UPDATE_SCHEMA=1 cargo test -p flows schema`"
    );
    let schema: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["$defs"]["Step"].is_object());
}
