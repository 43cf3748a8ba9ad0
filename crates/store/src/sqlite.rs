//! The embedded backend: SQLite in one file.

use crate::{KeyRow, OrgRow, Store, StoreError, StoreResult, key_status_text, org_status_text};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, query};
use std::path::Path;
use std::time::Duration;
use tollgate_core::access::{KeyStatus, OrgStatus};
use tollgate_core::api_key::SecretHash;
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_core::time::UnixMillis;

/// SQLite store. Cheap to clone: the pool is shared.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const ORG_COLUMNS: &str = "id, name, status, plan, created_at, updated_at";
const KEY_COLUMNS: &str = "id, org_id, name, products, status, expires_at, secret_hash, \
     previous_secret_hash, previous_secret_expires_at, created_at, updated_at, revoked_at";

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and applies
    /// pending migrations. WAL journal, `synchronous=FULL`, foreign keys on.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    async fn fetch_org(&self, id: &str) -> StoreResult<Option<OrgRow>> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = ?");
        let row = query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(org_from_row).transpose()
    }

    async fn fetch_key(&self, id: &str) -> StoreResult<Option<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?");
        let row = query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(key_from_row).transpose()
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn org_from_row(row: &SqliteRow) -> StoreResult<OrgRow> {
    let status = match row.try_get::<&str, _>("status")? {
        "active" => OrgStatus::Active,
        "suspended" => OrgStatus::Suspended,
        other => return Err(corrupt("org status", other)),
    };
    Ok(OrgRow {
        id: OrgId::from_stored(row.try_get("id")?),
        name: row.try_get("name")?,
        status,
        plan: row.try_get("plan")?,
        created_at: UnixMillis(row.try_get("created_at")?),
        updated_at: UnixMillis(row.try_get("updated_at")?),
    })
}

fn hash_from(bytes: Option<Vec<u8>>) -> StoreResult<Option<SecretHash>> {
    bytes
        .map(|b| SecretHash::from_slice(&b).ok_or_else(|| corrupt("secret hash", "length")))
        .transpose()
}

fn key_from_row(row: &SqliteRow) -> StoreResult<KeyRow> {
    let status = match row.try_get::<&str, _>("status")? {
        "active" => KeyStatus::Active,
        "revoked" => KeyStatus::Revoked,
        other => return Err(corrupt("key status", other)),
    };
    let products: Vec<String> =
        serde_json::from_str(row.try_get("products")?).map_err(|e| corrupt("key products", e))?;
    let millis = |name: &str| -> StoreResult<Option<UnixMillis>> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(UnixMillis))
    };
    Ok(KeyRow {
        id: KeyId::from_stored(row.try_get("id")?),
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        name: row.try_get("name")?,
        products,
        status,
        expires_at: millis("expires_at")?,
        secret_hash: hash_from(Some(row.try_get("secret_hash")?))?
            .ok_or_else(|| corrupt("secret hash", "missing"))?,
        previous_secret_hash: hash_from(row.try_get("previous_secret_hash")?)?,
        previous_secret_expires_at: millis("previous_secret_expires_at")?,
        created_at: UnixMillis(row.try_get("created_at")?),
        updated_at: UnixMillis(row.try_get("updated_at")?),
        revoked_at: millis("revoked_at")?,
    })
}

fn duplicate_or(err: sqlx::Error, id: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(id.into()),
        _ => StoreError::Database(err),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_org(&self, org: &OrgRow) -> StoreResult<()> {
        query(
            "INSERT INTO orgs (id, name, status, plan, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(org_status_text(org.status))
        .bind(&org.plan)
        .bind(org.created_at.0)
        .bind(org.updated_at.0)
        .execute(&self.pool)
        .await
        .map_err(|e| duplicate_or(e, org.id.as_str()))?;
        Ok(())
    }

    async fn get_org(&self, id: &OrgId) -> StoreResult<Option<OrgRow>> {
        self.fetch_org(id.as_str()).await
    }

    async fn list_orgs(&self, after: Option<&OrgId>, limit: u32) -> StoreResult<Vec<OrgRow>> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id > ? ORDER BY id LIMIT ?");
        let rows = query(&sql)
            .bind(after.map_or("", OrgId::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(org_from_row).collect()
    }

    async fn set_org_status(
        &self,
        id: &OrgId,
        status: OrgStatus,
        now: UnixMillis,
    ) -> StoreResult<Option<OrgRow>> {
        query("UPDATE orgs SET status = ?, updated_at = ? WHERE id = ?")
            .bind(org_status_text(status))
            .bind(now.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.fetch_org(id.as_str()).await
    }

    async fn set_org_plan(
        &self,
        id: &OrgId,
        plan: Option<&str>,
        now: UnixMillis,
    ) -> StoreResult<Option<OrgRow>> {
        query("UPDATE orgs SET plan = ?, updated_at = ? WHERE id = ?")
            .bind(plan)
            .bind(now.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.fetch_org(id.as_str()).await
    }

    async fn create_key(&self, key: &KeyRow) -> StoreResult<()> {
        let products = serde_json::to_string(&key.products).map_err(|e| corrupt("products", e))?;
        query(
            "INSERT INTO api_keys (id, org_id, name, products, status, expires_at, secret_hash, \
             previous_secret_hash, previous_secret_expires_at, created_at, updated_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(key.id.as_str())
        .bind(key.org_id.as_str())
        .bind(&key.name)
        .bind(products)
        .bind(key_status_text(key.status))
        .bind(key.expires_at.map(|t| t.0))
        .bind(&key.secret_hash.0[..])
        .bind(key.previous_secret_hash.as_ref().map(|h| h.0.to_vec()))
        .bind(key.previous_secret_expires_at.map(|t| t.0))
        .bind(key.created_at.0)
        .bind(key.updated_at.0)
        .bind(key.revoked_at.map(|t| t.0))
        .execute(&self.pool)
        .await
        .map_err(|e| duplicate_or(e, key.id.as_str()))?;
        Ok(())
    }

    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<KeyRow>> {
        self.fetch_key(id.as_str()).await
    }

    async fn list_keys(&self, org: &OrgId) -> StoreResult<Vec<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = ? ORDER BY id");
        let rows = query(&sql).bind(org.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &KeyId, now: UnixMillis) -> StoreResult<Option<KeyRow>> {
        query(
            "UPDATE api_keys SET status = 'revoked', updated_at = ?, \
             revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        )
        .bind(now.0)
        .bind(now.0)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        self.fetch_key(id.as_str()).await
    }

    async fn rotate_key(
        &self,
        id: &KeyId,
        new_secret: SecretHash,
        previous_valid_until: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<Option<KeyRow>> {
        let done = query(
            "UPDATE api_keys SET previous_secret_hash = secret_hash, \
             previous_secret_expires_at = ?, secret_hash = ?, updated_at = ? \
             WHERE id = ? AND status = 'active'",
        )
        .bind(previous_valid_until.0)
        .bind(&new_secret.0[..])
        .bind(now.0)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.fetch_key(id.as_str()).await
    }

    async fn all_orgs(&self) -> StoreResult<Vec<OrgRow>> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM orgs");
        let rows = query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(org_from_row).collect()
    }

    async fn all_keys(&self) -> StoreResult<Vec<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys");
        let rows = query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }
}
