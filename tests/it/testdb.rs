//! `testdb`: template built once, cloned per test, on PostgreSQL and SQLite; the rollback path;
//! prune; the CLI; the pool of ready clones. Every test works under a prefix of its own (name +
//! process id) so that its prune never touches another test's (or another developer's)
//! databases, and removes what it made when it ends (after the pool fillers it started are
//! done).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use dbfixtures::testdb::{self, PruneOptions, TestDbBuilder};
use dbfixtures::Connection;

use crate::support::{admin_url, cmd, Out};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Engine {
    Pg,
    Sqlite,
}

/// Where one test's databases live, removed (everything under its prefix) on drop.
struct Place {
    engine: Engine,
    url: String,
    prefix: String,
    /// SQLite: the directory of the files; also a copy of the demo fixtures and migrations
    /// for tests that change them.
    dir: tempfile::TempDir,
}

impl Place {
    fn new(engine: Engine, tag: &str) -> Place {
        let dir = tempfile::tempdir().unwrap();
        let url = match engine {
            Engine::Pg => admin_url(),
            Engine::Sqlite => format!("sqlite://{}", dir.path().join("app.db").display()),
        };
        let e = if engine == Engine::Pg { "p" } else { "s" };
        let prefix = format!("tdb{e}_{tag}_{}", std::process::id());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        copy_dir(&root.join("migrations"), &dir.path().join("migrations"));
        std::fs::copy(root.join("demo.json"), dir.path().join("demo.json")).unwrap();
        Place {
            engine,
            url,
            prefix,
            dir,
        }
    }

    /// Where the CLI's detached pool fillers write their messages (DBFIXTURES_TESTDB_FILL_LOG).
    fn fill_log(&self) -> PathBuf {
        self.dir.path().join("fill.log")
    }

    /// The fillers' messages so far, for assertion messages.
    fn fill_log_text(&self) -> String {
        std::fs::read_to_string(self.fill_log()).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    fn migrations(&self) -> PathBuf {
        let folder = match self.engine {
            Engine::Pg => "postgresql",
            Engine::Sqlite => "sqlite",
        };
        self.dir.path().join("migrations").join(folder)
    }

    fn fixture(&self) -> PathBuf {
        self.dir.path().join("demo.json")
    }

    fn builder(&self) -> TestDbBuilder {
        TestDbBuilder::new(self.url.clone())
            .prefix(self.prefix.clone())
            .migrations(self.migrations())
            .fixtures([self.fixture()])
    }

    /// `testdb create` of the demo files under this test's prefix, `--pool N` when given.
    fn create_args(&self, pool: Option<&str>) -> Vec<String> {
        let mut a = vec!["create".to_string()];
        if let Some(n) = pool {
            a.extend(["--pool".to_string(), n.to_string()]);
        }
        a.extend([
            "--prefix".to_string(),
            self.prefix.clone(),
            "--migrations".to_string(),
            self.migrations().display().to_string(),
            self.fixture().display().to_string(),
        ]);
        a
    }

    fn prune(&self, older_than: Duration) -> testdb::PruneReport {
        testdb::prune(
            &self.url,
            &PruneOptions {
                prefix: Some(self.prefix.clone()),
                older_than,
                dry_run: false,
            },
        )
        .unwrap()
    }

    /// Names of this test's templates and clones that exist (PostgreSQL: in pg_database;
    /// SQLite: files); free pool members are in [`Self::members`].
    fn existing(&self) -> Vec<String> {
        let members = format!("{}_p_", self.prefix);
        let mut v = self.existing_with(&self.prefix);
        v.retain(|n| !n.starts_with(&members));
        v
    }

    /// This test's free pool members (any key, with or without their comment) and their oids.
    fn members(&self) -> Vec<(String, u32)> {
        let mut c = admin();
        let rows: Vec<(String, String)> = c
            .query_json(&format!(
                "SELECT coalesce(json_agg(json_build_array(datname, oid::text) ORDER BY datname), \
                 '[]')::text AS j FROM pg_database WHERE starts_with(datname, '{}_p_')",
                self.prefix
            ))
            .unwrap();
        rows.into_iter()
            .map(|(n, oid)| (n, oid.parse().unwrap()))
            .collect()
    }

    fn existing_with(&self, prefix: &str) -> Vec<String> {
        match self.engine {
            Engine::Pg => {
                let mut c =
                    Connection::open(&dbfixtures::DatabaseUrl::parse(&self.url).unwrap(), false)
                        .unwrap();
                c.query_json(&format!(
                    "SELECT coalesce(json_agg(datname ORDER BY datname), '[]')::text AS j \
                     FROM pg_database WHERE starts_with(datname, '{prefix}_')"
                ))
                .unwrap()
            }
            Engine::Sqlite => {
                let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "db"))
                    .filter(|p| {
                        let n = p.file_name().unwrap().to_string_lossy();
                        n.starts_with(&format!("{prefix}_"))
                    })
                    .map(|p| p.display().to_string())
                    .collect();
                v.sort();
                v
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.engine == Engine::Pg {
            // Pool fillers `testdb create` started must not make members after the sweep; a
            // member left without its comment by a killed filler goes once its CREATE is done.
            wait_for_fillers(&self.prefix);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let _ = testdb::prune(
                    &self.url,
                    &PruneOptions {
                        prefix: Some(self.prefix.clone()),
                        older_than: Duration::ZERO,
                        dry_run: false,
                    },
                );
                if self.existing_with(&self.prefix).is_empty() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// An admin connection to the test server.
fn admin() -> Connection {
    Connection::open(
        &dbfixtures::DatabaseUrl::parse(&admin_url()).unwrap(),
        false,
    )
    .unwrap()
}

/// Waits (at most a minute) until no `dbfixtures testdb fill` for this prefix runs: the
/// detached fillers `testdb create` starts (found through /proc: tests run on Linux).
fn wait_for_fillers(prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while fillers_running(prefix) {
        assert!(
            Instant::now() < deadline,
            "pool fillers of {prefix} still run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fillers_running(prefix: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|cmd| {
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.contains(&&b"fill"[..])
                && args.contains(&&b"testdb"[..])
                && args.contains(&prefix.as_bytes())
        })
}

/// The oid of the database a connection is on: the same database keeps its oid when a pool
/// member is renamed to a clone, so two tests sharing one would show the same oid.
fn oid_of(conn: &mut Connection) -> u32 {
    let oid: String = conn
        .query_json(
            "SELECT to_json(oid::text)::text AS j FROM pg_database \
             WHERE datname = current_database()",
        )
        .unwrap();
    oid.parse().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

/// A number the query returns as column `j` (text), on either backend.
fn num(conn: &mut Connection, sql: &str) -> i64 {
    conn.query_json(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

const COUNT_CLIENTS: &str = "SELECT CAST(count(*) AS TEXT) AS j FROM clients";
const INSERT_CLIENT: &str =
    "INSERT INTO clients (name) VALUES ('new client') RETURNING CAST(id AS TEXT) AS j";

// ---------------------------------------------------------------------------------------------

fn parallel_tests_get_their_own_loaded_databases(engine: Engine) {
    let place = Place::new(engine, "par");
    let builder = place.builder();
    let results: Vec<(String, i64, i64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let db = builder.create().unwrap();
                    let mut conn = db.connect().unwrap();
                    let before = num(&mut conn, COUNT_CLIENTS);
                    // Sequences are aligned: a default id does not collide with loaded ids.
                    let id = num(&mut conn, INSERT_CLIENT);
                    let after = num(&mut conn, COUNT_CLIENTS);
                    assert_eq!(after, before + 1);
                    (db.name().to_string(), before, id)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_ne!(results[0].0, results[1].0, "two tests, two databases");
    for (_, count, id) in &results {
        assert_eq!(*count, 6, "each sees the fixtures, not the other's insert");
        assert_eq!(*id, 7, "next id after the loaded ones");
    }
    // Both handles dropped their databases; only the template is left.
    let left = place.existing();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].contains(&format!("{}_t_", place.prefix)),
        "{left:?}"
    );
}

#[test]
fn pg_parallel_tests_get_their_own_loaded_databases() {
    parallel_tests_get_their_own_loaded_databases(Engine::Pg);
}

#[test]
fn sqlite_parallel_tests_get_their_own_loaded_databases() {
    parallel_tests_get_their_own_loaded_databases(Engine::Sqlite);
}

fn changed_fixture_or_migration_gives_a_new_template(engine: Engine) {
    let place = Place::new(engine, "chg");
    let first = place.builder().create().unwrap();
    assert!(first.built_template());
    let again = place.builder().create().unwrap();
    assert!(!again.built_template(), "same files: same template");
    let k1 = place.builder().key().unwrap();

    // One byte of a fixture.
    let text = std::fs::read_to_string(place.fixture()).unwrap();
    let changed = text.replacen("José Álvarez", "Josè Álvarez", 1);
    assert_ne!(text, changed);
    std::fs::write(place.fixture(), changed).unwrap();
    let b = place.builder();
    let k2 = b.key().unwrap();
    assert_ne!(k1, k2);
    let db = b.create().unwrap();
    assert!(
        db.built_template(),
        "a changed fixture builds a new template"
    );
    let mut conn = db.connect().unwrap();
    let n = num(
        &mut conn,
        "SELECT CAST(count(*) AS TEXT) AS j FROM clients WHERE name = 'Josè Álvarez'",
    );
    assert_eq!(n, 1, "the clone has the new fixture's data");

    // A new migration.
    let m = place.migrations().join("2024-06-01-000000_add_notes");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(
        m.join("up.sql"),
        "CREATE TABLE extra (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(m.join("down.sql"), "DROP TABLE extra;").unwrap();
    let b = place.builder();
    assert_ne!(b.key().unwrap(), k2);
    let db = b.create().unwrap();
    assert!(db.built_template(), "a new migration builds a new template");
    let mut conn = db.connect().unwrap();
    assert_eq!(
        num(&mut conn, "SELECT CAST(count(*) AS TEXT) AS j FROM extra"),
        0
    );
    // Old clones are still usable: nothing was dropped under them.
    let mut old = first.connect().unwrap();
    assert_eq!(num(&mut old, COUNT_CLIENTS), 6);
}

#[test]
fn pg_changed_fixture_or_migration_gives_a_new_template() {
    changed_fixture_or_migration_gives_a_new_template(Engine::Pg);
}

#[test]
fn sqlite_changed_fixture_or_migration_gives_a_new_template() {
    changed_fixture_or_migration_gives_a_new_template(Engine::Sqlite);
}

/// Each thread has its own builder (its own admin connections, no shared state), as separate
/// test processes would: only the cross-process lock keeps them from building it 16 times.
fn sixteen_threads_build_the_template_once(engine: Engine) {
    let place = Place::new(engine, "16");
    let barrier = Arc::new(Barrier::new(16));
    let results: Vec<(bool, String, i64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let barrier = barrier.clone();
                let place = &place;
                s.spawn(move || {
                    let builder = place.builder();
                    barrier.wait();
                    let db = builder.create().unwrap();
                    let mut conn = db.connect().unwrap();
                    let n = num(&mut conn, COUNT_CLIENTS);
                    (db.built_template(), db.name().to_string(), n)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let builds = results.iter().filter(|r| r.0).count();
    assert_eq!(builds, 1, "built exactly once");
    let mut names: Vec<&String> = results.iter().map(|r| &r.1).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 16, "16 distinct databases");
    assert!(results.iter().all(|r| r.2 == 6), "all loaded");
}

#[test]
fn pg_sixteen_threads_build_the_template_once() {
    sixteen_threads_build_the_template_once(Engine::Pg);
}

#[test]
fn sqlite_sixteen_threads_build_the_template_once() {
    sixteen_threads_build_the_template_once(Engine::Sqlite);
}

/// Run by `panicking_test_keeps_its_database_and_says_where` in a child process: makes a
/// database and panics while holding it. Ignored in normal runs (it is meant to fail).
#[test]
#[ignore = "child process of *_panicking_test_keeps_its_database_and_says_where"]
fn testdb_child_panics_holding_a_database() {
    let url = std::env::var("DBF_TESTDB_CHILD_URL")
        .expect("only run by *_panicking_test_keeps_its_database_and_says_where");
    let prefix = std::env::var("DBF_TESTDB_CHILD_PREFIX").unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let folder = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgresql"
    };
    let db = TestDbBuilder::new(url)
        .prefix(prefix)
        .migrations(fixtures.join("migrations").join(folder))
        .fixtures([fixtures.join("demo.json")])
        .create()
        .unwrap();
    println!("CHILD-DB {}", db.name());
    panic!("the test under test fails");
}

fn panicking_test_keeps_its_database_and_says_where(engine: Engine) {
    let place = Place::new(engine, "pan");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "testdb::testdb_child_panics_holding_a_database",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DBF_TESTDB_CHILD_URL", &place.url)
        .env("DBF_TESTDB_CHILD_PREFIX", &place.prefix)
        .output()
        .unwrap();
    let out = Out::from(out);
    assert_ne!(out.code, 0, "the child test fails: {out:?}");
    let name = out
        .stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-DB ").map(|(_, name)| name.trim()))
        .unwrap_or_else(|| panic!("child printed no database: {out:?}"))
        .to_string();
    assert!(
        out.stderr.contains("keeping its database") && out.stderr.contains(&name),
        "says where: {}",
        out.stderr
    );
    assert!(
        place.existing().contains(&name),
        "kept: {:?}",
        place.existing()
    );
    // And the child's clone is now a leak of a dead process: prune takes it at any age.
    let report = place.prune(Duration::from_secs(3600));
    assert!(report.removed.contains(&name), "{report:?}");
    assert!(!place.existing().contains(&name));
}

#[test]
fn pg_panicking_test_keeps_its_database_and_says_where() {
    panicking_test_keeps_its_database_and_says_where(Engine::Pg);
}

#[test]
fn sqlite_panicking_test_keeps_its_database_and_says_where() {
    panicking_test_keeps_its_database_and_says_where(Engine::Sqlite);
}

fn prune_removes_leaked_clones_and_old_templates_never_in_use(engine: Engine) {
    let place = Place::new(engine, "prn");
    // Another prefix on the same server / in the same directory.
    let other_prefix = format!("{}x", place.prefix);
    let others = TestDbBuilder::new(place.url.clone())
        .prefix(other_prefix.clone())
        .migrations(place.migrations())
        .fixtures([place.fixture()])
        .pool(0)
        .create()
        .unwrap()
        .keep();
    let builder = place.builder();
    let leaked = builder.create().unwrap();
    let leaked_name = leaked.name().to_string();
    leaked.keep();
    let dead_owner = place.builder().owner_pid(u32::MAX - 1).create().unwrap();
    let dead_name = dead_owner.name().to_string();
    dead_owner.keep();
    // In use: PostgreSQL sees the open connection; SQLite the handle's lock.
    let in_use = builder.create().unwrap();
    let mut conn = in_use.connect().unwrap();

    // Default age: only the clone of a dead owner goes (pool members are young, their
    // template is there).
    let r = place.prune(Duration::from_secs(3600));
    assert_eq!(r.removed, vec![dead_name.clone()], "{r:?}");
    let left = place.existing();
    assert!(
        left.contains(&leaked_name) && !left.contains(&dead_name),
        "{left:?}"
    );

    // Age 0: the leaked clone and the template go; the clone in use stays. (The builder's
    // pool filler stops first, so that no member is made after the sweep.)
    drop(builder);
    let r = place.prune(Duration::ZERO);
    assert!(r.removed.contains(&leaked_name), "{r:?}");
    assert!(
        r.removed.iter().any(|n| n.contains("_t_")),
        "template: {r:?}"
    );
    assert_eq!(r.in_use, vec![in_use.name().to_string()], "{r:?}");
    if engine == Engine::Pg {
        assert!(place.members().is_empty(), "{:?}", place.members());
    }
    assert_eq!(place.existing(), vec![in_use.name().to_string()]);
    assert_eq!(num(&mut conn, COUNT_CLIENTS), 6, "still usable");
    // The other prefix was not touched: its template and clone are there.
    let theirs = place.existing_with(&other_prefix);
    assert_eq!(theirs.len(), 2, "{theirs:?} ({others})");
    drop(conn);
    drop(in_use);
    assert!(place.existing().is_empty());
    // After a prune took the template, the next request builds it again.
    let db = place.builder().pool(0).create().unwrap();
    assert!(db.built_template());
    drop(db);
    let r = testdb::prune(
        &place.url,
        &PruneOptions {
            prefix: Some(other_prefix.clone()),
            older_than: Duration::ZERO,
            dry_run: false,
        },
    )
    .unwrap();
    assert_eq!(r.removed.len(), 2, "{r:?}");
}

#[test]
fn pg_prune_removes_leaked_clones_and_old_templates_never_in_use() {
    prune_removes_leaked_clones_and_old_templates_never_in_use(Engine::Pg);
}

#[test]
fn sqlite_prune_removes_leaked_clones_and_old_templates_never_in_use() {
    prune_removes_leaked_clones_and_old_templates_never_in_use(Engine::Sqlite);
}

fn clone_while_another_test_uses_the_template(engine: Engine) {
    let place = Place::new(engine, "use");
    let builder = place.builder();
    let (template, _) = builder.template().unwrap();
    let busy = builder.create().unwrap();
    let mut conn = busy.connect().unwrap();
    conn.execute("BEGIN; UPDATE clients SET name = 'busy'")
        .unwrap();
    // Clones made concurrently, while another test works in its clone.
    let names: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let db = builder.create().unwrap();
                    let mut c = db.connect().unwrap();
                    assert_eq!(num(&mut c, COUNT_CLIENTS), 6);
                    db.name().to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(names.len(), 6);
    conn.execute("ROLLBACK").unwrap();
    if engine == Engine::Pg {
        // Nobody can hold the template itself: connections to it are refused.
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&format!("/{template}"));
        let url = url.to_string();
        let e = Connection::open(&dbfixtures::DatabaseUrl::parse(&url).unwrap(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not currently accepting connections"), "{e}");
    }
}

#[test]
fn pg_clone_while_another_test_uses_the_template() {
    clone_while_another_test_uses_the_template(Engine::Pg);
}

#[test]
fn sqlite_clone_while_another_test_uses_the_template() {
    clone_while_another_test_uses_the_template(Engine::Sqlite);
}

fn rollback_path_restores_rows_and_sequences(engine: Engine) {
    let place = Place::new(engine, "rb");
    let rb = place.builder().rollback_db().unwrap();
    for _ in 0..3 {
        let mut tx = rb.begin().unwrap();
        assert_eq!(num(&mut tx, COUNT_CLIENTS), 6);
        // The same id every time: the sequence is put back after each test.
        assert_eq!(num(&mut tx, INSERT_CLIENT), 7);
        assert_eq!(num(&mut tx, INSERT_CLIENT), 8);
        // The code under test's own transactions are savepoints inside the test's.
        let r: dbfixtures::Result<()> =
            tx.transaction(dbfixtures::backend::TxMode::ReadWrite, |c| {
                c.execute("DELETE FROM payments")?;
                Err(dbfixtures::Error::Invalid("rolled back".into()))
            });
        assert!(r.is_err());
        assert_eq!(
            num(&mut tx, "SELECT CAST(count(*) AS TEXT) AS j FROM payments"),
            10
        );
    }
    // A panicking test leaves nothing behind either.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut tx = rb.begin().unwrap();
        num(&mut tx, INSERT_CLIENT);
        tx.execute("SAVEPOINT dangling").unwrap();
        // A failing statement (PostgreSQL: the transaction is now aborted).
        assert!(tx
            .execute("INSERT INTO clients (id, name) VALUES (1, 'duplicate')")
            .is_err());
        panic!("test fails");
    }));
    assert!(r.is_err());
    let mut tx = rb.begin().unwrap();
    assert_eq!(num(&mut tx, COUNT_CLIENTS), 6);
    assert_eq!(num(&mut tx, INSERT_CLIENT), 7);
    tx.rollback().unwrap();
    // The next test can start (the connection is free again).
    let mut tx = rb.begin().unwrap();
    assert_eq!(num(&mut tx, INSERT_CLIENT), 7);
    drop(tx);
    // Nothing was ever committed.
    let mut direct = rb.database().connect().unwrap();
    assert_eq!(num(&mut direct, COUNT_CLIENTS), 6);
}

#[test]
fn pg_rollback_path_restores_rows_and_sequences() {
    rollback_path_restores_rows_and_sequences(Engine::Pg);
}

#[test]
fn sqlite_rollback_path_restores_rows_and_sequences() {
    rollback_path_restores_rows_and_sequences(Engine::Sqlite);
}

// ---------------------------------------------------------------------------------------------
// CLI

fn cli(place: &Place, args: &[impl AsRef<std::ffi::OsStr>]) -> Out {
    let mut c = cmd();
    c.args(["testdb"])
        .args(args)
        .arg("--database-url")
        .arg(&place.url)
        .env("DBFIXTURES_TESTDB_FILL_LOG", place.fill_log());
    Out::from(c.output().unwrap())
}

fn cli_create_drop_prune(engine: Engine) {
    let place = Place::new(engine, "cli");
    let args = place.create_args(None);
    // Several test processes at once (nextest style): one builds, all get a database.
    let outs: Vec<Out> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| cli(&place, &args))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        assert_eq!(o.code, 0, "{o:?}");
    }
    let built = outs
        .iter()
        .filter(|o| o.stderr.contains("built template"))
        .count();
    assert_eq!(built, 1, "{outs:?}");
    let urls: Vec<String> = outs.iter().map(|o| o.stdout.trim().to_string()).collect();
    for u in &urls {
        let mut c = Connection::open(&dbfixtures::DatabaseUrl::parse(u).unwrap(), false).unwrap();
        assert_eq!(num(&mut c, COUNT_CLIENTS), 6, "{u}");
        assert_eq!(num(&mut c, INSERT_CLIENT), 7, "{u}");
    }
    assert_eq!(place.existing().len(), 5);
    // The pool fillers the creates started (PostgreSQL) are done before prune is checked.
    wait_for_fillers(&place.prefix);
    let members = format!("{}_p_", place.prefix);

    let o = cli(&place, &["drop", &urls[0]]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(place.existing().len(), 4);
    // Never something it did not make.
    let foreign = match engine {
        Engine::Pg => admin_url(),
        Engine::Sqlite => {
            let p = place.dir.path().join("mine.db");
            std::fs::write(&p, b"").unwrap();
            p.display().to_string()
        }
    };
    let o = cli(&place, &["drop", &foreign]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("refusing"), "{o:?}");

    // The clones' owner is this test process (the CLI's parent), alive: kept at the default age.
    let o = cli(&place, &["prune", "--prefix", &place.prefix]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "", "{o:?}");
    let o = cli(
        &place,
        &[
            "prune",
            "--prefix",
            &place.prefix,
            "--older-than",
            "0",
            "--dry-run",
        ],
    );
    assert_eq!(
        o.stdout
            .lines()
            .filter(|l| !l.starts_with(&members))
            .count(),
        4,
        "3 clones and the template (and the free pool members): {o:?}"
    );
    assert_eq!(place.existing().len(), 4);
    let o = cli(
        &place,
        &["prune", "--prefix", &place.prefix, "--older-than", "0s"],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let removed = o.stdout.lines().filter(|l| !l.starts_with(&members));
    assert_eq!(removed.count(), 4, "{o:?}");
    assert!(place.existing().is_empty());
    if engine == Engine::Pg {
        assert!(place.members().is_empty(), "{:?}", place.members());
    }
}

#[test]
fn pg_cli_create_drop_prune() {
    cli_create_drop_prune(Engine::Pg);
}

#[test]
fn sqlite_cli_create_drop_prune() {
    cli_create_drop_prune(Engine::Sqlite);
}

#[test]
fn cli_never_prints_the_password() {
    // A password the trust-auth server ignores, in the server URL.
    let url = admin_url().replace("postgres@", "postgres:s3cr3tpw@");
    let prefix = format!("tdbp_pw_{}", std::process::id());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let out = Out::from(
        cmd()
            .args([
                "testdb",
                "create",
                "--pool",
                "0",
                "--prefix",
                &prefix,
                "--migrations",
            ])
            .arg(fixtures.join("migrations/postgresql"))
            .arg(fixtures.join("demo.json"))
            .args(["--database-url", &url])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !out.stdout.contains("s3cr3tpw") && !out.stderr.contains("s3cr3tpw"),
        "{out:?}"
    );
    assert!(out.stdout.starts_with("postgres://postgres@"), "{out:?}");
    let r = testdb::prune(
        &url,
        &PruneOptions {
            prefix: Some(prefix),
            older_than: Duration::ZERO,
            dry_run: false,
        },
    )
    .unwrap();
    assert_eq!(r.removed.len(), 2, "{r:?}");
}

fn failed_build_names_the_problem_and_leaves_nothing(engine: Engine) {
    let place = Place::new(engine, "bad");
    let bad = place.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"clients": [{"id": 1, "nmae": "typo"}]}"#).unwrap();
    let b = TestDbBuilder::new(place.url.clone())
        .prefix(place.prefix.clone())
        .migrations(place.migrations())
        .fixtures([&bad]);
    let e = b.create().unwrap_err().to_string();
    assert!(e.contains("bad.json") && e.contains("nmae"), "{e}");
    assert!(place.existing().is_empty(), "{:?}", place.existing());
    // Fixed: the next request builds it.
    std::fs::write(&bad, r#"{"clients": [{"id": 1, "name": "fixed"}]}"#).unwrap();
    let b = TestDbBuilder::new(place.url.clone())
        .prefix(place.prefix.clone())
        .migrations(place.migrations())
        .fixtures([&bad]);
    let db = b.create().unwrap();
    assert!(db.built_template());
    assert_eq!(num(&mut db.connect().unwrap(), COUNT_CLIENTS), 1);
}

#[test]
fn pg_failed_build_names_the_problem_and_leaves_nothing() {
    failed_build_names_the_problem_and_leaves_nothing(Engine::Pg);
}

#[test]
fn sqlite_failed_build_names_the_problem_and_leaves_nothing() {
    failed_build_names_the_problem_and_leaves_nothing(Engine::Sqlite);
}

// ---------------------------------------------------------------------------------------------
// The pool of ready clones (PostgreSQL; SQLite accepts the option and keeps none)

/// Each test holds its database while the others insert: a database handed out twice would
/// show another test's row, and the same oid twice.
fn use_exclusively(db: &testdb::TestDatabase, barrier: &Barrier) -> u32 {
    let mut conn = db.connect().unwrap();
    assert_eq!(num(&mut conn, COUNT_CLIENTS), 6, "{}", db.name());
    barrier.wait();
    assert_eq!(num(&mut conn, INSERT_CLIENT), 7, "{}", db.name());
    barrier.wait();
    assert_eq!(
        num(&mut conn, COUNT_CLIENTS),
        7,
        "only its own insert: {}",
        db.name()
    );
    oid_of(&mut conn)
}

/// Every member that was free before is now either handed out (exactly once) or still free,
/// and at least one was handed out.
fn check_members_went_to_one_test_each(
    before: &[(String, u32)],
    after: &[(String, u32)],
    handed_out: &[u32],
) {
    let unique: HashSet<u32> = handed_out.iter().copied().collect();
    assert_eq!(
        unique.len(),
        handed_out.len(),
        "a database handed out twice: {handed_out:?}"
    );
    let still_free: HashSet<u32> = after.iter().map(|m| m.1).collect();
    let claimed = before.iter().filter(|m| unique.contains(&m.1)).count();
    for (name, oid) in before {
        assert!(
            unique.contains(oid) || still_free.contains(oid),
            "member {name} vanished: {before:?} / {after:?} / {handed_out:?}"
        );
    }
    // The first claim to succeed found only these members.
    assert!(
        claimed >= 1,
        "no free member was claimed: {before:?} / {handed_out:?}"
    );
}

#[test]
fn pg_pool_claims_by_many_threads_never_share_a_database() {
    let place = Place::new(Engine::Pg, "pth");
    let builder = place.builder().pool(4);
    assert_eq!(builder.fill_pool().unwrap(), 4);
    let before = place.members();
    assert_eq!(before.len(), 4, "{before:?}");
    // 12 tests at once, while the filler refills in the background.
    let barrier = Barrier::new(12);
    let (dbs, oids): (Vec<testdb::TestDatabase>, Vec<u32>) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..12)
            .map(|_| {
                s.spawn(|| {
                    let db = builder.create().unwrap();
                    let oid = use_exclusively(&db, &barrier);
                    (db, oid)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).unzip()
    });
    let before_oids: HashSet<u32> = before.iter().map(|m| m.1).collect();
    for (db, oid) in dbs.iter().zip(&oids) {
        if before_oids.contains(oid) {
            assert!(db.from_pool(), "{} is a claimed member", db.name());
        }
        assert!(db.name().contains("_c_"), "{}", db.name());
    }
    assert!(dbs.iter().filter(|d| d.from_pool()).count() >= 1, "{dbs:?}");
    check_members_went_to_one_test_each(&before, &place.members(), &oids);
    // A claimed database is an ordinary clone: its handle drops it.
    drop(dbs);
    drop(builder);
    assert_eq!(
        place.existing().len(),
        1,
        "only the template: {:?}",
        place.existing()
    );
}

#[test]
fn pg_pool_claims_by_several_processes_never_share_a_database() {
    let place = Place::new(Engine::Pg, "ppr");
    let args = place.create_args(Some("3"));
    // The first builds the template; its detached filler fills the pool.
    let first = cli(&place, &args);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stderr.contains("built template"), "{first:?}");
    wait_for_fillers(&place.prefix);
    let before = place.members();
    assert_eq!(
        before.len(),
        3,
        "the detached filler filled the pool: {before:?}; its log:\n{}",
        place.fill_log_text()
    );
    // Six test processes at once (nextest, pytest-xdist).
    let outs: Vec<Out> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6).map(|_| s.spawn(|| cli(&place, &args))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut urls = vec![first.stdout.trim().to_string()];
    for o in &outs {
        assert_eq!(o.code, 0, "{o:?}");
        assert!(!o.stderr.contains("built template"), "{o:?}");
        urls.push(o.stdout.trim().to_string());
    }
    let barrier = Barrier::new(urls.len());
    let oids: Vec<u32> = std::thread::scope(|s| {
        let hs: Vec<_> = urls
            .iter()
            .map(|u| {
                let barrier = &barrier;
                s.spawn(move || {
                    let url = dbfixtures::DatabaseUrl::parse(u).unwrap();
                    let mut conn = Connection::open(&url, false).unwrap();
                    assert_eq!(num(&mut conn, COUNT_CLIENTS), 6, "{u}");
                    barrier.wait();
                    assert_eq!(num(&mut conn, INSERT_CLIENT), 7, "{u}");
                    barrier.wait();
                    assert_eq!(num(&mut conn, COUNT_CLIENTS), 7, "only its own insert: {u}");
                    oid_of(&mut conn)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    wait_for_fillers(&place.prefix);
    check_members_went_to_one_test_each(&before, &place.members(), &oids);
    // And the pool is topped up again for the next process.
    assert_eq!(
        place.members().len(),
        3,
        "{:?}; the fillers' log:\n{}",
        place.members(),
        place.fill_log_text()
    );
    assert!(
        place.fill_log_text().contains("pool topped up"),
        "{}",
        place.fill_log_text()
    );
    for u in &urls {
        assert_eq!(cli(&place, &["drop", u]).code, 0);
    }
    assert_eq!(place.existing().len(), 1, "{:?}", place.existing());
}

/// The metadata of a pool member of a key made at `created`.
fn member_meta(prefix: &str, key: &str, created: u64) -> testdb::Meta {
    testdb::Meta {
        kind: testdb::Kind::Pool,
        prefix: prefix.to_string(),
        key: key.to_string(),
        created,
        pid: 1,
        host: "elsewhere".into(),
    }
}

/// `COMMENT ON DATABASE` with testdb's metadata (the JSON is free of quotes to escape).
fn set_comment(conn: &mut Connection, db: &str, meta: &testdb::Meta) {
    let json = serde_json::to_string(meta).unwrap();
    assert!(!json.contains('\''));
    conn.execute(&format!(
        "COMMENT ON DATABASE \"{db}\" IS 'dbfixtures testdb {json}'"
    ))
    .unwrap();
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn pg_pool_never_hands_out_a_member_of_an_old_key() {
    let place = Place::new(Engine::Pg, "pkey");
    let old = place.builder().pool(3);
    assert_eq!(old.fill_pool().unwrap(), 3);
    let k1 = old.key().unwrap();
    let old_members = place.members();
    assert_eq!(old_members.len(), 3, "{old_members:?}");

    // One byte of a fixture: a new key, a new template, and the old key's free members go.
    let text = std::fs::read_to_string(place.fixture()).unwrap();
    std::fs::write(
        place.fixture(),
        text.replacen("José Álvarez", "Josè Álvarez", 1),
    )
    .unwrap();
    let b = place.builder().pool(2);
    let k2 = b.key().unwrap();
    assert_ne!(k1, k2);
    let (template, built) = b.template().unwrap();
    assert!(built);
    assert!(
        place.members().is_empty(),
        "old key's members swept: {:?}",
        place.members()
    );

    // A decoy: the old template's data under a name of the new key, with the old key in its
    // comment (as a member made by a process still running the old files would be if the 16
    // hex digits of the name were all that was checked).
    let decoy = format!("{}_p_{}_1_1", place.prefix, &k2[..16]);
    let old_template = format!("{}_t_{}", place.prefix, &k1[..16]);
    let mut a = admin();
    a.execute(&format!(
        "CREATE DATABASE \"{decoy}\" TEMPLATE \"{old_template}\" ALLOW_CONNECTIONS false"
    ))
    .unwrap();
    set_comment(&mut a, &decoy, &member_meta(&place.prefix, &k1, now()));
    let decoy_oid = place.members()[0].1;
    assert_ne!(template, decoy);

    let new_name = "SELECT CAST(count(*) AS TEXT) AS j FROM clients WHERE name = 'Josè Álvarez'";
    let mut oids = Vec::new();
    for round in 0..2 {
        for _ in 0..3 {
            let db = b.create().unwrap();
            let mut conn = db.connect().unwrap();
            assert_eq!(num(&mut conn, new_name), 1, "new data in {}", db.name());
            let oid = oid_of(&mut conn);
            assert_ne!(oid, decoy_oid, "the decoy was handed out");
            assert!(!old_members.iter().any(|m| m.1 == oid));
            oids.push((oid, db.from_pool()));
        }
        if round == 0 {
            // Filled to 2 without counting the decoy; the next round claims from it.
            assert_eq!(b.fill_pool().unwrap(), 2);
        }
    }
    assert!(oids[3..].iter().any(|(_, pooled)| *pooled), "{oids:?}");
    assert!(
        place.members().iter().any(|m| m.0 == decoy),
        "the decoy is still there, unclaimed"
    );
    // Prune takes it when its key is not the template's (here: at age 0 with the rest).
    drop(b);
    drop(old);
    let r = place.prune(Duration::ZERO);
    assert!(r.removed.contains(&decoy), "{r:?}");
}

/// Starts the hidden `testdb fill` (what `testdb create` starts) and kills it while its first
/// `CREATE DATABASE` runs: the server finishes that CREATE, so a member is left without its
/// comment. Returns its name once the filler's backend is gone.
fn crash_a_filler(place: &Place) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dbfixtures"))
        .args([
            "testdb",
            "fill",
            "--pool",
            "2",
            "--prefix",
            &place.prefix,
            "--migrations",
        ])
        .arg(place.migrations())
        .arg("--")
        .arg(place.fixture())
        .env("DATABASE_URL", &place.url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut a = admin();
    let running = format!(
        "SELECT coalesce(json_agg(pid), '[]')::text AS j FROM pg_stat_activity \
         WHERE state = 'active' AND starts_with(query, 'CREATE DATABASE \"{}_p_')",
        place.prefix
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let backend = loop {
        let pids: Vec<i32> = a.query_json(&running).unwrap();
        if let Some(p) = pids.first() {
            break *p;
        }
        assert!(
            Instant::now() < deadline,
            "the filler never ran CREATE DATABASE"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // Its backend completes the CREATE, then notices its client is gone and exits.
    let gone = format!(
        "SELECT to_json(NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {backend}))::text AS j"
    );
    while !a.query_json::<bool>(&gone).unwrap() {
        assert!(
            Instant::now() < deadline,
            "the filler's backend never exited"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let left: Vec<String> = a
        .query_json(&format!(
            "SELECT coalesce(json_agg(datname), '[]')::text AS j FROM pg_database \
             WHERE starts_with(datname, '{}_p_') AND shobj_description(oid, 'pg_database') IS NULL",
            place.prefix
        ))
        .unwrap();
    assert_eq!(left.len(), 1, "one member without its comment: {left:?}");
    left.into_iter().next().unwrap()
}

#[test]
fn pg_pool_member_of_a_crashed_filler_is_never_claimed_and_is_swept() {
    let place = Place::new(Engine::Pg, "porph");
    let b = place.builder().pool(2);
    b.template().unwrap();

    // Prune (default age: it is seconds old) removes it: no filler holds its key's lock.
    let orphan = crash_a_filler(&place);
    let r = place.prune(Duration::from_secs(3600));
    assert!(r.removed.contains(&orphan), "{r:?}");
    assert!(place.members().is_empty(), "{:?}", place.members());

    // Claims never take it; the next filler (holding the lock) drops it and fills.
    let orphan = crash_a_filler(&place);
    let orphan_oid = place.members()[0].1;
    for _ in 0..3 {
        let db = b.create().unwrap();
        assert_ne!(
            oid_of(&mut db.connect().unwrap()),
            orphan_oid,
            "orphan handed out"
        );
    }
    assert_eq!(b.fill_pool().unwrap(), 2);
    let members = place.members();
    assert!(!members.iter().any(|m| m.0 == orphan), "{members:?}");
    assert_eq!(members.len(), 2, "{members:?}");
}

#[test]
fn pg_prune_sweeps_free_members_by_age_and_with_their_template_never_a_claimed_one() {
    let place = Place::new(Engine::Pg, "ppru");
    let b = place.builder().pool(3);
    assert_eq!(b.fill_pool().unwrap(), 3);
    let key = b.key().unwrap();
    let members = place.members();
    // Young, template there: kept.
    let r = place.prune(Duration::from_secs(3600));
    assert!(r.removed.is_empty(), "{r:?}");
    assert_eq!(place.members(), members);

    // One made two hours ago: it goes at the default age, the others stay.
    let mut a = admin();
    set_comment(
        &mut a,
        &members[0].0,
        &member_meta(&place.prefix, &key, now() - 7200),
    );
    let r = place.prune(Duration::from_secs(3600));
    assert_eq!(r.removed, vec![members[0].0.clone()], "{r:?}");
    assert_eq!(place.members(), members[1..].to_vec());

    // A claim in progress (RENAME is the first step of a claim; not committed yet) while a
    // prune at age 0 runs: the prune waits for it, finds the member gone, and leaves the new
    // clone alone.
    let clone = format!(
        "{}_c_{}_{}_999",
        place.prefix,
        &key[..16],
        std::process::id()
    );
    let mut claimer = admin();
    claimer
        .execute(&format!(
            "BEGIN; ALTER DATABASE \"{}\" RENAME TO \"{clone}\"; \
             ALTER DATABASE \"{clone}\" WITH ALLOW_CONNECTIONS true",
            members[1].0,
        ))
        .unwrap();
    let clone_meta = testdb::Meta {
        kind: testdb::Kind::Clone,
        pid: std::process::id(),
        ..member_meta(&place.prefix, &key, now())
    };
    set_comment(&mut claimer, &clone, &clone_meta);
    drop(b);
    let r = std::thread::scope(|s| {
        let pruning = s.spawn(|| place.prune(Duration::ZERO));
        // Wait until prune is blocked on the member's lock, then commit the claim.
        let waiting = format!(
            "SELECT to_json(EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND starts_with(query, 'DROP DATABASE \"{}\"')))::text AS j",
            members[1].0
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !a.query_json::<bool>(&waiting).unwrap() {
            assert!(Instant::now() < deadline, "prune never reached the member");
            std::thread::sleep(Duration::from_millis(5));
        }
        claimer.execute("COMMIT").unwrap();
        pruning.join().unwrap()
    });
    assert!(r.in_use.contains(&members[1].0), "claimed meanwhile: {r:?}");
    assert!(r.removed.contains(&members[2].0), "{r:?}");
    assert!(
        r.removed.iter().any(|n| n.contains("_t_")),
        "template: {r:?}"
    );
    let mut url = url::Url::parse(&admin_url()).unwrap();
    url.set_path(&format!("/{clone}"));
    let url = dbfixtures::DatabaseUrl::parse(url.as_str()).unwrap();
    assert_eq!(
        num(&mut Connection::open(&url, false).unwrap(), COUNT_CLIENTS),
        6
    );
    a.execute(&format!("DROP DATABASE \"{clone}\"")).unwrap();

    // Template gone (dropped by hand): its young members go at the default age.
    let b = place.builder().pool(2);
    assert_eq!(b.fill_pool().unwrap(), 2);
    drop(b);
    let template = format!("{}_t_{}", place.prefix, &key[..16]);
    a.execute(&format!(
        "ALTER DATABASE \"{template}\" WITH IS_TEMPLATE false"
    ))
    .unwrap();
    a.execute(&format!("DROP DATABASE \"{template}\"")).unwrap();
    let r = place.prune(Duration::from_secs(3600));
    assert_eq!(r.removed.len(), 2, "{r:?}");
    assert!(place.members().is_empty(), "{:?}", place.members());
}

#[test]
fn pg_pool_disabled_still_works() {
    let place = Place::new(Engine::Pg, "poff");
    // Members of another builder's pool are there; a builder with pool 0 does not take them.
    let filled = place.builder().pool(2);
    assert_eq!(filled.fill_pool().unwrap(), 2);
    drop(filled);
    let members = place.members();
    let b = place.builder().pool(0);
    for _ in 0..3 {
        let db = b.create().unwrap();
        assert!(!db.from_pool());
        assert_eq!(num(&mut db.connect().unwrap(), COUNT_CLIENTS), 6);
    }
    assert_eq!(place.members(), members, "neither claimed nor refilled");
    drop(b);

    // The CLI with DBFIXTURES_TESTDB_POOL=0: no claim, no filler.
    let create = |pool_env: &str| {
        let mut c = cmd();
        c.arg("testdb")
            .args(place.create_args(None))
            .args(["--database-url", &place.url])
            .env(testdb::POOL_ENV, pool_env);
        Out::from(c.output().unwrap())
    };
    let o = create("0");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!fillers_running(&place.prefix));
    assert_eq!(place.members(), members);
    let url = dbfixtures::DatabaseUrl::parse(o.stdout.trim()).unwrap();
    let oid = oid_of(&mut Connection::open(&url, false).unwrap());
    assert!(!members.iter().any(|m| m.1 == oid));
    // A bad value is an error naming the variable.
    let o = create("lots");
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains(testdb::POOL_ENV), "{o:?}");
}

#[test]
fn pg_create_without_background_filling_leaves_the_pool_to_another_filler() {
    // What `testdb create` does: no filler thread in a process that exits at once, so the
    // filler started after it never finds the fillers' lock held by a thread about to die
    // (CI once saw that filler do nothing and the pool stay empty).
    let place = Place::new(Engine::Pg, "pbg");
    let b = place.builder().pool(2).fill_in_background(false);
    let first = b.create().unwrap();
    assert!(!first.from_pool());
    assert_eq!(b.top_up_pool().unwrap(), Some(2), "the lock was free");
    assert_eq!(place.members().len(), 2);
    let second = b.create().unwrap();
    assert!(second.from_pool());
    assert_eq!(num(&mut second.connect().unwrap(), COUNT_CLIENTS), 6);
    assert_eq!(
        place.members().len(),
        1,
        "nothing refilled in the background: {:?}",
        place.members()
    );
}

#[test]
fn sqlite_pool_option_is_accepted_and_keeps_nothing() {
    let place = Place::new(Engine::Sqlite, "pool");
    let b = place.builder().pool(3);
    assert_eq!(b.fill_pool().unwrap(), 0);
    let db = b.create().unwrap();
    assert!(!db.from_pool());
    assert_eq!(num(&mut db.connect().unwrap(), COUNT_CLIENTS), 6);
    // The template and this clone: nothing kept in advance.
    assert_eq!(place.existing().len(), 2, "{:?}", place.existing());
    drop(db);
    let o = cli(&place, &place.create_args(Some("3")));
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!fillers_running(&place.prefix), "no filler for SQLite");
    assert_eq!(place.existing().len(), 2, "{:?}", place.existing());
}
