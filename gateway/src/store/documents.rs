//! When the tenant's knowledge documents were uploaded and last changed (the index keeps
//! their content, not dates). Every statement is scoped by tenant.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, StoreError};

/// When a document was first uploaded and last changed, Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentDates {
    /// First upload.
    pub created_at_ms: i64,
    /// Last upload that changed its content.
    pub updated_at_ms: i64,
}

impl Store {
    /// Records that the tenant's document `document_id` (named `name`) was written at `now`:
    /// a new row, or a new `updated_at` for a replaced document.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn record_document(
        &self,
        tenant_id: &str,
        document_id: &str,
        name: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO knowledge_documents (tenant_id, document_id, name, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (tenant_id, document_id) \
             DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(document_id)
        .bind(name)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Forgets the dates of the tenant's deleted document.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn forget_document(
        &self,
        tenant_id: &str,
        document_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM knowledge_documents WHERE tenant_id = $1 AND document_id = $2")
            .bind(tenant_id)
            .bind(document_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The dates of the tenant's documents, by document id (documents ingested before dates
    /// were kept, or by the CLI, have none).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn document_dates(
        &self,
        tenant_id: &str,
    ) -> Result<HashMap<String, DocumentDates>, StoreError> {
        let rows = sqlx::query(
            "SELECT document_id, created_at, updated_at FROM knowledge_documents WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("document_id")?,
                    DocumentDates {
                        created_at_ms: r.try_get("created_at")?,
                        updated_at_ms: r.try_get("updated_at")?,
                    },
                ))
            })
            .collect()
    }
}
