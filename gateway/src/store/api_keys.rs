//! Tenant API keys: only the public prefix and a SHA-256 of the whole key are stored.

use sqlx::Row;

use super::{Store, StoreError, now_ms};
use crate::api_key::{Scope, scopes_from_column, scopes_to_column};

/// What authentication needs: the key's tenant and stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    /// The public prefix (the part between `sapa_` and the secret).
    pub prefix: String,
    /// The tenant the key acts for.
    pub tenant_id: String,
    /// Hex SHA-256 of the whole key.
    pub key_hash: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// When the key was last accepted (to the minute), Unix milliseconds; `None`: never.
    pub last_used_at_ms: Option<i64>,
}

impl StoredApiKey {
    /// True when its "last used" time is over a minute old at `now` (or never set), so
    /// recording a use is worth a write.
    pub fn last_use_is_stale(&self, now: i64) -> bool {
        self.last_used_at_ms
            .is_none_or(|at| at < now - USE_RESOLUTION_MS)
    }
}

/// How precisely a key's last use is kept: at most one write per key per minute.
const USE_RESOLUTION_MS: i64 = 60_000;

/// A key as listed to its tenant (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The public prefix.
    pub prefix: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds; `None` while the key is active.
    pub revoked_at_ms: Option<i64>,
    /// When the key was last accepted (to the minute), Unix milliseconds; `None`: never.
    pub last_used_at_ms: Option<i64>,
    /// What the key may do.
    pub scopes: Vec<Scope>,
}

impl Store {
    /// Stores a new key for `tenant_id` with every scope.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; also when the prefix is taken or the tenant does not exist.
    pub async fn create_api_key(
        &self,
        tenant_id: &str,
        prefix: &str,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        self.create_scoped_api_key(tenant_id, prefix, key_hash, &[])
            .await
    }

    /// Stores a new key for `tenant_id` limited to `scopes` (empty: every scope).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; also when the prefix is taken or the tenant does not exist.
    pub async fn create_scoped_api_key(
        &self,
        tenant_id: &str,
        prefix: &str,
        key_hash: &str,
        scopes: &[Scope],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (prefix, tenant_id, key_hash, created_at, scopes) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(prefix)
        .bind(tenant_id)
        .bind(key_hash)
        .bind(now_ms())
        .bind(scopes_to_column(scopes))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The active (not revoked) key with this prefix, whatever its tenant: the prefix is what an
    /// incoming key names, and the caller verifies the hash before trusting the tenant.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn active_api_key(&self, prefix: &str) -> Result<Option<StoredApiKey>, StoreError> {
        let row = sqlx::query(
            "SELECT prefix, tenant_id, key_hash, scopes, last_used_at FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
        )
        .bind(prefix)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| -> Result<StoredApiKey, StoreError> {
            Ok(StoredApiKey {
                prefix: r.try_get("prefix")?,
                tenant_id: r.try_get("tenant_id")?,
                key_hash: r.try_get("key_hash")?,
                scopes: scopes_from_column(r.try_get::<Option<String>, _>("scopes")?.as_deref()),
                last_used_at_ms: r.try_get("last_used_at")?,
            })
        })
        .transpose()
    }

    /// The tenant's keys, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT prefix, created_at, revoked_at, last_used_at, scopes FROM api_keys WHERE tenant_id = $1 \
             ORDER BY created_at, prefix",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKeyInfo {
                    prefix: r.try_get("prefix")?,
                    created_at_ms: r.try_get("created_at")?,
                    revoked_at_ms: r.try_get("revoked_at")?,
                    last_used_at_ms: r.try_get("last_used_at")?,
                    scopes: scopes_from_column(
                        r.try_get::<Option<String>, _>("scopes")?.as_deref(),
                    ),
                })
            })
            .collect()
    }

    /// Revokes the tenant's key with this prefix; false when the tenant has no such active key
    /// (another tenant's prefix included).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn revoke_api_key(&self, tenant_id: &str, prefix: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND prefix = $3 \
             AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(tenant_id)
        .bind(prefix)
        .execute(&self.write)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Records that the key with this prefix was accepted at `now`; writes at most once a
    /// minute per key, so busy keys cost no write per request.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn touch_api_key(&self, prefix: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 WHERE prefix = $2 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(prefix)
        .bind(now - USE_RESOLUTION_MS)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
