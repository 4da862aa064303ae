//! The shared store: PostgreSQL, for several bridge instances. Tables live in a schema of their
//! own (created on start; migrations run under an advisory lock, so instances starting together
//! migrate once). Claims use `FOR UPDATE SKIP LOCKED`: two instances never claim the same batch.

use std::str::FromStr;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::{Cell, MIGRATIONS, Param, Result, Row, StoreError};

#[derive(Debug, Clone)]
pub(super) struct Postgres {
    pool: Pool,
    /// `"schema".` for table names.
    s: String,
    schema: String,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("postgres: {e}"))
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Int(v) => v.to_sql(ty, out),
            Param::Text(v) => v.as_str().to_sql(ty, out),
            Param::Bool(v) => v.to_sql(ty, out),
            Param::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <&str as ToSql>::accepts(ty) || <bool as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

fn row(r: &tokio_postgres::Row) -> Result<Row> {
    let mut cells = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let cell = match *c.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Int)),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|n| Cell::Int(n.into()))),
            Type::BOOL => r.try_get::<_, Option<bool>>(i).map(|v| v.map(Cell::Bool)),
            _ => r.try_get::<_, Option<String>>(i).map(|v| v.map(Cell::Text)),
        }
        .map_err(err)?;
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

impl Postgres {
    pub(super) async fn open(url: &str, schema: &str) -> Result<Postgres> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(err(format!(
                "schema '{schema}' must be letters, digits and '_'"
            )));
        }
        let mut cfg = tokio_postgres::Config::from_str(url)
            .map_err(|e| err(format!("{}: {e}", super::without_password(url))))?;
        // A statement may take 10 s at most; a connection 5 s to open.
        cfg.options("-c statement_timeout=10000");
        cfg.connect_timeout(std::time::Duration::from_secs(5));
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .build()
            .map_err(err)?;
        let store = Postgres {
            pool,
            s: format!("\"{schema}\"."),
            schema: schema.to_string(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(err)
    }

    async fn migrate(&self) -> Result<()> {
        let c = self.client().await?;
        let lock = format!("soapbridge:{}", self.schema);
        c.execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock])
            .await
            .map_err(err)?;
        let result = async {
            c.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{0}\"; CREATE TABLE IF NOT EXISTS {1}sb_schema (version INTEGER NOT NULL)",
                self.schema, self.s
            ))
            .await
            .map_err(err)?;
            let version: i32 = c
                .query_one(&format!("SELECT COALESCE(MAX(version), 0) FROM {}sb_schema", self.s), &[])
                .await
                .map_err(err)?
                .get(0);
            for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                let sql = m
                    .replace("{id}", "BIGSERIAL PRIMARY KEY")
                    .replace("{bool}", "BOOLEAN")
                    .replace("{s}", &self.s);
                // Each migration and its version row in one transaction (DDL is transactional).
                c.batch_execute(&format!(
                    "BEGIN; {sql}; INSERT INTO {}sb_schema (version) VALUES ({}); COMMIT",
                    self.s,
                    i + 1
                ))
                .await
                .map_err(|e| err(format!("migration {}: {e}", i + 1)))?;
            }
            Ok(())
        }
        .await;
        let _ = c
            .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock])
            .await;
        result
    }

    /// Drops the schema (tests).
    pub(super) async fn drop_schema(&self) -> Result<()> {
        self.client()
            .await?
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .await
            .map_err(err)
    }

    pub(super) async fn execute(&self, sql: &str, params: Vec<Param>) -> Result<u64> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        self.client().await?.execute(sql, &refs).await.map_err(err)
    }

    pub(super) async fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let rows = self.client().await?.query(sql, &refs).await.map_err(err)?;
        rows.iter().map(row).collect()
    }
}
