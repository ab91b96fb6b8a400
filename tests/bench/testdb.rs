//! `cargo bench --bench testdb`: milliseconds per ready test database, p50 and p95, for
//!
//! - `clone from the pool, test holds it H ms`: `TestDbBuilder::create` claiming a free ready
//!   clone (PostgreSQL), the pool warm at the start (members left by an earlier run, made here
//!   by `fill_pool`), each test then holding its database `TESTDB_BENCH_HOLD_MS` (default 50)
//!   before its handle drops it, while the background filler tops the pool up. The row says how
//!   many of the requests the pool served (the others fell back to a direct clone);
//! - `clone from the pool, drained`: a burst of tests faster than the filler can make clones:
//!   N databases asked for one after the other and all held until the last one is ready (the
//!   pool serves its members and what the filler adds meanwhile; the rest are direct clones);
//! - `clone direct (no pool)`: `create` with `.pool(0)`: CREATE DATABASE ... TEMPLATE with the
//!   strategy `Auto` picks, and each strategy forced, on PostgreSQL 15+; a file copy on SQLite
//!   (which keeps no pool: its pool rows time the same calls, each a file copy, "0/n served");
//! - `one process per test (nextest-like)`: the same `create` in a new process for each test,
//!   which holds its database H ms and exits (its filler thread dies with it); the time counts
//!   what such a process pays: reading and hashing the files for the key, connecting, claiming;
//! - `testdb create CLI per test (pytest-like)`: the wall time of `dbfixtures testdb create`
//!   (process start to exit: key, connect, claim, print, start the detached filler), each test
//!   then holding its database H ms before `testdb drop`;
//! - `rollback`: one test on the rollback path (`RollbackDb::begin` + the rollback and sequence
//!   restore when the transaction drops; the test's own insert is not counted);
//! - `create+migrate+load`: a new empty database, migrations, fixtures, per test (the
//!   `#[sqlx::test]` way: `create_without_template`),
//!
//! on the demo schema (fixtures/) and on a generated schema of 50 tables in 50 migrations with
//! 20 rows each, on every server named in `TESTDB_BENCH_URLS` (comma-separated; default the
//! local server, postgres://postgres@127.0.0.1:5432/postgres) and on SQLite.
//! `TESTDB_BENCH_N` sets the iterations (default 30; create+migrate+load runs a third of them).
//! The pool has its default size (`DBFIXTURES_TESTDB_POOL` changes it).
//!
//! Everything is created under the prefix `bench_<pid>` and removed at the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dbfixtures::testdb::{self, PruneOptions, Strategy, TestDbBuilder};

struct Schema {
    name: &'static str,
    /// (migrations dir for PostgreSQL, for SQLite)
    pg: PathBuf,
    sqlite: PathBuf,
    fixtures: PathBuf,
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let n: usize = std::env::var("TESTDB_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let urls: Vec<String> = std::env::var("TESTDB_BENCH_URLS")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let schemas = [
        Schema {
            name: "demo",
            pg: root.join("migrations/postgresql"),
            sqlite: root.join("migrations/sqlite"),
            fixtures: root.join("demo.json"),
        },
        generated_schema(tmp.path(), 50, 20),
    ];
    let hold = Duration::from_millis(
        std::env::var("TESTDB_BENCH_HOLD_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50),
    );
    let prefix = format!("bench_{}", std::process::id());
    let sqlite_url = format!("sqlite://{}", tmp.path().join("bench.db").display());

    println!("| server | schema | path | n | p50 ms | p95 ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for url in urls.iter().chain([&sqlite_url]) {
        let is_pg = url.starts_with("postgres");
        let label = if is_pg {
            server_label(url)
        } else {
            "sqlite".to_string()
        };
        for s in &schemas {
            let migrations = if is_pg { &s.pg } else { &s.sqlite };
            let builder = |strategy| {
                TestDbBuilder::new(url.clone())
                    .prefix(prefix.clone())
                    .migrations(migrations)
                    .fixtures([&s.fixtures])
                    .strategy(strategy)
            };
            let b = builder(Strategy::Auto);
            let started = Instant::now();
            let (_, built) = b.template().expect("template");
            let row = |path: &str, samples: &mut Vec<Duration>| {
                let (p50, p95) = percentiles(samples);
                println!(
                    "| {label} | {} | {path} | {} | {p50:.2} | {p95:.2} |",
                    s.name,
                    samples.len()
                );
                p50
            };
            if built {
                row("template build (once)", &mut vec![started.elapsed()]);
            }
            let direct = builder(Strategy::Auto).pool(0);
            let (mut clones, mut drops) = time_clones(&direct, n);
            let clone_p50 = row("clone direct (no pool)", &mut clones);
            row("drop at the end of the test (not in clone)", &mut drops);
            let pool_size = b.pool_size().expect("pool size");
            // SQLite keeps no pool: its rows show the same calls making file copies.
            let pooled_p50 = if pool_size > 0 {
                // Warm start: the members an earlier run of the suite left.
                b.fill_pool().expect("fill the pool");
                let (mut ready, mut drops, served) = time_pool(&b, n, hold);
                let p50 = row(
                    &format!(
                        "clone from the pool ({pool_size}), test holds it {} ms; {served}/{n} \
                         served by the pool",
                        hold.as_millis()
                    ),
                    &mut ready,
                );
                row("drop at the end of the test (not in clone)", &mut drops);
                b.fill_pool().expect("fill the pool");
                let (mut ready, served) = time_burst(&b, n);
                row(
                    &format!(
                        "clone from the pool, drained: {n} asked for in a row, all held to \
                         the end; {served}/{n} served by the pool"
                    ),
                    &mut ready,
                );
                Some(p50)
            } else {
                None
            };
            // Its filler stops: nothing refills in the background of what follows.
            drop(b);
            if pool_size > 0 {
                let target = Target {
                    url,
                    prefix: &prefix,
                    migrations,
                    fixtures: &s.fixtures,
                };
                target.fill();
                let (mut ready, served) = target.time_processes(n, hold);
                row(
                    &format!(
                        "clone from the pool, one process per test (nextest-like), holds it {} \
                         ms; {served}/{n} served by the pool",
                        hold.as_millis()
                    ),
                    &mut ready,
                );
                target.fill();
                let mut ready = target.time_cli(n, hold);
                row(
                    &format!(
                        "testdb create CLI, one per test (pytest-like), holds it {} ms",
                        hold.as_millis()
                    ),
                    &mut ready,
                );
                // Waits for the detached fillers still at work, so they time nothing below.
                target.fill();
            }
            if is_pg {
                for (strategy, name) in [
                    (Strategy::FileCopy, "clone direct FILE_COPY"),
                    (Strategy::WalLog, "clone direct WAL_LOG"),
                ] {
                    row(name, &mut time_clones(&builder(strategy).pool(0), n).0);
                }
            }
            let rb = direct.rollback_db().expect("rollback db");
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let mut tx = rb.begin().expect("begin");
                let mut spent = t.elapsed();
                // The test itself: draws a sequence value, which the rollback path gives back.
                let table = if s.name == "demo" { "clients" } else { "t01" };
                tx.execute(&format!("INSERT INTO {table} (name) VALUES ('bench')"))
                    .expect("insert");
                let t = Instant::now();
                tx.rollback().expect("rollback");
                spent += t.elapsed();
                samples.push(spent);
            }
            drop(rb);
            row("rollback", &mut samples);
            let mut samples = Vec::new();
            for _ in 0..(n / 3).max(3) {
                let t = Instant::now();
                let db = direct
                    .create_without_template()
                    .expect("create+migrate+load");
                samples.push(t.elapsed());
                drop(db);
            }
            let fresh_p50 = row("create+migrate+load", &mut samples);
            for (what, p50) in [("pool", pooled_p50), ("direct clone", Some(clone_p50))] {
                if let Some(p50) = p50 {
                    println!(
                        "| {label} | {} | speed-up of {what} over create+migrate+load | | {:.1}× | |",
                        s.name,
                        fresh_p50 / p50
                    );
                }
            }
        }
        let _ = testdb::prune(
            url,
            &PruneOptions {
                prefix: Some(prefix.clone()),
                older_than: Duration::ZERO,
                dry_run: false,
            },
        );
    }
}

const CHILD: &str = "TESTDB_BENCH_CHILD";

/// A test process: `create`, print the time it took and whether the pool served it, hold the
/// database, drop it, exit.
fn child() {
    let var = |k: &str| std::env::var(format!("{CHILD}_{k}")).expect(k);
    let t = Instant::now();
    let b = TestDbBuilder::new(var("URL"))
        .prefix(var("PREFIX"))
        .migrations(var("MIGRATIONS"))
        .fixtures([var("FIXTURES")]);
    let db = b.create().expect("clone");
    println!("{} {}", t.elapsed().as_secs_f64(), db.from_pool());
    let hold: u64 = var("HOLD_MS").parse().expect("hold");
    let test = Instant::now();
    db.connect()
        .expect("connect")
        .execute("SELECT 1")
        .expect("query");
    std::thread::sleep(Duration::from_millis(hold).saturating_sub(test.elapsed()));
    drop(db);
    // The process exits here, as a nextest test process does, filler thread and all.
    std::process::exit(0);
}

/// One server, prefix and schema, for the rows that run processes.
struct Target<'a> {
    url: &'a str,
    prefix: &'a str,
    migrations: &'a Path,
    fixtures: &'a Path,
}

impl Target<'_> {
    /// Fills the pool (warm start) with a builder of its own, then lets it go; waits for a
    /// filler at work first.
    fn fill(&self) {
        TestDbBuilder::new(self.url)
            .prefix(self.prefix)
            .migrations(self.migrations)
            .fixtures([self.fixtures])
            .fill_pool()
            .expect("fill the pool");
    }

    /// `n` test processes one after the other (see [`child`]): their `create` times, and how
    /// many the pool served.
    fn time_processes(&self, n: usize, hold: Duration) -> (Vec<Duration>, usize) {
        let exe = std::env::current_exe().expect("bench executable");
        let mut served = 0;
        let times = (0..n)
            .map(|_| {
                let out = std::process::Command::new(&exe)
                    .env(CHILD, "1")
                    .env(format!("{CHILD}_URL"), self.url)
                    .env(format!("{CHILD}_PREFIX"), self.prefix)
                    .env(format!("{CHILD}_MIGRATIONS"), self.migrations)
                    .env(format!("{CHILD}_FIXTURES"), self.fixtures)
                    .env(format!("{CHILD}_HOLD_MS"), hold.as_millis().to_string())
                    .output()
                    .expect("test process");
                assert!(out.status.success(), "{out:?}");
                let text = String::from_utf8(out.stdout).expect("UTF-8");
                let (secs, pooled) = text.trim().split_once(' ').expect("time and pooled");
                served += usize::from(pooled == "true");
                Duration::from_secs_f64(secs.parse().expect("seconds"))
            })
            .collect();
        (times, served)
    }

    /// Wall time of `n` `dbfixtures testdb create` one after the other, each database held
    /// `hold`, then dropped with `testdb drop` (not timed).
    fn time_cli(&self, n: usize, hold: Duration) -> Vec<Duration> {
        let cli = || {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dbfixtures"));
            c.env("DATABASE_URL", self.url);
            c
        };
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let out = cli()
                    .args(["testdb", "create", "--prefix", self.prefix, "--migrations"])
                    .arg(self.migrations)
                    .arg(self.fixtures)
                    .output()
                    .expect("testdb create");
                let spent = t.elapsed();
                assert!(out.status.success(), "{out:?}");
                let db_url = String::from_utf8(out.stdout).expect("UTF-8");
                std::thread::sleep(hold);
                let out = cli()
                    .args(["testdb", "drop", db_url.trim()])
                    .output()
                    .expect("testdb drop");
                assert!(out.status.success(), "{out:?}");
                spent
            })
            .collect()
    }
}

/// Time to a ready database from the pool, the time its drop takes when the test ends, and how
/// many came from the pool. Each test connects, reads, and holds its database `hold` in all.
fn time_pool(b: &TestDbBuilder, n: usize, hold: Duration) -> (Vec<Duration>, Vec<Duration>, usize) {
    let mut served = 0;
    let (ready, drops) = (0..n)
        .map(|_| {
            let t = Instant::now();
            let db = b.create().expect("clone");
            let spent = t.elapsed();
            served += usize::from(db.from_pool());
            let test = Instant::now();
            let mut conn = db.connect().expect("connect");
            conn.execute("SELECT 1").expect("query");
            drop(conn);
            std::thread::sleep(hold.saturating_sub(test.elapsed()));
            let t = Instant::now();
            drop(db);
            (spent, t.elapsed())
        })
        .unzip();
    (ready, drops, served)
}

/// Time to each of `n` ready databases asked for in a row while all are held, and how many came
/// from the pool.
fn time_burst(b: &TestDbBuilder, n: usize) -> (Vec<Duration>, usize) {
    let mut held = Vec::with_capacity(n);
    let times = (0..n)
        .map(|_| {
            let t = Instant::now();
            held.push(b.create().expect("clone"));
            t.elapsed()
        })
        .collect();
    let served = held.iter().filter(|d| d.from_pool()).count();
    (times, served)
}

/// Time to a ready clone, and the time its drop takes when the test ends.
fn time_clones(b: &TestDbBuilder, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    // One unmeasured clone first: the first one pays for the admin connection.
    drop(b.create().expect("clone"));
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let db = b.create().expect("clone");
            let spent = t.elapsed();
            let t = Instant::now();
            drop(db);
            (spent, t.elapsed())
        })
        .unzip()
}

/// p50 and p95 in milliseconds (nearest rank).
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.95))
}

/// `host:port (fsync on|off)`.
fn server_label(url: &str) -> String {
    let u = url::Url::parse(url).expect("URL");
    let hostport = format!(
        "{}:{}",
        u.host_str().unwrap_or(""),
        u.port().unwrap_or(5432)
    );
    let mut c = dbfixtures::Connection::open(&dbfixtures::DatabaseUrl::parse(url).unwrap(), false)
        .expect("connect");
    let fsync: String = c
        .query_json("SELECT to_json(current_setting('fsync'))::text AS j")
        .expect("fsync");
    format!("{hostport} fsync={fsync}")
}

/// `tables` migrations, one table each (referencing the previous one), with `rows` rows per
/// table in one fixture file; the same schema for both backends.
fn generated_schema(dir: &Path, tables: usize, rows: usize) -> Schema {
    let mut fixture = serde_json::Map::new();
    for (flavour, id) in [
        ("postgresql", "BIGSERIAL PRIMARY KEY"),
        ("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    ] {
        for t in 0..tables {
            let m = dir.join(format!(
                "gen/{flavour}/2024-01-01-{:06}_create_t{t:02}",
                t + 1
            ));
            std::fs::create_dir_all(&m).unwrap();
            let parent = if t == 0 {
                String::new()
            } else {
                format!(",\n    parent_id BIGINT REFERENCES t{:02} (id)", t - 1)
            };
            std::fs::write(
                m.join("up.sql"),
                format!(
                    "CREATE TABLE t{t:02} (\n    id {id},\n    name TEXT NOT NULL,\n    \
                     amount NUMERIC(10, 2) NOT NULL DEFAULT 0,\n    created_at TEXT{parent}\n);\n\
                     CREATE INDEX t{t:02}_name_idx ON t{t:02} (name);\n"
                ),
            )
            .unwrap();
            std::fs::write(m.join("down.sql"), format!("DROP TABLE t{t:02};\n")).unwrap();
        }
    }
    for t in 0..tables {
        let list: Vec<serde_json::Value> = (1..=rows)
            .map(|i| {
                let mut row = serde_json::json!({
                    "id": i, "name": format!("row {i} of t{t:02}"), "amount": i as f64 * 1.5,
                    "created_at": "2024-01-02T09:00:00+00:00"
                });
                if t > 0 {
                    row["parent_id"] = serde_json::json!(i);
                }
                row
            })
            .collect();
        fixture.insert(format!("t{t:02}"), serde_json::Value::Array(list));
    }
    let fixtures = dir.join("gen/fixtures.json");
    std::fs::write(
        &fixtures,
        serde_json::to_vec(&serde_json::Value::Object(fixture)).unwrap(),
    )
    .unwrap();
    Schema {
        name: "50 tables / 50 migrations",
        pg: dir.join("gen/postgresql"),
        sqlite: dir.join("gen/sqlite"),
        fixtures,
    }
}
