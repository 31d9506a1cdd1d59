//! Each tenant's flow documents (YAML, checked before they get here), and the flow a
//! conversation is in (read with its turn batch, written in its turn's commit).

use sqlx::Row;

use super::{Store, StoreError};

/// One stored flow document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFlow {
    /// Tenant slug.
    pub tenant_id: String,
    /// The flow's name (its document's `name`).
    pub name: String,
    /// The YAML as it was written.
    pub source: String,
    /// Who stored it (`api`, `cli`, `demo`, a staff email).
    pub updated_by: String,
    /// When, Unix ms.
    pub updated_at: i64,
}

impl Store {
    /// Stores (or replaces) the tenant's flow `name`. `true` when it replaced one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn put_flow(
        &self,
        tenant_id: &str,
        name: &str,
        source: &str,
        author: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let existed =
            sqlx::query("SELECT 1 AS one FROM tenant_flows WHERE tenant_id = $1 AND name = $2")
                .bind(tenant_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        sqlx::query(
            "INSERT INTO tenant_flows (tenant_id, name, source, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO UPDATE SET \
             source = excluded.source, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(super::storable(source).into_owned())
        .bind(author)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed)
    }

    /// Stores the tenant's flow `name` unless it has one by that name (seeding the demo's).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn put_flow_if_absent(
        &self,
        tenant_id: &str,
        name: &str,
        source: &str,
        author: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO tenant_flows (tenant_id, name, source, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(source)
        .bind(author)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(inserted.rows_affected() > 0)
    }

    /// Deletes the tenant's flow `name`; `false` when there was none. Conversations in it leave
    /// it at their next message (the run no longer fits a flow).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn delete_flow(&self, tenant_id: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM tenant_flows WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(&self.write)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The tenant's flows, by name.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn flows_of(&self, tenant_id: &str) -> Result<Vec<StoredFlow>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, name, source, updated_by, updated_at FROM tenant_flows \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(stored_flow).collect()
    }

    /// Every tenant's flows (the live registry's reload).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn all_flows(&self) -> Result<Vec<StoredFlow>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, name, source, updated_by, updated_at FROM tenant_flows \
             ORDER BY tenant_id, name",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(stored_flow).collect()
    }

    /// The flow run a conversation is in (JSON) and its tags, tenant-scoped.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn conversation_flow(
        &self,
        tenant_id: &str,
        conversation_id: &str,
    ) -> Result<(Option<String>, Vec<String>), StoreError> {
        let row = sqlx::query(
            "SELECT flow_run, tags FROM conversations WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else {
            return Ok((None, Vec::new()));
        };
        let tags: Option<String> = row.try_get("tags")?;
        Ok((row.try_get("flow_run")?, tags_of(tags.as_deref())))
    }
}

fn stored_flow(row: &sqlx::any::AnyRow) -> Result<StoredFlow, StoreError> {
    Ok(StoredFlow {
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        source: row.try_get("source")?,
        updated_by: row.try_get("updated_by")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The `tags` column: a JSON array; unreadable or NULL is none.
pub(super) fn tags_of(column: Option<&str>) -> Vec<String> {
    column
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// Inside a turn's commit: stores the conversation's flow run (`None`: it left the flow) and
/// adds `tags` to its tags.
pub(super) async fn on_turn(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    conversation_id: &str,
    run: Option<&Option<String>>,
    tags: &[String],
) -> Result<(), StoreError> {
    if let Some(run) = run {
        sqlx::query("UPDATE conversations SET flow_run = $1 WHERE id = $2 AND tenant_id = $3")
            .bind(run.as_deref())
            .bind(conversation_id)
            .bind(tenant_id)
            .execute(&mut **tx)
            .await?;
    }
    if !tags.is_empty() {
        let current: Option<String> =
            sqlx::query("SELECT tags FROM conversations WHERE id = $1 AND tenant_id = $2")
                .bind(conversation_id)
                .bind(tenant_id)
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| r.try_get("tags"))
                .transpose()?
                .flatten();
        let mut all = tags_of(current.as_deref());
        for tag in tags {
            if !all.contains(tag) {
                all.push(tag.clone());
            }
        }
        let json = serde_json::to_string(&all).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query("UPDATE conversations SET tags = $1 WHERE id = $2 AND tenant_id = $3")
            .bind(json)
            .bind(conversation_id)
            .bind(tenant_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
