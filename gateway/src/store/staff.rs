//! Staff accounts, set-password links, console sessions, pending two-factor logins and the
//! audit log. Every lookup is scoped by tenant or by a token hash that was issued under one.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

/// One staff member (never the password hash outside this module's callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    /// `stf_…`.
    pub id: String,
    /// Tenant slug.
    pub tenant_id: String,
    /// Login email (lowercase).
    pub email: String,
    /// `owner` or `agent`.
    pub role: String,
    /// WhatsApp number for login codes (E.164).
    pub whatsapp: Option<String>,
    /// Telegram chat for login codes.
    pub telegram_chat_id: Option<i64>,
    /// Unix ms; set when disabled.
    pub disabled_at_ms: Option<i64>,
    /// Unix ms; logins refused until then.
    pub locked_until_ms: Option<i64>,
    /// Whether a password is set.
    pub has_password: bool,
}

/// What a login attempt needs: the member and their password hash.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    /// The member.
    pub member: StaffMember,
    /// argon2id PHC string, if set.
    pub password_hash: Option<String>,
}

/// A live console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    /// The member.
    pub member: StaffMember,
    /// SHA-256 of the session's CSRF token.
    pub csrf_hash: String,
}

const COLUMNS: &str = "s.id, s.tenant_id, s.email, s.role, s.whatsapp, s.telegram_chat_id, s.disabled_at, \
     s.locked_until, s.password_hash";

fn member_of(row: &AnyRow) -> Result<StaffMember, StoreError> {
    Ok(StaffMember {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        email: row.try_get("email")?,
        role: row.try_get("role")?,
        whatsapp: row.try_get("whatsapp")?,
        telegram_chat_id: row.try_get("telegram_chat_id")?,
        disabled_at_ms: row.try_get("disabled_at")?,
        locked_until_ms: row.try_get("locked_until")?,
        has_password: row.try_get::<Option<String>, _>("password_hash")?.is_some(),
    })
}

impl Store {
    /// Adds a staff member; `false` when the tenant already has that email.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; also when the tenant does not exist.
    pub async fn add_staff(
        &self,
        member: &StaffMember,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO staff (id, tenant_id, email, role, password_hash, whatsapp, telegram_chat_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id, email) DO NOTHING",
        )
        .bind(&member.id)
        .bind(&member.tenant_id)
        .bind(&member.email)
        .bind(&member.role)
        .bind(password_hash)
        .bind(member.whatsapp.as_deref())
        .bind(member.telegram_chat_id)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// The tenant's staff, by email.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn staff(&self, tenant_id: &str) -> Result<Vec<StaffMember>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM staff s WHERE s.tenant_id = $1 ORDER BY s.email"
        ))
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(member_of)
        .collect()
    }

    /// The tenant's member with `email`, with the password hash, for a login.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn staff_login(
        &self,
        tenant_id: &str,
        email: &str,
    ) -> Result<Option<LoginAttempt>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM staff s WHERE s.tenant_id = $1 AND s.email = $2"
        ))
        .bind(tenant_id)
        .bind(email)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| -> Result<LoginAttempt, StoreError> {
            Ok(LoginAttempt {
                member: member_of(&r)?,
                password_hash: r.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    /// Counts a failed login; at `max_failures` the account locks until `lock_until`.
    /// Returns whether it is locked now.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn staff_login_failed(
        &self,
        staff_id: &str,
        max_failures: i64,
        lock_until: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "UPDATE staff SET \
             locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END, \
             failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END \
             WHERE id = $1 RETURNING locked_until",
        )
        .bind(staff_id)
        .bind(max_failures)
        .bind(lock_until)
        .fetch_optional(&self.write)
        .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<i64>, _>("locked_until")? == Some(lock_until),
            None => false,
        })
    }

    /// Clears the failure count after a successful password.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn staff_login_succeeded(&self, staff_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE staff SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(staff_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Disables (or re-enables) the tenant's member `email`; `false` when there is none.
    /// Disabling ends their sessions.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn set_staff_disabled(
        &self,
        tenant_id: &str,
        email: &str,
        disabled_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let changed =
            sqlx::query("UPDATE staff SET disabled_at = $1 WHERE tenant_id = $2 AND email = $3")
                .bind(disabled_at)
                .bind(tenant_id)
                .bind(email)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if disabled_at.is_some() {
            sqlx::query(
                "DELETE FROM staff_sessions WHERE tenant_id = $1 AND staff_id IN \
                 (SELECT id FROM staff WHERE tenant_id = $1 AND email = $2)",
            )
            .bind(tenant_id)
            .bind(email)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Stores a set-password link for the member (its token's hash), valid until `expires_at`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn add_staff_link(
        &self,
        staff_id: &str,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO staff_links (token_hash, staff_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(staff_id)
        .bind(expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Uses a set-password link once: sets the password of its member, ends their sessions and
    /// clears a lock. `None` when the link is unknown, used or expired.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn use_staff_link(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<StaffMember>, StoreError> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "UPDATE staff_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING staff_id",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let staff_id: String = row.try_get("staff_id")?;
        sqlx::query(
            "UPDATE staff SET password_hash = $1, failed_logins = 0, locked_until = NULL WHERE id = $2",
        )
        .bind(password_hash)
        .bind(&staff_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM staff_sessions WHERE staff_id = $1")
            .bind(&staff_id)
            .execute(&mut *tx)
            .await?;
        let member = sqlx::query(&format!("SELECT {COLUMNS} FROM staff s WHERE s.id = $1"))
            .bind(&staff_id)
            .fetch_one(&mut *tx)
            .await?;
        let member = member_of(&member)?;
        tx.commit().await?;
        Ok(Some(member))
    }

    /// Remembers that `challenge_id` is the second factor of a login of `staff_id`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn add_login_challenge(
        &self,
        challenge_id: &str,
        staff_id: &str,
        tenant_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO staff_login_challenges (challenge_id, staff_id, tenant_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(challenge_id)
        .bind(staff_id)
        .bind(tenant_id)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The member whose login `challenge_id` completes.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn login_challenge(
        &self,
        challenge_id: &str,
    ) -> Result<Option<StaffMember>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM staff_login_challenges c JOIN staff s ON s.id = c.staff_id \
             AND s.tenant_id = c.tenant_id WHERE c.challenge_id = $1"
        ))
        .bind(challenge_id)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| member_of(&r)).transpose()
    }

    /// Starts a session for the member.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn add_staff_session(
        &self,
        member: &StaffMember,
        token_hash: &str,
        csrf_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO staff_sessions (token_hash, staff_id, tenant_id, csrf_hash, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(token_hash)
        .bind(&member.id)
        .bind(&member.tenant_id)
        .bind(csrf_hash)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The live session with this token: not idle since `idle_since`, of an enabled member.
    /// Touches it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn staff_session(
        &self,
        token_hash: &str,
        idle_since: i64,
        now: i64,
    ) -> Result<Option<StaffSession>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, t.csrf_hash, t.last_seen_at FROM staff_sessions t \
             JOIN staff s ON s.id = t.staff_id AND s.tenant_id = t.tenant_id \
             WHERE t.token_hash = $1 AND s.disabled_at IS NULL"
        ))
        .bind(token_hash)
        .fetch_optional(&self.write)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let last_seen: i64 = row.try_get("last_seen_at")?;
        if last_seen < idle_since {
            sqlx::query("DELETE FROM staff_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(&self.write)
                .await?;
            return Ok(None);
        }
        if now - last_seen > 60_000 {
            sqlx::query("UPDATE staff_sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(token_hash)
                .execute(&self.write)
                .await?;
        }
        Ok(Some(StaffSession {
            member: member_of(&row)?,
            csrf_hash: row.try_get("csrf_hash")?,
        }))
    }

    /// Ends a session.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn end_staff_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM staff_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Appends to the tenant's audit log.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn audit(
        &self,
        tenant_id: &str,
        staff_id: Option<&str>,
        action: &str,
        detail: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, staff_id, action, detail, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant_id)
        .bind(staff_id)
        .bind(action)
        .bind(detail)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The tenant's latest audit entries, newest first: `(action, staff_id, detail, at)`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn audit_log(
        &self,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, Option<String>, Option<String>, i64)>, StoreError> {
        sqlx::query(
            "SELECT action, staff_id, detail, created_at FROM audit_log WHERE tenant_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("action")?,
                r.try_get("staff_id")?,
                r.try_get("detail")?,
                r.try_get("created_at")?,
            ))
        })
        .collect()
    }
}
