//! `cargo bench --bench testdb`: milliseconds per ready test database, p50 and p95, for
//!
//! - `clone`: `TestDbBuilder::create` once the template exists (CREATE DATABASE ... TEMPLATE,
//!   with the strategy `Auto` picks, and each strategy forced, on PostgreSQL 15+; a file copy on
//!   SQLite);
//! - `rollback`: one test on the rollback path (`RollbackDb::begin` + the rollback and sequence
//!   restore when the transaction drops; the test's own insert is not counted);
//! - `create+migrate+load`: a new empty database, migrations, fixtures, per test (the
//!   `#[sqlx::test]` way: `create_without_template`),
//!
//! on the demo schema (fixtures/) and on a generated schema of 50 tables in 50 migrations with
//! 20 rows each, on every server named in `TESTDB_BENCH_URLS` (comma-separated; default the
//! local server, postgres://postgres@127.0.0.1:5432/postgres) and on SQLite.
//! `TESTDB_BENCH_N` sets the iterations (default 30; create+migrate+load runs a third of them).
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
            let (template, built) = b.template().expect("template");
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
            let _ = template;
            let (mut clones, mut drops) = time_clones(&b, n);
            let clone_p50 = row("clone", &mut clones);
            row("drop at the end of the test (not in clone)", &mut drops);
            if is_pg {
                for (strategy, name) in [
                    (Strategy::FileCopy, "clone FILE_COPY"),
                    (Strategy::WalLog, "clone WAL_LOG"),
                ] {
                    row(name, &mut time_clones(&builder(strategy), n).0);
                }
            }
            let rb = b.rollback_db().expect("rollback db");
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
                let db = b.create_without_template().expect("create+migrate+load");
                samples.push(t.elapsed());
                drop(db);
            }
            let fresh_p50 = row("create+migrate+load", &mut samples);
            println!(
                "| {label} | {} | clone speed-up over create+migrate+load | | {:.1}× | |",
                s.name,
                fresh_p50 / clone_p50
            );
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
