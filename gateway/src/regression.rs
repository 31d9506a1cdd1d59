//! The regression check before publishing: the tenant's golden questions (rows of
//! `sapa kb eval`'s JSONL format) run against the draft and against the live version, through
//! the same turn path as "try it" (so each version's handoff keywords, instructions and answer
//! style apply). Nothing is stored or sent.
//!
//! A row expects a document (`doc`) or `"abstain": true`. An expected document passes when
//! the turn answered (a passage, or the model's answer) and the document is among the passages
//! at or above the answer threshold; with a model configured, the answer must also cite it.
//! An abstain row passes when the turn did not answer from the knowledge base.

use serde::{Deserialize, Serialize};

use crate::bot::BotSettings;
use crate::workers::TurnContext;
use crate::workers::answer::{Tried, try_answer};

/// One golden question as far as the check reads it.
#[derive(Debug, Clone, Deserialize)]
struct Case {
    query: String,
    #[serde(default)]
    doc: Option<String>,
    #[serde(default)]
    abstain: bool,
}

/// Passed and failed questions of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Questions that passed.
    pub passed: usize,
    /// Questions that failed.
    pub failed: usize,
}

/// A question the draft fails and the live version passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The golden question.
    pub question: String,
    /// The expected document, or `abstain`.
    pub expected: String,
    /// What the draft did instead.
    pub got: String,
    /// The draft's turn kind (`handoff`, `no_match`, `llm_clarify`, `passage`, …), for the
    /// page to say it in the owner's language.
    #[serde(default)]
    pub got_kind: String,
}

/// The check's result, as the console shows it and the version stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The draft's result.
    pub draft: Tally,
    /// The live version's result.
    pub live: Tally,
    /// Questions failing on the draft but passing live.
    pub newly_failing: Vec<Failure>,
}

/// Kinds of "try it" answers that answered from the knowledge base.
const ANSWERED: [&str; 2] = ["passage", "llm_answer"];

/// Runs the golden rows `cases` (JSON lines; unreadable ones are skipped) for `tenant_id`
/// against `draft` and `live`.
pub async fn run(
    ctx: &TurnContext,
    tenant_id: &str,
    draft: &BotSettings,
    live: &BotSettings,
    cases: &[String],
) -> Report {
    let versions = [draft, live].map(|s| {
        (
            s.compile(),
            flows::Locale::parse(&s.locale).unwrap_or_default(),
        )
    });
    let with_model = ctx.llm.is_some();
    let cases: Vec<Case> = cases
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let mut report = Report::default();
    // Several questions at once, and both versions of one question together: with a model
    // each is a model call, and the whole check must fit in one request.
    for group in cases.chunks(CONCURRENCY) {
        let judged = futures::future::join_all(
            group
                .iter()
                .map(|case| judge_both(ctx, tenant_id, &versions, case, with_model)),
        )
        .await;
        for (case, (on_draft, on_live, draft_kind)) in group.iter().zip(judged) {
            count(&mut report.draft, &on_draft);
            count(&mut report.live, &on_live);
            if let (Err(got), Ok(())) = (on_draft, on_live) {
                report.newly_failing.push(Failure {
                    question: case.query.clone(),
                    expected: expected(case),
                    got,
                    got_kind: draft_kind.to_owned(),
                });
            }
        }
    }
    report
}

/// `case` on the draft and on the live version.
async fn judge_both(
    ctx: &TurnContext,
    tenant_id: &str,
    versions: &[(crate::bot::Live, flows::Locale); 2],
    case: &Case,
    with_model: bool,
) -> (Result<(), String>, Result<(), String>, &'static str) {
    let [(draft, draft_locale), (live, live_locale)] = versions;
    let (on_draft, on_live) = futures::join!(
        try_answer(ctx, tenant_id, draft, *draft_locale, &case.query),
        try_answer(ctx, tenant_id, live, *live_locale, &case.query),
    );
    (
        judge(case, &on_draft, with_model),
        judge(case, &on_live, with_model),
        on_draft.kind,
    )
}

/// Golden questions checked at once.
const CONCURRENCY: usize = 8;

fn count(tally: &mut Tally, result: &Result<(), String>) {
    if result.is_ok() {
        tally.passed += 1;
    } else {
        tally.failed += 1;
    }
}

fn expected(case: &Case) -> String {
    match &case.doc {
        Some(doc) if !case.abstain => doc.clone(),
        _ => "abstain".to_owned(),
    }
}

/// `Ok` when `tried` is what `case` expects, else what happened instead.
fn judge(case: &Case, tried: &Tried, with_model: bool) -> Result<(), String> {
    let answered = ANSWERED.contains(&tried.kind);
    let doc = match &case.doc {
        Some(doc) if !case.abstain => doc,
        _ => {
            return if answered {
                Err(format!(
                    "answered from {} instead of abstaining",
                    tried
                        .retrieved_docs
                        .first()
                        .map_or("a passage", String::as_str)
                ))
            } else {
                Ok(())
            };
        }
    };
    if !answered {
        return Err(match tried.kind {
            "handoff" | "llm_handoff" => "handed off to a human instead of answering".to_owned(),
            "no_match" => "abstained: no passage above the answer threshold".to_owned(),
            "llm_clarify" => {
                "asked a clarifying question instead of answering (llm_clarify)".to_owned()
            }
            other => format!("no answer ({other})"),
        });
    }
    if !tried.retrieved_docs.iter().any(|d| d == doc) {
        return Err(format!(
            "answered from {} ({doc} is not among the passages above the answer threshold)",
            tried
                .retrieved_docs
                .first()
                .map_or("nothing", String::as_str)
        ));
    }
    if with_model && !tried.cited_docs.iter().any(|d| d == doc) {
        return Err(format!(
            "the answer cites {} but not {doc}",
            if tried.cited_docs.is_empty() {
                "no passage".to_owned()
            } else {
                tried.cited_docs.join(", ")
            }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tried(kind: &'static str, retrieved: &[&str], cited: &[&str]) -> Tried {
        Tried {
            reply: String::new(),
            citations: vec![],
            kind,
            retrieved_docs: retrieved.iter().map(|d| (*d).to_owned()).collect(),
            cited_docs: cited.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn a_case_passes_only_with_the_expected_document_or_an_abstain() {
        let doc: Case = serde_json::from_str(r#"{"query": "q", "doc": "menu.md"}"#).unwrap();
        let abstain: Case = serde_json::from_str(r#"{"query": "q", "abstain": true}"#).unwrap();
        let menu = tried("passage", &["menu.md"], &["menu.md"]);
        assert_eq!(judge(&doc, &menu, false), Ok(()));
        assert_eq!(judge(&doc, &menu, true), Ok(()));
        assert!(
            judge(&doc, &tried("handoff", &[], &[]), false)
                .unwrap_err()
                .contains("handed off")
        );
        assert!(
            judge(&doc, &tried("passage", &["faq.md"], &["faq.md"]), false)
                .unwrap_err()
                .contains("faq.md")
        );
        assert!(
            judge(&doc, &tried("llm_answer", &["menu.md"], &[]), true)
                .unwrap_err()
                .contains("cites no passage")
        );
        assert_eq!(judge(&abstain, &tried("no_match", &[], &[]), false), Ok(()));
        assert!(judge(&abstain, &menu, false).is_err());
    }
}
