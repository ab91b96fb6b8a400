//! One database of either backend, for tests that run the same case on PostgreSQL (a fresh
//! [`TestDb`]) and SQLite (a file in its own temporary directory).

use std::path::PathBuf;

use dbfixtures::{Connection, DatabaseUrl};

use super::{cmd, Out, TestDb};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Pg,
    Sqlite,
}

pub const BOTH: [Kind; 2] = [Kind::Pg, Kind::Sqlite];

/// A database of either backend.
pub enum Db {
    Pg(TestDb),
    /// The directory is kept (not read) so the file lives as long as the value.
    Sqlite(#[allow(dead_code)] tempfile::TempDir, PathBuf),
}

impl Db {
    pub fn new(kind: Kind, name: &str) -> Db {
        match kind {
            Kind::Pg => Db::Pg(TestDb::new(name)),
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("test.db");
                Connection::open(&DatabaseUrl::Sqlite(path.clone()), true).unwrap();
                Db::Sqlite(dir, path)
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Db::Pg(db) => db.url(),
            Db::Sqlite(_, p) => format!("sqlite://{}", p.display()),
        }
    }

    pub fn sql(&self, sql: &str) {
        match self {
            Db::Pg(db) => db.sql(sql),
            Db::Sqlite(_, p) => Connection::open(&DatabaseUrl::Sqlite(p.clone()), false)
                .unwrap()
                .execute(sql)
                .unwrap_or_else(|e| panic!("{e}\n--- in:\n{sql}")),
        }
    }

    /// `dbfixtures ARGS --database-url URL`, with no mask salt from the environment.
    pub fn run(&self, args: &[&str]) -> Out {
        let out = cmd()
            .env_remove("DBFIXTURES_MASK_SALT")
            .args(args)
            .arg("--database-url")
            .arg(self.url())
            .output()
            .expect("run dbfixtures");
        Out::from(out)
    }

    /// [`Db::run`], asserting it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "{args:?}: {out:#?}");
        out.stdout
    }

    /// A full dump of every table.
    pub fn dump_all(&self) -> String {
        let out = self.run(&["dump", "--quiet"]);
        assert_eq!(out.code, 0, "full dump failed: {out:#?}");
        out.stdout
    }
}
