//! Fresh databases for the store's test suites: a temporary SQLite file, or a new schema
//! in the PostgreSQL database of `TEST_DATABASE_URL`.

/// The URL of a new SQLite database in `dir`.
pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}/test.db", dir.path().display())
}

/// The URL of a new, empty schema in the PostgreSQL database of `TEST_DATABASE_URL`, or
/// None when it is not set.
pub async fn postgres_url() -> Option<String> {
    let base = std::env::var("TEST_DATABASE_URL").ok()?;
    let schema = format!("t{}", uuid::Uuid::now_v7().simple());
    let admin = sqlx::PgPool::connect(&base)
        .await
        .expect("connect postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}
