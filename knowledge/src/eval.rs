//! Retrieval evaluation over a JSONL file of questions (see `tests/data/retrieval.jsonl`).
//!
//! Each line is `{"id", "query", "doc", "chunk_contains"}` for an answerable question, or
//! `{"id", "query", "abstain": true}` for one the knowledge base cannot answer. A retrieved chunk
//! is a hit when its document name is `doc` and its text contains `chunk_contains`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::{DEFAULT_MIN_RELEVANCE, QueryVector, Retriever, ScoredChunk, SearchQuery};

/// Results retrieved per question; MRR is computed over this depth.
pub const EVAL_DEPTH: usize = 10;

#[derive(Debug, Deserialize)]
struct Case {
    #[serde(default)]
    id: Option<String>,
    query: String,
    #[serde(default)]
    doc: Option<String>,
    #[serde(default)]
    chunk_contains: Option<String>,
    #[serde(default)]
    abstain: bool,
}

/// Retrieval quality over an evaluation file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Number of answerable questions.
    pub answerable: usize,
    /// Share of answerable questions whose first result is a hit.
    pub recall_at_1: f64,
    /// Share of answerable questions with a hit in the first five results.
    pub recall_at_5: f64,
    /// Mean reciprocal rank of the first hit within [`EVAL_DEPTH`] results.
    pub mrr: f64,
    /// Answerable questions whose best result falls under the relevance threshold, so the bot
    /// would not answer them.
    pub false_abstain: usize,
    /// Number of questions the knowledge base cannot answer.
    pub abstain_total: usize,
    /// Share of those with no result at or above the relevance threshold.
    pub abstain_accuracy: f64,
    /// The relevance threshold used.
    pub min_relevance: f32,
    /// Every question that was not answered perfectly, for tuning.
    pub misses: Vec<EvalMiss>,
}

/// A question that missed: answerable but not first (or under the threshold), or abstain but
/// answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalMiss {
    /// The case id (or its line number).
    pub id: String,
    /// The question.
    pub query: String,
    /// The expected document, for answerable questions.
    pub expected_doc: Option<String>,
    /// Rank of the first hit (1-based), if any within [`EVAL_DEPTH`].
    pub rank: Option<usize>,
    /// What went wrong.
    pub reason: String,
    /// The top three results: document name, last heading and relevance.
    pub top: Vec<(String, String, f32)>,
}

/// Runs the evaluation with [`DEFAULT_MIN_RELEVANCE`].
///
/// # Errors
/// A malformed line or a failed search.
pub fn run(k: &dyn Retriever, tenant: &str, jsonl: &str) -> Result<EvalReport, EvalError> {
    run_with_threshold(k, tenant, jsonl, DEFAULT_MIN_RELEVANCE)
}

/// Runs the evaluation with a given relevance threshold.
///
/// # Errors
/// A malformed line or a failed search.
pub fn run_with_threshold(
    k: &dyn Retriever,
    tenant: &str,
    jsonl: &str,
    min_relevance: f32,
) -> Result<EvalReport, EvalError> {
    run_hybrid(k, tenant, jsonl, min_relevance, &|_| None)
}

/// The questions of an evaluation file, in order (to embed them before [`run_hybrid`]).
///
/// # Errors
/// A malformed line.
pub fn queries(jsonl: &str) -> Result<Vec<String>, EvalError> {
    let mut out = Vec::new();
    for (number, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case: Case = serde_json::from_str(line).map_err(|source| EvalError::Parse {
            line: number + 1,
            source,
        })?;
        out.push(case.query);
    }
    Ok(out)
}

/// Runs the evaluation with hybrid retrieval: `vector` gives each question's embedding
/// (`None` searches that question by BM25 alone).
///
/// # Errors
/// A malformed line or a failed search.
pub fn run_hybrid(
    k: &dyn Retriever,
    tenant: &str,
    jsonl: &str,
    min_relevance: f32,
    vector: &dyn Fn(&str) -> Option<QueryVector>,
) -> Result<EvalReport, EvalError> {
    let mut answerable = 0usize;
    let (mut at_1, mut at_5, mut reciprocal, mut false_abstain) = (0usize, 0usize, 0.0f64, 0usize);
    let (mut abstain_total, mut abstain_correct) = (0usize, 0usize);
    let mut misses = Vec::new();
    for (number, line) in jsonl.lines().enumerate() {
        let line_number = number + 1;
        if line.trim().is_empty() {
            continue;
        }
        let case: Case = serde_json::from_str(line).map_err(|source| EvalError::Parse {
            line: line_number,
            source,
        })?;
        let id = case
            .id
            .clone()
            .unwrap_or_else(|| format!("line {line_number}"));
        let query_vector = vector(&case.query);
        let results = k.retrieve(
            tenant,
            &SearchQuery::hybrid(&case.query, query_vector.as_ref()),
            EVAL_DEPTH,
        )?;
        let top = summarize(&results);
        let best_relevance = results.iter().map(|r| r.relevance).fold(0.0f32, f32::max);
        if case.abstain {
            abstain_total += 1;
            if best_relevance < min_relevance {
                abstain_correct += 1;
            } else {
                misses.push(EvalMiss {
                    id,
                    query: case.query,
                    expected_doc: None,
                    rank: None,
                    reason: format!("should abstain, best relevance {best_relevance:.2}"),
                    top,
                });
            }
            continue;
        }
        let (Some(doc), Some(needle)) = (case.doc, case.chunk_contains) else {
            return Err(EvalError::Incomplete { line: line_number });
        };
        answerable += 1;
        let rank = results
            .iter()
            .position(|r| r.chunk.document_name == doc && r.chunk.text.contains(&needle))
            .map(|p| p + 1);
        if let Some(rank) = rank {
            reciprocal += 1.0 / rank as f64;
            if rank == 1 {
                at_1 += 1;
            }
            if rank <= 5 {
                at_5 += 1;
            }
        }
        let abstained = best_relevance < min_relevance;
        if abstained {
            false_abstain += 1;
        }
        if rank != Some(1) || abstained {
            let reason = match (rank, abstained) {
                (None, _) => "answer not retrieved".to_owned(),
                (Some(r), false) => format!("answer at rank {r}"),
                (Some(r), true) => format!(
                    "answer at rank {r} but best relevance {best_relevance:.2} is under the threshold"
                ),
            };
            misses.push(EvalMiss {
                id,
                query: case.query,
                expected_doc: Some(doc),
                rank,
                reason,
                top,
            });
        }
    }
    let share = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    Ok(EvalReport {
        answerable,
        recall_at_1: share(at_1, answerable),
        recall_at_5: share(at_5, answerable),
        mrr: if answerable == 0 {
            0.0
        } else {
            reciprocal / answerable as f64
        },
        false_abstain,
        abstain_total,
        abstain_accuracy: share(abstain_correct, abstain_total),
        min_relevance,
        misses,
    })
}

fn summarize(results: &[ScoredChunk]) -> Vec<(String, String, f32)> {
    results
        .iter()
        .take(3)
        .map(|r| {
            let heading = r.chunk.heading_path.last().cloned().unwrap_or_default();
            (r.chunk.document_name.clone(), heading, r.relevance)
        })
        .collect()
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| metric                         | value |")?;
        writeln!(f, "|--------------------------------|-------|")?;
        writeln!(
            f,
            "| answerable questions           | {:>5} |",
            self.answerable
        )?;
        writeln!(
            f,
            "| recall@1                       | {:.3} |",
            self.recall_at_1
        )?;
        writeln!(
            f,
            "| recall@5                       | {:.3} |",
            self.recall_at_5
        )?;
        writeln!(
            f,
            "| MRR@{EVAL_DEPTH:<2}                         | {:.3} |",
            self.mrr
        )?;
        writeln!(
            f,
            "| answerable under threshold     | {:>5} |",
            self.false_abstain
        )?;
        writeln!(
            f,
            "| abstain questions              | {:>5} |",
            self.abstain_total
        )?;
        writeln!(
            f,
            "| abstain accuracy               | {:.3} |",
            self.abstain_accuracy
        )?;
        writeln!(
            f,
            "| relevance threshold            | {:.3} |",
            self.min_relevance
        )?;
        if !self.misses.is_empty() {
            writeln!(f)?;
            writeln!(f, "misses:")?;
            for miss in &self.misses {
                writeln!(f, "- {} {:?}: {}", miss.id, miss.query, miss.reason)?;
                for (doc, heading, relevance) in &miss.top {
                    writeln!(f, "    {relevance:.2} {doc} > {heading}")?;
                }
            }
        }
        Ok(())
    }
}
