//! `testdb`: template built once, cloned per test, on PostgreSQL and SQLite; the rollback path;
//! prune; the CLI. Every test works under a prefix of its own (name + process id) so that its
//! prune never touches another test's (or another developer's) databases, and removes what it
//! made when it ends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

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

    /// Names of this test's databases that exist (PostgreSQL: in pg_database; SQLite: files).
    fn existing(&self) -> Vec<String> {
        self.existing_with(&self.prefix)
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
            let _ = testdb::prune(
                &self.url,
                &PruneOptions {
                    prefix: Some(self.prefix.clone()),
                    older_than: Duration::ZERO,
                    dry_run: false,
                },
            );
        }
    }
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

    // Default age: only the clone of a dead owner goes.
    let r = place.prune(Duration::from_secs(3600));
    assert_eq!(r.removed, vec![dead_name.clone()], "{r:?}");
    let left = place.existing();
    assert!(
        left.contains(&leaked_name) && !left.contains(&dead_name),
        "{left:?}"
    );

    // Age 0: the leaked clone and the template go; the clone in use stays.
    let r = place.prune(Duration::ZERO);
    assert!(r.removed.contains(&leaked_name), "{r:?}");
    assert!(
        r.removed.iter().any(|n| n.contains("_t_")),
        "template: {r:?}"
    );
    assert_eq!(r.in_use, vec![in_use.name().to_string()], "{r:?}");
    assert_eq!(place.existing(), vec![in_use.name().to_string()]);
    assert_eq!(num(&mut conn, COUNT_CLIENTS), 6, "still usable");
    // The other prefix was not touched: its template and clone are there.
    let theirs = place.existing_with(&other_prefix);
    assert_eq!(theirs.len(), 2, "{theirs:?} ({others})");
    drop(conn);
    drop(in_use);
    assert!(place.existing().is_empty());
    // After a prune took the template, the next request builds it again.
    let db = place.builder().create().unwrap();
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

fn cli(place: &Place, args: &[&str]) -> Out {
    let mut c = cmd();
    c.args(["testdb"])
        .args(args)
        .arg("--database-url")
        .arg(&place.url);
    Out::from(c.output().unwrap())
}

fn cli_create_drop_prune(engine: Engine) {
    let place = Place::new(engine, "cli");
    let m = place.migrations();
    let f = place.fixture();
    let args = [
        "create",
        "--prefix",
        &place.prefix,
        "--migrations",
        m.to_str().unwrap(),
        f.to_str().unwrap(),
    ];
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
        o.stdout.lines().count(),
        4,
        "3 clones and the template: {o:?}"
    );
    assert_eq!(place.existing().len(), 4);
    let o = cli(
        &place,
        &["prune", "--prefix", &place.prefix, "--older-than", "0s"],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("removed 4"), "{o:?}");
    assert!(place.existing().is_empty());
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
            .args(["testdb", "create", "--prefix", &prefix, "--migrations"])
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
