//! Throwaway PostgreSQL schemas, for tests and benchmarks that need a database of their
//! own on a shared server: each gets a uniquely named schema (so any number run in
//! parallel), dropped with everything in it when the [`ScratchSchema`] is dropped.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// The variable naming the server tests use.
pub const TEST_DATABASE_URL_VAR: &str = "LLMOPS_TEST_DATABASE_URL";

/// The server tests use when [`TEST_DATABASE_URL_VAR`] is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of its own on the test server; dropped (cascading) on drop.
#[derive(Debug)]
pub struct ScratchSchema {
    server_url: String,
    name: String,
    url: String,
}

impl ScratchSchema {
    /// Creates a fresh schema on the server named by `LLMOPS_TEST_DATABASE_URL`.
    ///
    /// # Panics
    /// If the server cannot be reached: tests that need it should fail loudly, not skip.
    pub async fn create() -> Self {
        let server_url = std::env::var(TEST_DATABASE_URL_VAR)
            .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
        let name = format!("llmops_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = connect(&server_url).await;
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|err| panic!("creating schema {name}: {err}"));
        let _ = admin.close().await;
        let separator = if server_url.contains('?') { '&' } else { '?' };
        // The application name marks the schema's connections, so that dropping the
        // schema can end those a test left behind (a server abandoned mid-transaction
        // would otherwise hold its locks, and the drop would wait forever).
        let url =
            format!("{server_url}{separator}options[search_path]={name}&application_name={name}");
        Self {
            server_url,
            name,
            url,
        }
    }

    /// A `database_url` whose connections use only this schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        // Drop runs inside (or outside) some runtime; a thread of its own with a runtime
        // of its own works from either.
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        let statement = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnectOptions::from_str(&server_url)?.connect().await?;
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                )
                .bind(&name)
                .execute(&mut admin)
                .await?;
                sqlx::query("SET lock_timeout = '10s'")
                    .execute(&mut admin)
                    .await?;
                sqlx::query(&statement).execute(&mut admin).await?;
                admin.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("dropping test schema {}: {err}", self.name);
        }
    }
}

async fn connect(url: &str) -> sqlx::PgConnection {
    let options = PgConnectOptions::from_str(url)
        .unwrap_or_else(|err| panic!("{TEST_DATABASE_URL_VAR}: {err}"));
    options.connect().await.unwrap_or_else(|err| {
        panic!(
            "connecting to the test PostgreSQL server ({}; set {TEST_DATABASE_URL_VAR}): {err}",
            llmops_redact::redact_url(url)
        )
    })
}
