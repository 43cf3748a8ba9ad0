//! The embedded backend: SQLite in one file.

use crate::{
    AccountRow, AutochargeAttempt, AutochargeOutcome, AutochargeSettings, CommitmentRow, EntryKind,
    EntryRow, IdempotencyBegin, KeyCredentials, KeyRow, NewEntry, OrgRow, Posted, Store,
    StoreError, StoreResult, StoredResponse, UsageRow, key_status_text, org_status_text,
};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, query};

/// Rows per multi-row statement: at most 7 variables each, well under
/// SQLite's limit of 32,766 bound variables per statement.
const STATEMENT_ROWS: usize = 1000;
use std::collections::{BTreeMap, HashMap};
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

const ORG_COLUMNS: &str =
    "id, name, status, plan, cycle_anchor, pay_as_you_go, created_at, updated_at";
const KEY_COLUMNS: &str = "id, org_id, name, products, status, expires_at, secret_hash, \
     previous_secret_hash, previous_secret_expires_at, created_at, updated_at, revoked_at, quotas, credentials";

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

    /// Inserts many organizations and keys in one transaction: for seeding
    /// benchmarks and imports, where one fsync per row would take minutes.
    pub async fn insert_many(&self, orgs: &[OrgRow], keys: &[KeyRow]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for org in orgs {
            insert_org(org).execute(&mut *tx).await?;
        }
        for key in keys {
            insert_key(key)?.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Posts a batch with multi-row statements; `None` (and nothing written)
    /// when some entry's reference already exists.
    async fn post_batch(&self, entries: &[NewEntry]) -> StoreResult<Option<Vec<Posted>>> {
        let now = entries.iter().map(|e| e.created_at.0).max().unwrap_or(0);
        let mut orgs: Vec<&str> = Vec::new();
        for e in entries {
            if !orgs.contains(&e.org_id.as_str()) {
                orgs.push(e.org_id.as_str());
            }
        }
        let mut tx = self.pool.begin().await?;
        // Every statement is split so it binds fewer variables than SQLite
        // allows (32,766), whatever the batch size: all in one transaction.
        for chunk in orgs.chunks(STATEMENT_ROWS) {
            let mut ensure =
                QueryBuilder::<Sqlite>::new("INSERT INTO accounts (org_id, updated_at) ");
            ensure.push_values(chunk, |mut row, org| {
                row.push_bind(*org).push_bind(now);
            });
            ensure.push(" ON CONFLICT (org_id) DO NOTHING");
            ensure.build().execute(&mut *tx).await?;
        }

        let mut balances: HashMap<String, i64> = HashMap::new();
        for chunk in orgs.chunks(STATEMENT_ROWS) {
            let mut read = QueryBuilder::<Sqlite>::new(
                "SELECT org_id, balance FROM accounts WHERE org_id IN (",
            );
            let mut list = read.separated(", ");
            for org in chunk {
                list.push_bind(*org);
            }
            read.push(")");
            for row in read.build().fetch_all(&mut *tx).await? {
                balances.insert(row.try_get("org_id")?, row.try_get("balance")?);
            }
        }
        let mut after = Vec::with_capacity(entries.len());
        for e in entries {
            let balance = balances.entry(e.org_id.as_str().to_owned()).or_insert(0);
            *balance = balance
                .checked_add(e.amount)
                .ok_or_else(|| corrupt("balance", "overflow"))?;
            after.push(*balance);
        }
        let rows: Vec<(&NewEntry, &i64)> = entries.iter().zip(&after).collect();
        let mut written = 0u64;
        for chunk in rows.chunks(STATEMENT_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO ledger (org_id, kind, amount, reference, detail, balance_after, created_at) ",
            );
            insert.push_values(chunk, |mut row, (e, balance_after)| {
                row.push_bind(e.org_id.as_str())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.amount)
                    .push_bind(&e.reference)
                    .push_bind(&e.detail)
                    .push_bind(**balance_after)
                    .push_bind(e.created_at.0);
            });
            insert.push(" ON CONFLICT (org_id, reference) DO NOTHING");
            written += insert.build().execute(&mut *tx).await?.rows_affected();
        }
        if written != entries.len() as u64 {
            tx.rollback().await?;
            return Ok(None);
        }
        for chunk in orgs.chunks(STATEMENT_ROWS) {
            let mut update =
                QueryBuilder::<Sqlite>::new("UPDATE accounts SET balance = CASE org_id");
            for org in chunk {
                update
                    .push(" WHEN ")
                    .push_bind(*org)
                    .push(" THEN ")
                    .push_bind(balances[*org]);
            }
            update
                .push(" END, updated_at = ")
                .push_bind(now)
                .push(" WHERE org_id IN (");
            let mut list = update.separated(", ");
            for org in chunk {
                list.push_bind(*org);
            }
            update.push(")");
            update.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Some(
            after
                .into_iter()
                .map(|balance_after| Posted::Written { balance_after })
                .collect(),
        ))
    }

    /// Posts entry by entry, skipping duplicates; used when a batch holds one.
    async fn post_one_by_one(&self, entries: &[NewEntry]) -> StoreResult<Vec<Posted>> {
        let mut tx = self.pool.begin().await?;
        let mut results = Vec::with_capacity(entries.len());
        for e in entries {
            // The account row exists before its first entry.
            query("INSERT INTO accounts (org_id, updated_at) VALUES (?, ?) ON CONFLICT (org_id) DO NOTHING")
                .bind(e.org_id.as_str())
                .bind(e.created_at.0)
                .execute(&mut *tx)
                .await?;
            let inserted = query(
                "INSERT INTO ledger (org_id, kind, amount, reference, detail, balance_after, created_at) \
                 SELECT ?1, ?2, ?3, ?4, ?5, balance + ?3, ?6 FROM accounts WHERE org_id = ?1 \
                 ON CONFLICT (org_id, reference) DO NOTHING",
            )
            .bind(e.org_id.as_str())
            .bind(e.kind.as_str())
            .bind(e.amount)
            .bind(&e.reference)
            .bind(&e.detail)
            .bind(e.created_at.0)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                results.push(Posted::Duplicate);
                continue;
            }
            let row = query("UPDATE accounts SET balance = balance + ?, updated_at = ? WHERE org_id = ? RETURNING balance")
                .bind(e.amount)
                .bind(e.created_at.0)
                .bind(e.org_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            results.push(Posted::Written {
                balance_after: row.try_get("balance")?,
            });
        }
        tx.commit().await?;
        Ok(results)
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
        cycle_anchor: row
            .try_get::<Option<i64>, _>("cycle_anchor")?
            .map(UnixMillis),
        pay_as_you_go: row.try_get::<i64, _>("pay_as_you_go")? != 0,
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
        quotas: quotas_from(row.try_get("quotas")?)?,
        credentials: serde_json::from_str(row.try_get("credentials")?)
            .map_err(|e| corrupt("key credentials", e))?,
    })
}

fn quotas_from(text: &str) -> StoreResult<BTreeMap<String, u64>> {
    serde_json::from_str(text).map_err(|e| corrupt("quotas", e))
}

fn quotas_text(quotas: &BTreeMap<String, u64>) -> StoreResult<String> {
    serde_json::to_string(quotas).map_err(|e| corrupt("quotas", e))
}

fn commitment_from_row(row: &SqliteRow) -> StoreResult<CommitmentRow> {
    Ok(CommitmentRow {
        id: row.try_get("id")?,
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        quotas: quotas_from(row.try_get("quotas")?)?,
        starts_at: UnixMillis(row.try_get("starts_at")?),
        ends_at: UnixMillis(row.try_get("ends_at")?),
        created_at: UnixMillis(row.try_get("created_at")?),
    })
}

fn default_account(org: &OrgId) -> AccountRow {
    AccountRow::new(org.clone())
}

fn account_from_row(row: &SqliteRow) -> StoreResult<AccountRow> {
    let thresholds: &str = row.try_get("budget_thresholds")?;
    Ok(AccountRow {
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        balance: row.try_get("balance")?,
        credit_limit: row.try_get("credit_limit")?,
        daily_spend_limit: row.try_get("daily_spend_limit")?,
        budget: row.try_get("budget")?,
        budget_thresholds: serde_json::from_str(thresholds)
            .map_err(|e| corrupt("thresholds", e))?,
        autocharge: AutochargeSettings {
            enabled: row.try_get::<i64, _>("autocharge_enabled")? != 0,
            threshold: row.try_get("autocharge_threshold")?,
            amount: row.try_get("autocharge_amount")?,
            monthly_cap: row.try_get("autocharge_monthly_cap")?,
            customer: row.try_get("payment_customer")?,
            payment_method: row.try_get("payment_method")?,
            failures: u32::try_from(row.try_get::<i64, _>("autocharge_failures")?).unwrap_or(0),
            disabled_reason: row.try_get("autocharge_disabled_reason")?,
        },
        payment_action_required: row.try_get::<i64, _>("payment_action_required")? != 0,
    })
}

fn entry_from_row(row: &SqliteRow) -> StoreResult<EntryRow> {
    let kind: &str = row.try_get("kind")?;
    Ok(EntryRow {
        id: row.try_get("id")?,
        balance_after: row.try_get("balance_after")?,
        entry: NewEntry {
            org_id: OrgId::from_stored(row.try_get("org_id")?),
            kind: EntryKind::parse(kind).ok_or_else(|| corrupt("ledger kind", kind))?,
            amount: row.try_get("amount")?,
            reference: row.try_get("reference")?,
            detail: row.try_get("detail")?,
            created_at: UnixMillis(row.try_get("created_at")?),
        },
    })
}

/// The INSERT of one organization, for `create_org` and `insert_many`.
fn insert_org(
    org: &OrgRow,
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'_>> {
    query(
        "INSERT INTO orgs (id, name, status, plan, cycle_anchor, pay_as_you_go, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(org.id.as_str())
    .bind(&org.name)
    .bind(org_status_text(org.status))
    .bind(&org.plan)
    .bind(org.cycle_anchor.map(|t| t.0))
    .bind(i64::from(org.pay_as_you_go))
    .bind(org.created_at.0)
    .bind(org.updated_at.0)
}

/// The INSERT of one key, for `create_key` and `insert_many`.
fn insert_key(
    key: &KeyRow,
) -> StoreResult<sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'_>>> {
    let products = serde_json::to_string(&key.products).map_err(|e| corrupt("products", e))?;
    let quotas = quotas_text(&key.quotas)?;
    let credentials =
        serde_json::to_string(&key.credentials).map_err(|e| corrupt("credentials", e))?;
    Ok(query(
            "INSERT INTO api_keys (id, org_id, name, products, status, expires_at, secret_hash, \
             previous_secret_hash, previous_secret_expires_at, created_at, updated_at, revoked_at, quotas, credentials) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(quotas)
        .bind(credentials))
}

fn to_i64(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| corrupt("counter", "exceeds i64"))
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
        insert_org(org)
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
        cycle_anchor: Option<UnixMillis>,
        now: UnixMillis,
    ) -> StoreResult<Option<OrgRow>> {
        query("UPDATE orgs SET plan = ?, cycle_anchor = ?, updated_at = ? WHERE id = ?")
            .bind(plan)
            .bind(cycle_anchor.map(|t| t.0))
            .bind(now.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.fetch_org(id.as_str()).await
    }

    async fn set_org_pay_as_you_go(
        &self,
        id: &OrgId,
        enabled: bool,
        now: UnixMillis,
    ) -> StoreResult<Option<OrgRow>> {
        query("UPDATE orgs SET pay_as_you_go = ?, updated_at = ? WHERE id = ?")
            .bind(i64::from(enabled))
            .bind(now.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.fetch_org(id.as_str()).await
    }

    async fn create_key(&self, key: &KeyRow) -> StoreResult<()> {
        insert_key(key)?
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

    async fn set_key_quotas(
        &self,
        id: &KeyId,
        quotas: &BTreeMap<String, u64>,
        now: UnixMillis,
    ) -> StoreResult<Option<KeyRow>> {
        query("UPDATE api_keys SET quotas = ?, updated_at = ? WHERE id = ?")
            .bind(quotas_text(quotas)?)
            .bind(now.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.fetch_key(id.as_str()).await
    }

    async fn set_key_credentials(
        &self,
        id: &KeyId,
        credentials: &KeyCredentials,
        now: UnixMillis,
    ) -> StoreResult<Option<KeyRow>> {
        let text = serde_json::to_string(credentials).map_err(|e| corrupt("credentials", e))?;
        let done = query("UPDATE api_keys SET credentials = ?, updated_at = ? WHERE id = ?")
            .bind(text)
            .bind(now.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.fetch_key(id.as_str()).await
    }

    async fn create_commitment(&self, c: &CommitmentRow) -> StoreResult<()> {
        query(
            "INSERT INTO commitments (id, org_id, quotas, starts_at, ends_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(c.org_id.as_str())
        .bind(quotas_text(&c.quotas)?)
        .bind(c.starts_at.0)
        .bind(c.ends_at.0)
        .bind(c.created_at.0)
        .execute(&self.pool)
        .await
        .map_err(|e| duplicate_or(e, &c.id))?;
        Ok(())
    }

    async fn list_commitments(&self, org: &OrgId) -> StoreResult<Vec<CommitmentRow>> {
        let rows = query("SELECT * FROM commitments WHERE org_id = ? ORDER BY starts_at, id")
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(commitment_from_row).collect()
    }

    async fn current_commitments(&self, now: UnixMillis) -> StoreResult<Vec<CommitmentRow>> {
        let rows = query("SELECT * FROM commitments WHERE ends_at > ? ORDER BY starts_at, id")
            .bind(now.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(commitment_from_row).collect()
    }

    async fn save_usage(&self, rows: &[UsageRow]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for row in rows {
            query(
                "INSERT INTO quota_usage (org_id, key_id, cycle_start, meter, used) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (org_id, key_id, cycle_start, meter) DO UPDATE SET used = excluded.used",
            )
            .bind(row.org_id.as_str())
            .bind(row.key_id.as_ref().map_or("", KeyId::as_str))
            .bind(row.cycle_start.0)
            .bind(&row.meter)
            .bind(to_i64(row.used)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn load_usage(&self, since: UnixMillis) -> StoreResult<Vec<UsageRow>> {
        let rows = query("SELECT org_id, key_id, cycle_start, meter, used FROM quota_usage WHERE cycle_start >= ?")
            .bind(since.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let key: String = row.try_get("key_id")?;
                Ok(UsageRow {
                    org_id: OrgId::from_stored(row.try_get("org_id")?),
                    key_id: (!key.is_empty()).then(|| KeyId::from_stored(key)),
                    cycle_start: UnixMillis(row.try_get("cycle_start")?),
                    meter: row.try_get("meter")?,
                    used: u64::try_from(row.try_get::<i64, _>("used")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn idempotency_begin(
        &self,
        org: &OrgId,
        key: &str,
        fingerprint: &[u8; 32],
        now: UnixMillis,
        locked_until: UnixMillis,
        expires_at: UnixMillis,
    ) -> StoreResult<IdempotencyBegin> {
        // One statement: insert, or take over a record that has expired or
        // whose holder's lock has lapsed. SQLite runs it under its write lock,
        // so of concurrent callers exactly one changes a row.
        let taken = query(
            "INSERT INTO idempotency (org_id, key, fingerprint, state, locked_until, expires_at, created_at) \
             VALUES (?1, ?2, ?3, 'in_flight', ?4, ?5, ?6) \
             ON CONFLICT (org_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, state = 'in_flight', \
                 locked_until = excluded.locked_until, expires_at = excluded.expires_at, status = NULL, \
                 headers = NULL, body = NULL, body_omitted = 0, created_at = excluded.created_at \
             WHERE idempotency.expires_at <= ?6 \
                OR (idempotency.state = 'in_flight' AND idempotency.locked_until <= ?6)",
        )
        .bind(org.as_str())
        .bind(key)
        .bind(&fingerprint[..])
        .bind(locked_until.0)
        .bind(expires_at.0)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(IdempotencyBegin::Started);
        }
        let row = query(
            "SELECT fingerprint, state, locked_until, status, headers, body, body_omitted \
             FROM idempotency WHERE org_id = ? AND key = ?",
        )
        .bind(org.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Purged between the two statements: report it busy; a retry starts afresh.
            return Ok(IdempotencyBegin::InFlight { locked_until: now });
        };
        let stored: Vec<u8> = row.try_get("fingerprint")?;
        if stored.as_slice() != &fingerprint[..] {
            return Ok(IdempotencyBegin::Mismatch);
        }
        if row.try_get::<&str, _>("state")? == "in_flight" {
            return Ok(IdempotencyBegin::InFlight {
                locked_until: UnixMillis(row.try_get("locked_until")?),
            });
        }
        let headers_text: Option<&str> = row.try_get("headers")?;
        let headers: Vec<(String, String)> = serde_json::from_str(headers_text.unwrap_or("[]"))
            .map_err(|e| corrupt("idempotency headers", e))?;
        let status: Option<i64> = row.try_get("status")?;
        Ok(IdempotencyBegin::Completed(StoredResponse {
            status: status.and_then(|s| u16::try_from(s).ok()).unwrap_or(500),
            headers,
            body: row
                .try_get::<Option<Vec<u8>>, _>("body")?
                .unwrap_or_default(),
            body_omitted: row.try_get::<i64, _>("body_omitted")? != 0,
        }))
    }

    async fn idempotency_complete(
        &self,
        org: &OrgId,
        key: &str,
        fingerprint: &[u8; 32],
        response: &StoredResponse,
        expires_at: UnixMillis,
    ) -> StoreResult<()> {
        let headers = serde_json::to_string(&response.headers)
            .map_err(|e| corrupt("idempotency headers", e))?;
        query(
            "UPDATE idempotency SET state = 'completed', status = ?, headers = ?, body = ?, \
             body_omitted = ?, expires_at = ? \
             WHERE org_id = ? AND key = ? AND fingerprint = ? AND state = 'in_flight'",
        )
        .bind(i64::from(response.status))
        .bind(headers)
        .bind(&response.body)
        .bind(i64::from(response.body_omitted))
        .bind(expires_at.0)
        .bind(org.as_str())
        .bind(key)
        .bind(&fingerprint[..])
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn idempotency_release(
        &self,
        org: &OrgId,
        key: &str,
        fingerprint: &[u8; 32],
    ) -> StoreResult<()> {
        query(
            "DELETE FROM idempotency \
             WHERE org_id = ? AND key = ? AND fingerprint = ? AND state = 'in_flight'",
        )
        .bind(org.as_str())
        .bind(key)
        .bind(&fingerprint[..])
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn idempotency_purge(&self, now: UnixMillis) -> StoreResult<u64> {
        let done = query(
            "DELETE FROM idempotency \
             WHERE expires_at <= ? OR (state = 'in_flight' AND locked_until <= ?)",
        )
        .bind(now.0)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn get_account(&self, org: &OrgId) -> StoreResult<AccountRow> {
        let row = query("SELECT * FROM accounts WHERE org_id = ?")
            .bind(org.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => account_from_row(&row),
            None => Ok(default_account(org)),
        }
    }

    async fn all_accounts(&self) -> StoreResult<Vec<AccountRow>> {
        let rows = query("SELECT * FROM accounts")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn set_account_settings(
        &self,
        a: &AccountRow,
        now: UnixMillis,
    ) -> StoreResult<AccountRow> {
        let thresholds =
            serde_json::to_string(&a.budget_thresholds).map_err(|e| corrupt("thresholds", e))?;
        query(
            "INSERT INTO accounts (org_id, credit_limit, daily_spend_limit, budget, budget_thresholds, \
                 autocharge_enabled, autocharge_threshold, autocharge_amount, autocharge_monthly_cap, \
                 payment_customer, payment_method, autocharge_failures, autocharge_disabled_reason, \
                 payment_action_required, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (org_id) DO UPDATE SET credit_limit = excluded.credit_limit, \
                 daily_spend_limit = excluded.daily_spend_limit, budget = excluded.budget, \
                 budget_thresholds = excluded.budget_thresholds, \
                 autocharge_enabled = excluded.autocharge_enabled, \
                 autocharge_threshold = excluded.autocharge_threshold, \
                 autocharge_amount = excluded.autocharge_amount, \
                 autocharge_monthly_cap = excluded.autocharge_monthly_cap, \
                 payment_customer = excluded.payment_customer, payment_method = excluded.payment_method, \
                 autocharge_failures = excluded.autocharge_failures, \
                 autocharge_disabled_reason = excluded.autocharge_disabled_reason, \
                 payment_action_required = excluded.payment_action_required, \
                 updated_at = excluded.updated_at",
        )
        .bind(a.org_id.as_str())
        .bind(a.credit_limit)
        .bind(a.daily_spend_limit)
        .bind(a.budget)
        .bind(thresholds)
        .bind(i64::from(a.autocharge.enabled))
        .bind(a.autocharge.threshold)
        .bind(a.autocharge.amount)
        .bind(a.autocharge.monthly_cap)
        .bind(&a.autocharge.customer)
        .bind(&a.autocharge.payment_method)
        .bind(i64::from(a.autocharge.failures))
        .bind(&a.autocharge.disabled_reason)
        .bind(i64::from(a.payment_action_required))
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        self.get_account(&a.org_id).await
    }

    async fn post_entries(&self, entries: &[NewEntry]) -> StoreResult<Vec<Posted>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // Fast path: a handful of statements for the whole batch. A batch
        // that holds a duplicate reference falls back to entry by entry, so
        // each entry's balance_after stays exact.
        if let Some(results) = self.post_batch(entries).await? {
            return Ok(results);
        }
        self.post_one_by_one(entries).await
    }

    async fn list_entries(
        &self,
        org: &OrgId,
        after_id: i64,
        limit: u32,
    ) -> StoreResult<Vec<EntryRow>> {
        let rows = query("SELECT * FROM ledger WHERE org_id = ? AND id > ? ORDER BY id LIMIT ?")
            .bind(org.as_str())
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn find_entry(&self, org: &OrgId, reference: &str) -> StoreResult<Option<EntryRow>> {
        let row = query("SELECT * FROM ledger WHERE org_id = ? AND reference = ?")
            .bind(org.as_str())
            .bind(reference)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn sums_since(
        &self,
        kind: EntryKind,
        since: UnixMillis,
    ) -> StoreResult<Vec<(OrgId, i64)>> {
        let rows = query(
            "SELECT org_id, SUM(amount) AS total FROM ledger WHERE kind = ? AND created_at >= ? GROUP BY org_id",
        )
        .bind(kind.as_str())
        .bind(since.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    OrgId::from_stored(row.try_get("org_id")?),
                    row.try_get("total")?,
                ))
            })
            .collect()
    }

    async fn charged_between(
        &self,
        org: &OrgId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> StoreResult<(i64, [u64; 5])> {
        let row = query(
            "SELECT COALESCE(-SUM(amount), 0) AS spent, \
               COALESCE(SUM(json_extract(detail, '$.units.request')), 0) AS request, \
               COALESCE(SUM(json_extract(detail, '$.units.order_sent')), 0) AS order_sent, \
               COALESCE(SUM(json_extract(detail, '$.units.order_filled')), 0) AS order_filled, \
               COALESCE(SUM(json_extract(detail, '$.units.compute_ms')), 0) AS compute_ms, \
               COALESCE(SUM(json_extract(detail, '$.units.bytes_out')), 0) AS bytes_out \
             FROM ledger WHERE org_id = ? AND kind = 'charge' AND created_at >= ? AND created_at < ?",
        )
        .bind(org.as_str())
        .bind(from.0)
        .bind(to.0)
        .fetch_one(&self.pool)
        .await?;
        let unit = |name: &str| -> StoreResult<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok((
            row.try_get("spent")?,
            [
                unit("request")?,
                unit("order_sent")?,
                unit("order_filled")?,
                unit("compute_ms")?,
                unit("bytes_out")?,
            ],
        ))
    }

    async fn autocharge_begin(
        &self,
        org: &OrgId,
        attempt: &AutochargeAttempt,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let done = query(
            "INSERT INTO autocharges (idempotency_key, org_id, amount, customer, payment_method, \
                 currency, state, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&attempt.key)
        .bind(org.as_str())
        .bind(attempt.amount)
        .bind(&attempt.customer)
        .bind(&attempt.payment_method)
        .bind(&attempt.currency)
        .bind(now.0)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn autocharge_finish(
        &self,
        key: &str,
        state: &str,
        payment_id: Option<&str>,
        error: Option<&str>,
        now: UnixMillis,
    ) -> StoreResult<()> {
        query("UPDATE autocharges SET state = ?, payment_id = ?, error = ?, updated_at = ? WHERE idempotency_key = ?")
            .bind(state)
            .bind(payment_id)
            .bind(error)
            .bind(now.0)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn autocharge_pending(
        &self,
        org: &OrgId,
    ) -> StoreResult<Option<(AutochargeAttempt, UnixMillis)>> {
        let row = query(
            "SELECT idempotency_key, amount, customer, payment_method, currency, created_at \
             FROM autocharges WHERE org_id = ? AND state = 'pending' ORDER BY created_at LIMIT 1",
        )
        .bind(org.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let attempt = AutochargeAttempt {
                key: r.try_get("idempotency_key")?,
                amount: r.try_get("amount")?,
                customer: r.try_get("customer")?,
                payment_method: r.try_get("payment_method")?,
                currency: r.try_get("currency")?,
            };
            Ok((attempt, UnixMillis(r.try_get("created_at")?)))
        })
        .transpose()
    }

    async fn autocharge_outcome(
        &self,
        org: &OrgId,
        outcome: AutochargeOutcome<'_>,
        now: UnixMillis,
    ) -> StoreResult<AccountRow> {
        // Every SET expression reads the row as it was before the update.
        let update = match outcome {
            AutochargeOutcome::Succeeded => query(
                "UPDATE accounts SET autocharge_failures = 0, updated_at = ? WHERE org_id = ?",
            )
            .bind(now.0),
            AutochargeOutcome::ActionRequired => query(
                "UPDATE accounts SET payment_action_required = 1, updated_at = ? WHERE org_id = ?",
            )
            .bind(now.0),
            AutochargeOutcome::Failed {
                reason,
                disable_after,
            } => query(
                "UPDATE accounts SET autocharge_failures = autocharge_failures + 1, \
                   autocharge_enabled = CASE WHEN autocharge_failures + 1 >= ?1 THEN 0 \
                     ELSE autocharge_enabled END, \
                   autocharge_disabled_reason = CASE WHEN autocharge_failures + 1 >= ?1 \
                     THEN (autocharge_failures + 1) || ' consecutive failures, the last: ' || ?2 \
                     ELSE autocharge_disabled_reason END, \
                   updated_at = ?3 WHERE org_id = ?4",
            )
            .bind(i64::from(disable_after))
            .bind(reason)
            .bind(now.0),
        };
        update.bind(org.as_str()).execute(&self.pool).await?;
        self.get_account(org).await
    }

    async fn autocharge_stats(&self, org: &OrgId, since: UnixMillis) -> StoreResult<(u64, i64)> {
        let row = query(
            "SELECT COUNT(*) AS attempts, \
               COALESCE(SUM(CASE WHEN state IN ('pending', 'succeeded') AND created_at >= ? THEN amount ELSE 0 END), 0) AS recent \
             FROM autocharges WHERE org_id = ?",
        )
        .bind(since.0)
        .bind(org.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok((
            u64::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
            row.try_get("recent")?,
        ))
    }

    async fn add_notification(
        &self,
        org: &OrgId,
        kind: &str,
        reference: &str,
        detail: &str,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let done = query(
            "INSERT INTO notifications (org_id, kind, reference, detail, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (org_id, reference) DO NOTHING",
        )
        .bind(org.as_str())
        .bind(kind)
        .bind(reference)
        .bind(detail)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_notifications(
        &self,
        org: &OrgId,
    ) -> StoreResult<Vec<(String, String, String, UnixMillis)>> {
        let rows = query(
            "SELECT kind, reference, detail, created_at FROM notifications WHERE org_id = ? ORDER BY id DESC",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("kind")?,
                    row.try_get("reference")?,
                    row.try_get("detail")?,
                    UnixMillis(row.try_get("created_at")?),
                ))
            })
            .collect()
    }

    async fn all_orgs(&self) -> StoreResult<Vec<OrgRow>> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM orgs");
        let rows = query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(org_from_row).collect()
    }

    async fn scan_keys(&self, visit: &mut (dyn FnMut(KeyRow) + Send)) -> StoreResult<()> {
        use futures_util::TryStreamExt;
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys");
        let mut rows = query(&sql).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            visit(key_from_row(&row)?);
        }
        Ok(())
    }

    async fn all_keys(&self) -> StoreResult<Vec<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys");
        let rows = query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }
}
