//! Versioned bot settings (stored as JSON; `crate::bot` owns their shape). The highest
//! version of a tenant is live; publishing also updates the tenant's instructions and locale
//! in the same transaction.

use sqlx::Row;

use super::{Store, StoreError, now_ms};

/// One published version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotVersion {
    /// 1, 2, …
    pub version: i64,
    /// The settings (JSON).
    pub settings: String,
    /// Who published it (an email, or `sapa.toml`).
    pub author: String,
    /// E.g. "restored from version 2".
    pub note: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// The regression check's report at publish (JSON; `crate::regression` owns its shape),
    /// when one ran.
    pub regression: Option<String>,
}

impl Store {
    /// Publishes `settings` as the tenant's next version, with the regression report that
    /// cleared it; its instructions and locale become the tenant's at once. Returns the
    /// version.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    #[allow(clippy::too_many_arguments)]
    pub async fn publish_bot(
        &self,
        tenant_id: &str,
        settings: &str,
        instructions: &str,
        locale: &str,
        author: &str,
        note: Option<&str>,
        regression: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write.begin().await?;
        let next: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM bot_versions WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("next")?;
        sqlx::query(
            "INSERT INTO bot_versions (tenant_id, version, settings, author, note, created_at, regression) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant_id)
        .bind(next)
        .bind(settings)
        .bind(author)
        .bind(note)
        .bind(now_ms())
        .bind(regression)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE tenants SET instructions = $1, locale = $2 WHERE id = $3")
            .bind(instructions)
            .bind(locale)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM bot_drafts WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// The tenant's live version, if it has any.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn live_bot(&self, tenant_id: &str) -> Result<Option<BotVersion>, StoreError> {
        let row = sqlx::query(
            "SELECT version, settings, author, note, created_at, regression FROM bot_versions \
             WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(tenant_id)
        .fetch_optional(&self.write)
        .await?;
        row.as_ref().map(version_of).transpose()
    }

    /// Every tenant's live settings, as `(tenant, settings JSON)`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn live_bot_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.tenant_id, v.settings FROM bot_versions v WHERE v.version = \
             (SELECT MAX(w.version) FROM bot_versions w WHERE w.tenant_id = v.tenant_id)",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tenant_id")?, r.try_get("settings")?)))
            .collect()
    }

    /// The tenant's versions, newest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn bot_versions(&self, tenant_id: &str) -> Result<Vec<BotVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, settings, author, note, created_at, regression FROM bot_versions \
             WHERE tenant_id = $1 ORDER BY version DESC LIMIT 200",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(version_of).collect()
    }

    /// One of the tenant's versions.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn bot_version(
        &self,
        tenant_id: &str,
        version: i64,
    ) -> Result<Option<BotVersion>, StoreError> {
        let row = sqlx::query(
            "SELECT version, settings, author, note, created_at, regression FROM bot_versions \
             WHERE tenant_id = $1 AND version = $2",
        )
        .bind(tenant_id)
        .bind(version)
        .fetch_optional(&self.write)
        .await?;
        row.as_ref().map(version_of).transpose()
    }

    /// Makes the live version's instructions and locale the tenant's again (after the
    /// configuration was applied at start).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn reapply_bot(
        &self,
        tenant_id: &str,
        instructions: &str,
        locale: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tenants SET instructions = $1, locale = $2 WHERE id = $3")
            .bind(instructions)
            .bind(locale)
            .bind(tenant_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The tenant's draft (settings JSON), if one is saved.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn bot_draft(&self, tenant_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT settings FROM bot_drafts WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&self.write)
            .await?;
        Ok(row.map(|r| r.try_get("settings")).transpose()?)
    }

    /// Saves the tenant's draft.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn put_bot_draft(
        &self,
        tenant_id: &str,
        settings: &str,
        author: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO bot_drafts (tenant_id, settings, author, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, author = excluded.author, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(settings)
        .bind(author)
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

fn version_of(r: &sqlx::any::AnyRow) -> Result<BotVersion, StoreError> {
    Ok(BotVersion {
        version: r.try_get("version")?,
        settings: r.try_get("settings")?,
        author: r.try_get("author")?,
        note: r.try_get("note")?,
        created_at_ms: r.try_get("created_at")?,
        regression: r.try_get("regression")?,
    })
}
