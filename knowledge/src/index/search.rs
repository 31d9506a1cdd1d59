//! Searching: BM25 over the tenant's statistics re-ranked by coverage ([`Knowledge::search`]),
//! and its fusion with the dense index by reciprocal rank ([`Knowledge::search_with`]).

use std::collections::HashMap;

use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{Searcher, TantivyDocument, Term};

use super::schema::{chunk_from_doc, stored_str};
use super::stats::TenantStatistics;
use super::{Knowledge, check_tenant};
use crate::analyzer;
use crate::document::{Chunk, ScoredChunk};
use crate::embed::METRIC_EMBED_FALLBACKS_TOTAL;
use crate::error::KnowledgeError;
use crate::relevance::{self, Fuzzy};
use crate::retriever::{QueryVector, SearchQuery};

/// Candidates fetched from BM25 before re-ranking by coverage (and from the dense index).
pub(crate) const MIN_CANDIDATES: usize = 20;
/// The `k` of reciprocal rank fusion: `score = Σ 1 / (RRF_K + rank)`.
pub const RRF_K: f32 = 60.0;

impl Knowledge {
    /// Best chunks first, at most `limit`, only from `tenant`, by BM25 alone. Every query
    /// carries the tenant filter. A question without informative words, or none of whose
    /// words the tenant's documents contain, returns no chunks.
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    pub fn search(
        &self,
        tenant: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KnowledgeError> {
        self.search_with(tenant, &SearchQuery::text(query), limit)
    }

    /// Embeds a question for [`Knowledge::search_with`]. `None` without an embedder, for a
    /// blank question, or when the call fails (logged and counted in
    /// `sapa_embedding_fallbacks_total`): the search then uses BM25 alone.
    pub async fn embed_query(&self, query: &str) -> Option<QueryVector> {
        let embedder = self.embedder.as_ref()?;
        if query.trim().is_empty() {
            return None;
        }
        match embedder.embed(&[query.to_owned()]).await {
            Ok(mut vectors) if vectors.len() == 1 => Some(QueryVector {
                model: embedder.model().to_owned(),
                values: vectors.swap_remove(0),
            }),
            Ok(_) => None,
            Err(error) => {
                metrics::counter!(METRIC_EMBED_FALLBACKS_TOTAL, "stage" => "query").increment(1);
                tracing::warn!(%error, "question embedding failed; searching with BM25 alone");
                None
            }
        }
    }

    /// Best chunks first, at most `limit`, only from `tenant`.
    ///
    /// Without a query vector this is BM25 re-ranked by coverage ([`Knowledge::search`]).
    /// With one, the BM25 candidates and the tenant's most similar chunk vectors (cosine, exact)
    /// are fused by reciprocal rank (`score = Σ 1/(60 + rank)` over the lists a chunk is in).
    ///
    /// Relevance rule (what decides answering): a chunk's `relevance` is the larger of its
    /// lexical coverage and its *semantic relevance*, a piecewise-linear map of its cosine that
    /// reaches [`crate::DEFAULT_MIN_RELEVANCE`] exactly at the configured `min_similarity`
    /// (0 → 0, `min_similarity` → 0.5, 1 → 1). So a chunk found only by its vector makes a
    /// question answerable only when its cosine is at least `min_similarity`; below it, dense
    /// retrieval changes the order but never turns an abstention into an answer. A question
    /// without informative words still returns nothing.
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    pub fn search_with(
        &self,
        tenant: &str,
        query: &SearchQuery<'_>,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KnowledgeError> {
        check_tenant(tenant)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let terms = analyzer::analyze_query(query.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = limit.max(MIN_CANDIDATES);
        let (plan, mut lexical) = self.lexical(tenant, query.text, &terms, candidates)?;
        let dense = match query.vector {
            Some(vector) => {
                self.inner
                    .dense
                    .search(tenant, &vector.model, &vector.values, candidates)
            }
            None => Vec::new(),
        };
        let dense: Vec<(String, f32)> = dense.into_iter().filter(|(_, c)| *c > 0.0).collect();
        if dense.is_empty() {
            lexical.truncate(limit);
            return Ok(lexical);
        }

        // Reciprocal rank fusion over the two lists.
        let rrf = |rank: usize| 1.0 / (RRF_K + rank as f32 + 1.0);
        let mut fused: HashMap<String, ScoredChunk> = HashMap::new();
        for (rank, mut hit) in lexical.into_iter().enumerate() {
            hit.score = rrf(rank);
            fused.insert(hit.chunk.id.clone(), hit);
        }
        let searcher = self.inner.reader.searcher();
        for (rank, (chunk_id, cosine)) in dense.into_iter().enumerate() {
            let semantic = semantic_relevance(cosine, self.min_similarity);
            let dense_score = self.dense_weight * rrf(rank);
            if let Some(hit) = fused.get_mut(&chunk_id) {
                hit.score += dense_score;
                hit.relevance = hit.relevance.max(semantic);
                continue;
            }
            let Some((chunk, coverage)) =
                self.chunk_by_id(&searcher, tenant, &chunk_id, plan.as_ref())?
            else {
                continue;
            };
            fused.insert(
                chunk_id,
                ScoredChunk {
                    chunk,
                    score: dense_score,
                    relevance: coverage.max(semantic),
                },
            );
        }
        let mut results: Vec<ScoredChunk> = fused.into_values().collect();
        results.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| b.relevance.total_cmp(&a.relevance))
                .then_with(|| a.chunk.id.cmp(&b.chunk.id))
        });
        results.truncate(limit);
        Ok(results)
    }

    /// One of the tenant's chunks by id, with its coverage of `plan`; `None` when it is gone
    /// or belongs to another tenant.
    fn chunk_by_id(
        &self,
        searcher: &Searcher,
        tenant: &str,
        chunk_id: &str,
        plan: Option<&relevance::QueryPlan>,
    ) -> Result<Option<(Chunk, f32)>, KnowledgeError> {
        let fields = self.inner.fields;
        let query = TermQuery::new(
            Term::from_field_text(fields.chunk_id, chunk_id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&query, &TopDocs::with_limit(1))?;
        let Some((_, address)) = top.into_iter().next() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(address)?;
        if stored_str(&doc, fields.tenant) != Some(tenant) {
            return Ok(None);
        }
        let coverage = plan.map_or(0.0, |plan| {
            let tokens = stored_str(&doc, fields.body).unwrap_or_default();
            let title_len = doc
                .get_first(fields.title_tokens)
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            plan.coverage(tokens, title_len as usize)
        });
        Ok(Some((chunk_from_doc(&doc, &fields)?, coverage)))
    }

    /// The BM25 candidates re-ranked by coverage, best first (not truncated), and the query
    /// plan when the tenant has documents.
    fn lexical(
        &self,
        tenant: &str,
        query: &str,
        terms: &[analyzer::QueryTerm],
        candidates: usize,
    ) -> Result<(Option<relevance::QueryPlan>, Vec<ScoredChunk>), KnowledgeError> {
        let query_language = analyzer::detect_language(query);
        let inner = &self.inner;
        let fields = inner.fields;
        let searcher = inner.reader.searcher();
        let plan = {
            let tenants = inner.tenants_read();
            let Some(state) = tenants.get(tenant) else {
                return Ok((None, Vec::new()));
            };
            if state.chunks == 0 {
                return Ok((None, Vec::new()));
            }
            relevance::QueryPlan::new(terms, state, &Fuzzy::default())
        };
        if !plan.has_known_terms() {
            return Ok((Some(plan), Vec::new()));
        }

        let mut groups: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for group in &plan.groups {
            let disjuncts: Vec<Box<dyn Query>> = group
                .members
                .iter()
                .filter(|m| plan.doc_freq.contains_key(&m.term))
                .map(|m| {
                    let term = TermQuery::new(
                        Term::from_field_text(fields.body, &m.term),
                        IndexRecordOption::WithFreqs,
                    );
                    Box::new(BoostQuery::new(Box::new(term), m.factor)) as Box<dyn Query>
                })
                .collect();
            if !disjuncts.is_empty() {
                groups.push((Occur::Should, Box::new(DisjunctionMaxQuery::new(disjuncts))));
            }
        }
        let tenant_filter = TermQuery::new(
            Term::from_field_text(fields.tenant, tenant),
            IndexRecordOption::Basic,
        );
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(tenant_filter), 0.0)),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(groups))),
        ]);
        let statistics = TenantStatistics {
            searcher: &searcher,
            body: fields.body,
            chunks: plan.chunks,
            tokens: plan.tokens,
            doc_freq: &plan.doc_freq,
        };
        let top = searcher.search_with_statistics_provider(
            &query,
            &TopDocs::with_limit(candidates),
            &statistics,
        )?;

        let best_bm25 = top.iter().map(|(score, _)| *score).fold(0.0f32, f32::max);
        let mut results = Vec::with_capacity(top.len());
        for (bm25, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            // Defense in depth: the filter above already guarantees this.
            if stored_str(&doc, fields.tenant) != Some(tenant) {
                continue;
            }
            let tokens = stored_str(&doc, fields.body).unwrap_or_default();
            let title_len = doc
                .get_first(fields.title_tokens)
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            let relevance = plan.coverage(tokens, title_len as usize);
            let same_language = query_language.is_some()
                && stored_str(&doc, fields.lang).and_then(analyzer::Language::from_code)
                    == query_language;
            let chunk = chunk_from_doc(&doc, &fields)?;
            let score =
                relevance::rank_score(bm25 / best_bm25.max(f32::EPSILON), relevance, same_language);
            results.push(ScoredChunk {
                chunk,
                score,
                relevance,
            });
        }
        results.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.chunk.id.cmp(&b.chunk.id))
        });
        Ok((Some(plan), results))
    }
}

/// Semantic relevance of a cosine: piecewise linear, 0 → 0, `min_similarity` →
/// [`crate::DEFAULT_MIN_RELEVANCE`], 1 → 1.
pub(crate) fn semantic_relevance(cosine: f32, min_similarity: f32) -> f32 {
    let mid = crate::DEFAULT_MIN_RELEVANCE;
    let cosine = cosine.clamp(0.0, 1.0);
    if cosine >= min_similarity {
        mid + (1.0 - mid) * (cosine - min_similarity) / (1.0 - min_similarity)
    } else {
        mid * cosine / min_similarity
    }
}

#[cfg(test)]
mod tests {
    use super::semantic_relevance;
    use crate::DEFAULT_MIN_RELEVANCE;

    #[test]
    fn semantic_relevance_reaches_the_answer_threshold_exactly_at_min_similarity() {
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(close(semantic_relevance(0.75, 0.75), DEFAULT_MIN_RELEVANCE));
        assert!(close(semantic_relevance(1.0, 0.75), 1.0));
        assert!(close(semantic_relevance(0.0, 0.75), 0.0));
        assert!(close(semantic_relevance(-0.3, 0.75), 0.0));
        assert!(semantic_relevance(0.749, 0.75) < DEFAULT_MIN_RELEVANCE);
        let mut last = -1.0;
        for step in 0..=100 {
            let r = semantic_relevance(step as f32 / 100.0, 0.6);
            assert!(r >= last, "not monotonic at {step}");
            last = r;
        }
    }
}
