//! `load --migrate`: apply the project's pending diesel migrations in the load's transaction, so
//! a failed load leaves the database without them too (PostgreSQL and SQLite both have
//! transactional DDL). diesel's harness runs each migration in `connection.transaction`, which
//! inside our open transaction is a savepoint.
//!
//! Which directory (the diesel CLI's rules, since diesel_migrations itself never reads
//! diesel.toml and only looks for a folder literally named `migrations`):
//! 1. `MIGRATION_DIRECTORY` from the environment (relative to the current directory);
//! 2. else `[migrations_directory] dir` of the config file: `DIESEL_CONFIG_FILE` from the
//!    environment, else the first `diesel.toml` found from the current directory upwards; the
//!    dir is relative to the config file's directory;
//! 3. else the first folder named `migrations` from the current directory upwards.
//!
//! Then this project's convention (documented in its diesel.toml): when the chosen directory's
//! name is a backend name (`postgresql`, `sqlite`, `mysql`), the sibling folder named for the
//! connected backend is used instead when it exists, so one diesel.toml serves every backend.
//!
//! Migrations with `run_in_transaction = false` (metadata.toml) cannot run inside the load's
//! transaction and are refused with a message naming them.

use std::path::{Path, PathBuf};

use diesel::backend::Backend as DieselBackend;
use diesel::migration::MigrationSource;
use diesel_migrations::{FileBasedMigrations, MigrationHarness};

use crate::backend::{Backend, Connection};
use crate::error::{Error, Result};

/// Backend names the folder convention recognizes.
const BACKEND_FOLDERS: &[&str] = &["postgresql", "sqlite", "mysql"];

/// Applies pending migrations found from the current directory the way the diesel CLI finds
/// them. Returns the names of the migrations applied, in order.
pub fn run_pending(conn: &mut Connection) -> Result<Vec<String>> {
    let dir = find_from_current_dir(conn.backend())?;
    run_pending_in(conn, &dir)
}

/// The migrations directory for `backend` as the diesel CLI finds it from the current
/// directory and environment (see the module doc).
pub fn find_from_current_dir(backend: Backend) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("<current directory>", e))?;
    find_migrations_dir(
        &cwd,
        backend,
        std::env::var_os("MIGRATION_DIRECTORY").map(PathBuf::from),
        std::env::var_os("DIESEL_CONFIG_FILE").map(PathBuf::from),
    )
}

/// Applies the pending migrations of `dir` (a diesel migrations directory).
pub fn run_pending_in(conn: &mut Connection, dir: &Path) -> Result<Vec<String>> {
    let source = FileBasedMigrations::from_path(dir).map_err(|e| Error::Migration {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    match conn {
        Connection::Pg(c) => apply(c, source, dir),
        Connection::Sqlite(c) => apply(c, source, dir),
    }
}

fn apply<C, DB>(c: &mut C, source: FileBasedMigrations, dir: &Path) -> Result<Vec<String>>
where
    C: MigrationHarness<DB>,
    DB: DieselBackend,
    FileBasedMigrations: MigrationSource<DB>,
{
    let fail = |message: String| Error::Migration {
        dir: dir.to_path_buf(),
        message,
    };
    let pending = c
        .pending_migrations(source)
        .map_err(|e| fail(e.to_string()))?;
    if let Some(m) = pending.iter().find(|m| !m.metadata().run_in_transaction()) {
        return Err(fail(format!(
            "{} sets run_in_transaction = false, so it cannot run inside the load's \
             transaction; apply it with `diesel migration run` first",
            m.name()
        )));
    }
    let mut applied = Vec::with_capacity(pending.len());
    for m in &pending {
        c.run_migration(m.as_ref())
            .map_err(|e| fail(format!("{}: {e}", m.name())))?;
        applied.push(m.name().to_string());
    }
    Ok(applied)
}

/// Finds the migrations directory for `backend` starting from `start` (see the module doc).
/// `env_dir` / `env_config` are `MIGRATION_DIRECTORY` / `DIESEL_CONFIG_FILE`.
pub fn find_migrations_dir(
    start: &Path,
    backend: Backend,
    env_dir: Option<PathBuf>,
    env_config: Option<PathBuf>,
) -> Result<PathBuf> {
    if let Some(d) = env_dir.filter(|d| !d.as_os_str().is_empty()) {
        return Ok(for_backend(start.join(d), backend));
    }
    let config = match env_config.filter(|c| !c.as_os_str().is_empty()) {
        Some(c) => Some(start.join(c)).filter(|c| c.is_file()),
        None => start
            .ancestors()
            .map(|a| a.join("diesel.toml"))
            .find(|p| p.is_file()),
    };
    if let Some(config) = config {
        if let Some(dir) = configured_dir(&config)? {
            let base = config.parent().unwrap_or(Path::new("."));
            return Ok(for_backend(base.join(dir), backend));
        }
    }
    start
        .ancestors()
        .map(|a| a.join("migrations"))
        .find(|p| p.is_dir())
        .map(|d| for_backend(d, backend))
        .ok_or_else(|| Error::Migration {
            dir: start.to_path_buf(),
            message: "no migrations directory: no diesel.toml with [migrations_directory] dir \
                      and no folder named migrations here or in a parent directory"
                .into(),
        })
}

/// `[migrations_directory] dir` of a diesel.toml, if set.
fn configured_dir(config: &Path) -> Result<Option<PathBuf>> {
    let fail = |message: String| Error::Migration {
        dir: config.to_path_buf(),
        message,
    };
    let text =
        std::fs::read_to_string(config).map_err(|e| Error::io(config.display().to_string(), e))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| fail(format!("cannot parse {}: {e}", config.display())))?;
    match doc.get("migrations_directory").map(|m| m.get("dir")) {
        None | Some(None) => Ok(None),
        Some(Some(toml::Value::String(d))) => Ok(Some(PathBuf::from(d))),
        Some(Some(other)) => Err(fail(format!(
            "[migrations_directory] dir must be a string, found {other}"
        ))),
    }
}

/// The convention: `.../postgresql` configured, `.../sqlite` used for SQLite when it exists.
fn for_backend(dir: PathBuf, backend: Backend) -> PathBuf {
    let is_backend_named = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| BACKEND_FOLDERS.contains(&n));
    if is_backend_named {
        if let Some(parent) = dir.parent() {
            let sibling = parent.join(backend.migrations_folder_name());
            if sibling.is_dir() {
                return sibling;
            }
        }
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        dir
    }

    const UP: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY);";

    #[test]
    fn configured_backend_folder_and_its_siblings() {
        let d = tree(&[
            (
                "diesel.toml",
                "[print_schema]\nfile = \"src/schema.rs\"\n\n[migrations_directory]\ndir = \"db/postgresql\"\n",
            ),
            ("db/postgresql/2024-01-01-000000_a/up.sql", UP),
            ("db/sqlite/2024-01-01-000000_a/up.sql", UP),
            ("src/deep/x.txt", ""),
        ]);
        let root = d.path();
        let find = |start: &Path, b| find_migrations_dir(start, b, None, None).unwrap();
        assert_eq!(find(root, Backend::Postgres), root.join("db/postgresql"));
        assert_eq!(find(root, Backend::Sqlite), root.join("db/sqlite"));
        // Found from a subdirectory, relative to diesel.toml's directory.
        assert_eq!(
            find(&root.join("src/deep"), Backend::Sqlite),
            root.join("db/sqlite")
        );
    }

    #[test]
    fn sibling_only_when_present_and_only_for_backend_names() {
        let d = tree(&[
            (
                "diesel.toml",
                "[migrations_directory]\ndir = \"migrations/postgresql\"\n",
            ),
            ("migrations/postgresql/2024-01-01-000000_a/up.sql", UP),
        ]);
        let got = find_migrations_dir(d.path(), Backend::Sqlite, None, None).unwrap();
        assert_eq!(got, d.path().join("migrations/postgresql"));

        let d = tree(&[
            (
                "diesel.toml",
                "[migrations_directory]\ndir = \"db/migrations\"\n",
            ),
            ("db/migrations/2024-01-01-000000_a/up.sql", UP),
            ("db/sqlite/2024-01-01-000000_a/up.sql", UP),
        ]);
        let got = find_migrations_dir(d.path(), Backend::Sqlite, None, None).unwrap();
        assert_eq!(got, d.path().join("db/migrations"));
    }

    #[test]
    fn fallbacks_and_overrides() {
        // diesel.toml without [migrations_directory]: the nearest `migrations` folder.
        let d = tree(&[
            ("diesel.toml", "[print_schema]\nfile = \"src/schema.rs\"\n"),
            ("migrations/2024-01-01-000000_a/up.sql", UP),
            ("sub/x.txt", ""),
        ]);
        let got = find_migrations_dir(&d.path().join("sub"), Backend::Postgres, None, None);
        assert_eq!(got.unwrap(), d.path().join("migrations"));
        // MIGRATION_DIRECTORY wins, relative to the current directory.
        let got = find_migrations_dir(d.path(), Backend::Postgres, Some("elsewhere".into()), None);
        assert_eq!(got.unwrap(), d.path().join("elsewhere"));
        // DIESEL_CONFIG_FILE names the config.
        let d2 = tree(&[
            (
                "conf/d.toml",
                "[migrations_directory]\ndir = \"../m/sqlite\"\n",
            ),
            ("m/sqlite/2024-01-01-000000_a/up.sql", UP),
        ]);
        let got = find_migrations_dir(d2.path(), Backend::Sqlite, None, Some("conf/d.toml".into()));
        assert_eq!(got.unwrap(), d2.path().join("conf/../m/sqlite"));
        // Nothing at all.
        let empty = tempfile::tempdir().unwrap();
        let e = find_migrations_dir(empty.path(), Backend::Sqlite, None, None).unwrap_err();
        assert!(e.to_string().contains("no migrations directory"), "{e}");
        // A broken diesel.toml is reported, not ignored.
        let bad = tree(&[("diesel.toml", "[migrations_directory\n")]);
        let e = find_migrations_dir(bad.path(), Backend::Sqlite, None, None).unwrap_err();
        assert!(e.to_string().contains("cannot parse"), "{e}");
    }

    #[test]
    fn applies_in_the_callers_transaction_and_rolls_back_with_it() {
        let d = tree(&[
            ("m/2024-01-01-000000_a/up.sql", UP),
            ("m/2024-01-01-000000_a/down.sql", "DROP TABLE t;"),
            ("m/2024-01-02-000000_b/up.sql", "CREATE TABLE u (x);"),
            ("m/2024-01-02-000000_b/down.sql", "DROP TABLE u;"),
        ]);
        let db = d.path().join("x.db");
        let url = crate::DatabaseUrl::Sqlite(db);
        let mut conn = Connection::open(&url, true).unwrap();
        let dir = d.path().join("m");
        let r: Result<()> = conn.transaction(crate::backend::TxMode::ReadWrite, |conn| {
            let applied = run_pending_in(conn, &dir)?;
            assert_eq!(
                applied,
                ["2024-01-01-000000_a", "2024-01-02-000000_b"].map(String::from)
            );
            Err(Error::Invalid("fail on purpose".into()))
        });
        assert!(r.is_err());
        let tables: Vec<String> = conn
            .query_json("SELECT json_group_array(name) AS j FROM sqlite_master")
            .unwrap();
        assert!(tables.is_empty(), "rolled back: {tables:?}");
        let applied = conn
            .transaction(crate::backend::TxMode::ReadWrite, |c| {
                run_pending_in(c, &dir)
            })
            .unwrap();
        assert_eq!(applied.len(), 2);
        let again = conn
            .transaction(crate::backend::TxMode::ReadWrite, |c| {
                run_pending_in(c, &dir)
            })
            .unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn a_failing_migration_is_named() {
        let d = tree(&[("m/2024-01-01-000000_bad/up.sql", "CREATE TABLE (;")]);
        let url = crate::DatabaseUrl::Sqlite(d.path().join("x.db"));
        let mut conn = Connection::open(&url, true).unwrap();
        let e = conn
            .transaction(crate::backend::TxMode::ReadWrite, |c| {
                run_pending_in(c, &d.path().join("m"))
            })
            .unwrap_err();
        assert!(e.to_string().contains("2024-01-01-000000_bad"), "{e}");
    }

    #[test]
    fn run_in_transaction_false_is_refused() {
        let d = tree(&[
            ("m/2024-01-01-000000_c/up.sql", UP),
            (
                "m/2024-01-01-000000_c/metadata.toml",
                "run_in_transaction = false\n",
            ),
        ]);
        let url = crate::DatabaseUrl::Sqlite(d.path().join("x.db"));
        let mut conn = Connection::open(&url, true).unwrap();
        let e = conn
            .transaction(crate::backend::TxMode::ReadWrite, |c| {
                run_pending_in(c, &d.path().join("m"))
            })
            .unwrap_err();
        assert!(e.to_string().contains("run_in_transaction = false"), "{e}");
    }
}
