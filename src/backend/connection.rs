//! Opening connections from a URL, with the password kept out of every message.
//!
//! Accepted URLs: `postgres://` / `postgresql://` (libpq URI syntax), `sqlite://PATH`,
//! `sqlite:PATH`, and a plain file path (SQLite). Anything else is refused with a message that
//! names the scheme.

use std::path::{Path, PathBuf};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection as _, QueryableByName, RunQueryDsl};
use serde::de::DeserializeOwned;

use crate::error::{describe_diesel, Error, Result};

/// Which database engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The name diesel's own repository uses for per-backend migration folders.
    pub fn migrations_folder_name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A parsed database URL. `Display` shows it with the password removed.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Postgres(u) => f.write_str(&redact_url(u)),
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
        }
    }
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::NoDatabaseUrl);
        }
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(raw.to_string()));
        }
        if let Some(rest) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        {
            if rest.is_empty() {
                return Err(Error::BadUrl {
                    url: raw.to_string(),
                    reason: "no file path after sqlite://".into(),
                });
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(rest)));
        }
        if looks_like_conninfo(raw) {
            // libpq's `host=... dbname=...` form.
            return Ok(DatabaseUrl::Postgres(raw.to_string()));
        }
        if let Some((scheme, _)) = raw.split_once("://") {
            let reason = match scheme.to_ascii_lowercase().as_str() {
                "mysql" | "mariadb" => "MySQL/MariaDB is not supported yet".to_string(),
                s => format!("unknown scheme {s}:// (use postgres://, sqlite:// or a file path)"),
            };
            return Err(Error::BadUrl {
                url: redact_url(raw),
                reason,
            });
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(raw)))
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Postgres(_) => Backend::Postgres,
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// What a connection error names: host, port and database (PostgreSQL) or the file.
    pub fn target(&self) -> String {
        if let DatabaseUrl::Postgres(u) = self {
            if looks_like_conninfo(u) {
                let pairs = conninfo_pairs(u);
                let get = |k: &str| {
                    pairs.iter().find(|(key, _)| key == k).map(|(_, v)| {
                        // As in redact_url: `host= password=x` is the host "password=x".
                        if v.to_ascii_lowercase().contains("password") {
                            "***"
                        } else {
                            v.as_str()
                        }
                    })
                };
                return format!(
                    "database {:?} on {}:{}",
                    get("dbname").unwrap_or(""),
                    get("host").or(get("hostaddr")).unwrap_or("localhost"),
                    get("port").unwrap_or("5432")
                );
            }
        }
        match self {
            DatabaseUrl::Postgres(u) => match url::Url::parse(u) {
                Ok(p) => format!(
                    "database {:?} on {}:{}",
                    p.path().trim_start_matches('/'),
                    p.host_str()
                        .filter(|h| !h.is_empty())
                        .unwrap_or("localhost"),
                    p.port().unwrap_or(5432)
                ),
                Err(_) => redact_url(u),
            },
            DatabaseUrl::Sqlite(p) => format!("SQLite database {}", p.display()),
        }
    }
}

/// Removes the password from a URL (`postgres://u:secret@h/db` → `postgres://u@h/db`), including
/// a `password=` query parameter. Text that is not a URL is returned unchanged only when it
/// cannot contain a password (no `@` and no `password`); otherwise it is replaced by a marker.
pub fn redact_url(raw: &str) -> String {
    if looks_like_conninfo(raw) {
        return conninfo_pairs(raw)
            .into_iter()
            .map(|(k, v)| {
                // Also a value that contains a password setting: libpq reads `host= password=x`
                // as the host "password=x", but the user meant a password.
                let v = if k == "password" || v.to_ascii_lowercase().contains("password") {
                    "***".to_string()
                } else {
                    v
                };
                format!("{k}={v}")
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(None);
            }
            if u.query().is_some() {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        if k.eq_ignore_ascii_case("password") {
                            (k.into_owned(), "***".to_string())
                        } else {
                            (k.into_owned(), v.into_owned())
                        }
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) if raw.contains('@') || raw.to_ascii_lowercase().contains("password") => {
            "<database URL hidden: it may contain a password>".to_string()
        }
        Err(_) => raw.to_string(),
    }
}

/// libpq's keyword/value connection string (`host=db dbname=app user=me`): no scheme, and it
/// starts with `keyword=`.
fn looks_like_conninfo(s: &str) -> bool {
    let s = s.trim_start();
    !s.contains("://")
        && s.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The `keyword=value` pairs of a connection string (single-quoted values may hold spaces).
fn conninfo_pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|&c| c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            out.push((key, String::new()));
            continue;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        out.push((key, value));
    }
    out
}

/// An open connection to one of the supported backends.
pub enum Connection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({:?})", self.backend())
    }
}

/// Opens a PostgreSQL snapshot transaction ([`TxMode::Snapshot`], and a parallel dump's workers
/// before they import the leading connection's snapshot). A dump's transaction waits between
/// statements while its output drains and, in a parallel dump, while the workers read or the
/// writer catches up: a server-side idle_in_transaction_session_timeout (common on managed
/// PostgreSQL) would end it, and with it the snapshot and the table locks (pg_dump turns it off
/// too).
pub(crate) const PG_SNAPSHOT_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
     SET LOCAL idle_in_transaction_session_timeout = 0";

/// How a new transaction is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// Read-write, default isolation.
    ReadWrite,
    /// One consistent snapshot for every statement (dump).
    Snapshot,
}

#[derive(QueryableByName)]
struct JsonText {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    j: Option<String>,
}

impl Connection {
    /// Connects to `url`. For SQLite the file must exist unless `create` is set, so a typo in a
    /// path is reported instead of silently creating an empty database.
    pub fn open(url: &DatabaseUrl, create: bool) -> Result<Self> {
        let fail = |message: String| Error::Connect {
            target: url.target(),
            message,
        };
        match url {
            DatabaseUrl::Postgres(u) => {
                let conn = PgConnection::establish(u)
                    .map_err(|e| fail(scrub(&e.to_string(), u).trim().to_string()))?;
                Ok(Connection::Pg(conn))
            }
            DatabaseUrl::Sqlite(path) => {
                if !create && !path.exists() {
                    return Err(fail("no such file".into()));
                }
                let p = path
                    .to_str()
                    .ok_or_else(|| fail("path is not UTF-8".into()))?;
                let mut conn = SqliteConnection::establish(p).map_err(|e| fail(e.to_string()))?;
                // diesel leaves foreign keys off; fixtures must be checked like any other write.
                conn.batch_execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
                    .map_err(|e| fail(e.to_string()))?;
                Ok(Connection::Sqlite(conn))
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Connection::Pg(_) => Backend::Postgres,
            Connection::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Runs one or more statements without results.
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        let r = match self {
            Connection::Pg(c) => c.batch_execute(sql),
            Connection::Sqlite(c) => c.batch_execute(sql),
        };
        r.map_err(|e| Error::db(short_sql(sql), describe_diesel(&e)))
    }

    /// Runs a query returning a single text column `j` holding JSON (or NULL, read as `null`)
    /// and deserializes it.
    pub fn query_json<T: DeserializeOwned>(&mut self, sql: &str) -> Result<T> {
        let rows: Vec<JsonText> = match self {
            Connection::Pg(c) => diesel::sql_query(sql).load(c),
            Connection::Sqlite(c) => diesel::sql_query(sql).load(c),
        }
        .map_err(|e| Error::db(short_sql(sql), describe_diesel(&e)))?;
        json_answer(sql, rows)
    }

    /// [`Self::query_json`] with `param` bound to the statement's one text parameter (`$1` on
    /// PostgreSQL, `?` on SQLite).
    pub fn query_json_bound<T: DeserializeOwned>(&mut self, sql: &str, param: &str) -> Result<T> {
        let q = diesel::sql_query(sql).bind::<diesel::sql_types::Text, _>(param);
        let rows: Vec<JsonText> = match self {
            Connection::Pg(c) => q.load(c),
            Connection::Sqlite(c) => q.load(c),
        }
        .map_err(|e| Error::db(short_sql(sql), describe_diesel(&e)))?;
        json_answer(sql, rows)
    }

    /// Runs `f` in a transaction: committed when it returns Ok, rolled back otherwise. Nested
    /// calls (or a caller's open transaction) become savepoints.
    pub fn transaction<T>(
        &mut self,
        mode: TxMode,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.begin(mode)?;
        match f(self) {
            Ok(v) => {
                self.finish(true)?;
                Ok(v)
            }
            Err(e) => {
                // The original error matters more than a failed rollback on a broken connection.
                let _ = self.finish(false);
                Err(e)
            }
        }
    }

    fn begin(&mut self, mode: TxMode) -> Result<()> {
        let outermost = self.transaction_depth() == 0;
        let r = match self {
            Connection::Pg(c) => match mode {
                TxMode::Snapshot if outermost => {
                    AnsiTransactionManager::begin_transaction_sql(c, PG_SNAPSHOT_BEGIN)
                }
                _ => AnsiTransactionManager::begin_transaction(c),
            },
            // SQLite: BEGIN IMMEDIATE takes the write lock up front, so a concurrent writer
            // cannot slip in between reading MAX and moving a sequence; for a snapshot, a
            // DEFERRED transaction is already one consistent read.
            Connection::Sqlite(c) => match mode {
                TxMode::ReadWrite if outermost => {
                    AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
                }
                _ => AnsiTransactionManager::begin_transaction(c),
            },
        };
        r.map_err(|e| Error::db("starting a transaction", describe_diesel(&e)))
    }

    /// How many [`Connection::transaction`]s are open on this connection (0: none; more than 1:
    /// the innermost is a savepoint).
    pub fn transaction_depth(&mut self) -> u32 {
        let depth = match self {
            Connection::Pg(c) => AnsiTransactionManager::transaction_manager_status_mut(c)
                .transaction_depth()
                .ok()
                .flatten(),
            Connection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c)
                .transaction_depth()
                .ok()
                .flatten(),
        };
        depth.map_or(0, std::num::NonZeroU32::get)
    }

    fn finish(&mut self, commit: bool) -> Result<()> {
        let r = match (self, commit) {
            (Connection::Pg(c), true) => AnsiTransactionManager::commit_transaction(c),
            (Connection::Pg(c), false) => AnsiTransactionManager::rollback_transaction(c),
            (Connection::Sqlite(c), true) => AnsiTransactionManager::commit_transaction(c),
            (Connection::Sqlite(c), false) => AnsiTransactionManager::rollback_transaction(c),
        };
        r.map_err(|e| {
            let what = if commit { "committing" } else { "rolling back" };
            Error::db(what, describe_diesel(&e))
        })
    }

    /// False once the connection cannot run statements any more: the server went away, or a
    /// rollback failed and diesel's transaction manager gave up on it. Costs a round trip.
    pub fn is_usable(&mut self) -> bool {
        let healthy = match self {
            Connection::Pg(c) => AnsiTransactionManager::transaction_manager_status_mut(c)
                .transaction_depth()
                .is_ok(),
            Connection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c)
                .transaction_depth()
                .is_ok(),
        };
        healthy && self.execute("SELECT 1").is_ok()
    }

    /// The PostgreSQL connection, for code that only exists there (COPY).
    pub fn as_pg(&mut self) -> Option<&mut PgConnection> {
        match self {
            Connection::Pg(c) => Some(c),
            Connection::Sqlite(_) => None,
        }
    }
}

/// The JSON in column `j` of the first row (`null` without a row or for NULL), deserialized.
fn json_answer<T: DeserializeOwned>(sql: &str, rows: Vec<JsonText>) -> Result<T> {
    let text = rows
        .into_iter()
        .next()
        .and_then(|r| r.j)
        .unwrap_or_else(|| "null".to_string());
    serde_json::from_str(&text)
        .map_err(|e| Error::db(short_sql(sql), format!("unexpected catalog answer: {e}")))
}

/// libpq echoes connection parameters in a few messages; make sure the password is not among them.
fn scrub(message: &str, url: &str) -> String {
    let password = if looks_like_conninfo(url) {
        conninfo_pairs(url)
            .into_iter()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v)
    } else {
        url::Url::parse(url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
    };
    match password {
        Some(pw) if !pw.is_empty() => {
            let decoded = percent_decode(&pw);
            message.replace(&pw, "***").replace(&decoded, "***")
        }
        _ => message.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// The first line of a statement, shortened, to say what was running when it failed.
pub(crate) fn short_sql(sql: &str) -> String {
    let line = sql.trim().lines().next().unwrap_or("").trim();
    let mut s: String = line.chars().take(80).collect();
    if s.len() < line.len() || sql.trim().lines().nth(1).is_some() {
        s.push('…');
    }
    format!("running `{s}`")
}

/// Resolves a relative SQLite path against a base directory (used for URLs read from `.env`).
pub fn resolve_sqlite_path(url: DatabaseUrl, base: &Path) -> DatabaseUrl {
    match url {
        DatabaseUrl::Sqlite(p) if p.is_relative() && p.as_os_str() != ":memory:" => {
            DatabaseUrl::Sqlite(base.join(p))
        }
        other => other,
    }
}

/// A SQLite database in a temporary directory with `ddl` applied, for unit tests.
#[cfg(test)]
pub(crate) fn temp_sqlite(ddl: &str) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("t.db"));
    let mut conn = Connection::open(&url, true).unwrap();
    conn.execute(ddl).unwrap();
    (dir, conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `url` fuzz target: an empty value before `password=` swallowed it.
    #[test]
    fn fuzz_regression_empty_value_before_password() {
        let shown = redact_url("host= password=Zq9SeCrEtPw ");
        assert!(!shown.contains("Zq9SeCrEtPw"), "{shown}");
        let url = DatabaseUrl::parse("host= password=Zq9SeCrEtPw dbname=x").unwrap();
        assert!(!url.to_string().contains("Zq9SeCrEtPw"), "{url}");
        assert!(!url.target().contains("Zq9SeCrEtPw"), "{}", url.target());
    }

    #[test]
    fn redacts_password_in_userinfo_and_query() {
        assert_eq!(
            redact_url("postgres://alice:s3cr3t@db.example:6543/app"),
            "postgres://alice@db.example:6543/app"
        );
        let r = redact_url("postgres://alice@h/app?sslmode=require&password=s3cr3t");
        assert!(!r.contains("s3cr3t"), "{r}");
        assert!(r.contains("sslmode=require"), "{r}");
        assert_eq!(
            redact_url("not a url user:pw@host"),
            "<database URL hidden: it may contain a password>"
        );
    }

    #[test]
    fn parses_every_accepted_form() {
        assert_eq!(
            DatabaseUrl::parse("postgresql://u@h/d").unwrap().backend(),
            Backend::Postgres
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://dev.db").unwrap(),
            DatabaseUrl::Sqlite("dev.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/a.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("./x.sqlite3").unwrap(),
            DatabaseUrl::Sqlite("./x.sqlite3".into())
        );
        let err = DatabaseUrl::parse("mysql://root:pw@h/d")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not supported yet") && !err.contains("pw@"),
            "{err}"
        );
        assert!(matches!(DatabaseUrl::parse(" "), Err(Error::NoDatabaseUrl)));
    }

    #[test]
    fn target_names_host_port_database_only() {
        let u = DatabaseUrl::parse("postgres://bob:hunter2@10.0.0.9:5433/shop").unwrap();
        assert_eq!(u.target(), "database \"shop\" on 10.0.0.9:5433");
        assert_eq!(u.to_string(), "postgres://bob@10.0.0.9:5433/shop");
    }

    #[test]
    fn keyword_value_connection_strings_are_postgres_and_redacted() {
        let raw = "host=127.0.0.1 password='s3 cr3t' dbname=app port=6543";
        let u = DatabaseUrl::parse(raw).unwrap();
        assert_eq!(u.backend(), Backend::Postgres);
        assert_eq!(u.target(), "database \"app\" on 127.0.0.1:6543");
        let shown = u.to_string();
        assert!(
            !shown.contains("s3") && shown.contains("password=***"),
            "{shown}"
        );
        assert_eq!(
            DatabaseUrl::parse("./data=old.db").unwrap().backend(),
            Backend::Sqlite,
            "a path with '=' is still a path"
        );
    }

    #[test]
    fn scrub_removes_password_from_messages() {
        let m = scrub("failed for p%40ss and p@ss", "postgres://u:p%40ss@h/d");
        assert_eq!(m, "failed for *** and ***");
    }
}
