//! What the owner pages read and change: unanswered questions, the owner's own answers (the
//! tenant's owner FAQ document) and the golden question set. Every statement is scoped by
//! tenant.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// The tenant's open (neither answered nor dismissed) unanswered questions, newest
    /// first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn open_unanswered(
        &self,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<flows::unanswered::Asked>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, query, conversation_id, created_at FROM unanswered_questions \
             WHERE tenant_id = $1 AND resolved_at IS NULL ORDER BY id DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(flows::unanswered::Asked {
                    id: r.try_get("id")?,
                    query: r.try_get("query")?,
                    conversation_id: r.try_get("conversation_id")?,
                    at_ms: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Marks the tenant's unanswered questions `ids` resolved (`answered` or `dismissed`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn resolve_unanswered(
        &self,
        tenant_id: &str,
        ids: &[i64],
        resolution: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE unanswered_questions SET resolved_at = $1, resolution = $2 \
                 WHERE tenant_id = $3 AND id = $4 AND resolved_at IS NULL",
            )
            .bind(now)
            .bind(resolution)
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Keeps one of the owner's answers; returns all of the tenant's, oldest first, as
    /// `(question, answer)` (the rows of the owner FAQ document).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn add_owner_answer(
        &self,
        tenant_id: &str,
        question: &str,
        answer: &str,
        staff_id: &str,
        now: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query(
            "INSERT INTO owner_answers (tenant_id, question, answer, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant_id)
        .bind(question)
        .bind(answer)
        .bind(staff_id)
        .bind(now)
        .execute(&self.write)
        .await?;
        let rows = sqlx::query(
            "SELECT question, answer FROM owner_answers WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("question")?, r.try_get("answer")?)))
            .collect()
    }

    /// Adds (or replaces, by its query) a golden question: one line of the `sapa kb eval`
    /// JSONL format.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn put_golden(
        &self,
        tenant_id: &str,
        query: &str,
        case_json: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO golden_questions (tenant_id, query, case_json, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, query) DO UPDATE SET case_json = excluded.case_json",
        )
        .bind(tenant_id)
        .bind(query)
        .bind(case_json)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The tenant's golden set, as JSONL lines, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn golden(&self, tenant_id: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT case_json FROM golden_questions WHERE tenant_id = $1 ORDER BY id")
                .bind(tenant_id)
                .fetch_all(&self.read)
                .await?;
        rows.iter()
            .map(|r| r.try_get("case_json").map_err(StoreError::from))
            .collect()
    }
}
