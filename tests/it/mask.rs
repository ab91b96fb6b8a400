//! `dump --mask` (issue 9), against real PostgreSQL and SQLite databases: no original value of a
//! masked column anywhere in the output (the whole output is searched for each one), masked
//! fixtures load into an empty copy of the schema (so every strategy's values fit their column),
//! unique columns stay unique on 100,000 rows, same salt ⇒ same bytes in every output form,
//! different salt ⇒ different bytes, the same value masks the same in two tables, NULLs stay,
//! and every refusal (keys, types, lengths, unknown names) happens before anything is written.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use dbfixtures::{Connection, DatabaseUrl};

use crate::support::{cmd, db_cmd, Out, TestDb};

// ---------------------------------------------------------------------------------------------
// Helpers

const SALT: &str = "test-salt-k3y";

/// `dbfixtures ARGS --database-url URL` with no salt in the environment.
fn run(db: &TestDb, args: &[&str]) -> Out {
    let mut c = db_cmd(db, args);
    c.env_remove("DBFIXTURES_MASK_SALT");
    Out::from(c.output().expect("run dbfixtures"))
}

fn ok(out: Out) -> String {
    assert_eq!(out.code, 0, "{out:#?}");
    out.stdout
}

/// A run that must fail with exit 2 before writing anything to stdout; returns stderr.
fn refused(out: Out) -> String {
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(out.stdout, "", "nothing may be written before the check");
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    out.stderr
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

/// The non-null values of `table.column` in a fixture, as text (strings unquoted).
fn values(fixture: &Value, table: &str, column: &str) -> Vec<String> {
    fixture[table]
        .as_array()
        .unwrap_or_else(|| panic!("no table {table} in the fixture"))
        .iter()
        .map(|r| &r[column])
        .filter(|v| !v.is_null())
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Every original value of every masked column is absent from the whole masked output.
fn assert_hidden(masked: &str, unmasked: &Value, columns: &[(&str, &str)]) {
    let mut checked = 0;
    for (table, column) in columns {
        let originals = values(unmasked, table, column);
        assert!(!originals.is_empty(), "{table}.{column} has no values");
        for v in originals {
            assert!(
                !masked.contains(&v),
                "original value {v:?} of {table}.{column} found in the masked output"
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const PG_SCHEMA: &str = "
CREATE TABLE users (
    id serial PRIMARY KEY,
    email varchar(120) NOT NULL UNIQUE,
    first_name text,
    last_name text,
    full_name varchar(40),
    phone varchar(30),
    address text,
    bio text,
    salary integer,
    score numeric(6,2),
    born date,
    seen_at timestamptz,
    woke_at timestamp,
    note text,
    secret text NOT NULL,
    token varchar(70) UNIQUE,
    prefs jsonb,
    nick text NOT NULL
);
CREATE TABLE orders (
    id serial PRIMARY KEY,
    user_id integer NOT NULL REFERENCES users (id),
    email text,
    placed date NOT NULL
);";

const PG_DATA: &str = "
INSERT INTO users (email, first_name, last_name, full_name, phone, address, bio, salary, score,
                   born, seen_at, woke_at, note, secret, token, prefs, nick)
SELECT 'origmail' || i || '@corp-secret.test', 'Origfirst' || i, 'Origlast' || i,
       'Origfull Person' || i, '+99 555 ' || (100000 + i), i || ' Origstreet Road',
       'Origbio text ' || i || ' with some words in it',
       7000000 + i, 5000.25 + i, DATE '1900-01-01' + i * 40,
       TIMESTAMPTZ '1990-01-01 12:34:56.789+00' + i * interval '40 days',
       TIMESTAMP '1970-06-01 08:00:00' + i * interval '40 days',
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'orignote' || i END,
       'origsecret' || i, 'origtoken' || i,
       CASE WHEN i % 2 = 0 THEN jsonb_build_object('origpref', i) END, 'nick' || i
  FROM generate_series(1, 200) i;
INSERT INTO orders (user_id, email, placed)
SELECT i, CASE WHEN i % 5 = 0 THEN NULL ELSE 'origmail' || i || '@corp-secret.test' END,
       DATE '2020-01-01' + i
  FROM generate_series(1, 60) i;";

/// Every strategy but `keep` on `users`, and `*.email` on every table.
const PG_RULES: &[&str] = &[
    "*.email=email",
    "users.first_name=first_name",
    "users.last_name=last_name",
    "users.full_name=full_name",
    "users.phone=phone",
    "users.address=address",
    "users.bio=text",
    "users.salary=int:1000..5000",
    "users.score=int:-50..50",
    "users.born=date_shift:15",
    "users.seen_at=date_shift:15",
    "users.woke_at=date_shift:15",
    "users.note=null",
    "users.secret=redact",
    "users.token=hash",
    "users.prefs=redact",
    "users.nick=keep",
];

const PG_MASKED: &[(&str, &str)] = &[
    ("users", "email"),
    ("orders", "email"),
    ("users", "first_name"),
    ("users", "last_name"),
    ("users", "full_name"),
    ("users", "phone"),
    ("users", "address"),
    ("users", "bio"),
    ("users", "salary"),
    ("users", "score"),
    ("users", "born"),
    ("users", "seen_at"),
    ("users", "woke_at"),
    ("users", "note"),
    ("users", "secret"),
    ("users", "token"),
    ("users", "prefs"),
];

fn pg_db(name: &str) -> TestDb {
    let db = TestDb::new(name);
    db.sql(PG_SCHEMA);
    db.sql(PG_DATA);
    db
}

fn mask_args<'a>(rules: &[&'a str]) -> Vec<&'a str> {
    rules.iter().flat_map(|r| ["--mask", r]).collect()
}

fn pg_masked_dump(db: &TestDb, salt: &str) -> String {
    let mut args = vec!["dump", "--mask-salt", salt];
    args.extend(mask_args(PG_RULES));
    ok(run(db, &args))
}

#[test]
fn pg_no_original_value_survives_and_the_fixture_loads_into_an_empty_copy() {
    let db = pg_db("mask_pg_all");
    let unmasked = json(&ok(run(&db, &["dump"])));
    let out = pg_masked_dump(&db, SALT);
    assert_hidden(&out, &unmasked, PG_MASKED);
    let masked = json(&out);

    // Shapes: every strategy writes what it says.
    let users = masked["users"].as_array().unwrap();
    assert_eq!(users.len(), 200);
    for (u, orig) in users.iter().zip(unmasked["users"].as_array().unwrap()) {
        assert_eq!(u["id"], orig["id"], "keys are kept");
        assert_eq!(u["nick"], orig["nick"], "keep keeps");
        let email = u["email"].as_str().unwrap();
        assert!(
            email.ends_with("@example.com") && email.len() <= 120,
            "{email}"
        );
        assert!(u["full_name"].as_str().unwrap().chars().count() <= 40);
        assert!(u["phone"].as_str().unwrap().chars().count() <= 30);
        let salary = u["salary"].as_i64().unwrap();
        assert!((1000..=5000).contains(&salary), "{salary}");
        let score = u["score"].as_f64().unwrap();
        assert!(
            (-50.0..=50.0).contains(&score) && score.fract() == 0.0,
            "{score}"
        );
        assert_eq!(u["note"], Value::Null);
        assert_eq!(u["secret"], "REDACTED");
        let token = u["token"].as_str().unwrap();
        assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            u["prefs"].is_null(),
            orig["prefs"].is_null(),
            "NULL stays NULL"
        );
        let bio = u["bio"].as_str().unwrap().chars().count();
        let orig_bio = orig["bio"].as_str().unwrap().chars().count();
        assert!(
            bio + 1 >= orig_bio && bio <= orig_bio,
            "text keeps the length"
        );
        for c in ["born", "seen_at", "woke_at"] {
            let (m, o) = (u[c].as_str().unwrap(), orig[c].as_str().unwrap());
            assert_ne!(m, o);
            assert_eq!(m[10..], o[10..], "{c}: only the date moves");
        }
    }
    // Shifted dates stay within ±15 days (checked by the database below, in days).
    let copy = TestDb::new("mask_pg_all_copy");
    copy.sql(PG_SCHEMA);
    let dir = temp();
    let file = dir.path().join("masked.json");
    fs::write(&file, &out).unwrap();
    ok(run(&copy, &["load", p(&file)]));
    assert_eq!(json(&ok(run(&copy, &["dump"]))), masked, "round trip");
    copy.sql("CREATE TABLE orig (LIKE users)");
    let orig_file = dir.path().join("orig.json");
    let orig_users = serde_json::json!({ "orig": unmasked["users"] });
    fs::write(&orig_file, orig_users.to_string()).unwrap();
    ok(run(&copy, &["load", p(&orig_file)]));
    let worst = copy
        .query_scalar(
            "SELECT max(greatest(abs(u.born - o.born), \
                 abs(u.seen_at::date - o.seen_at::date), abs(u.woke_at::date - o.woke_at::date))) \
             FROM users u JOIN orig o USING (id)",
        )
        .unwrap();
    assert!(worst.parse::<i64>().unwrap() <= 15, "{worst}");
    assert_eq!(
        copy.query_scalar(
            "SELECT count(*) FROM users u JOIN orig o USING (id) WHERE u.born = o.born"
        )
        .as_deref(),
        Some("0")
    );

    // Masked values still join: the same email in two tables masks to the same value.
    let by_id: std::collections::HashMap<i64, &Value> = users
        .iter()
        .map(|u| (u["id"].as_i64().unwrap(), &u["email"]))
        .collect();
    let mut joined = 0;
    for o in masked["orders"].as_array().unwrap() {
        if o["email"].is_null() {
            continue;
        }
        assert_eq!(&o["email"], by_id[&o["user_id"].as_i64().unwrap()]);
        joined += 1;
    }
    assert_eq!(joined, 48);
    let orders_nulls = masked["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["email"].is_null())
        .count();
    assert_eq!(orders_nulls, 12, "NULL stays NULL");
}

#[test]
fn pg_same_salt_same_bytes_in_every_output_form_other_salt_other_bytes() {
    let db = pg_db("mask_pg_salt");
    let a = pg_masked_dump(&db, SALT);
    assert_eq!(pg_masked_dump(&db, SALT), a, "same salt, same bytes");
    let b = pg_masked_dump(&db, "another salt");
    assert_ne!(a, b);
    let (ja, jb) = (json(&a), json(&b));
    for (t, c) in PG_MASKED {
        let (va, vb) = (values(&ja, t, c), values(&jb, t, c));
        if !["note", "secret", "prefs", "salary", "score"].contains(c) {
            // Constant strategies aside, a different salt changes (nearly) every value.
            let same = va.iter().zip(&vb).filter(|(x, y)| x == y).count();
            assert!(
                same * 10 < va.len(),
                "{t}.{c}: {same} of {} unchanged",
                va.len()
            );
        }
    }

    // The salt from the environment is the same salt; it is never printed.
    let mut c = db_cmd(&db, &["dump"]);
    c.args(mask_args(PG_RULES))
        .env("DBFIXTURES_MASK_SALT", SALT);
    let env_out = Out::from(c.output().unwrap());
    assert_eq!(env_out.stdout, a);
    assert!(!env_out.stderr.contains(SALT) && !env_out.stderr.contains("warning"));

    // -o FILE, -o FILE.gz and -o DIR/ hold the same masked data.
    let dir = temp();
    let file = dir.path().join("all.json");
    let gz = dir.path().join("all.json.gz");
    let per_table = dir.path().join("tables/");
    for target in [&file, &gz, &per_table] {
        let mut args = vec!["dump", "--mask-salt", SALT, "-o", p(target)];
        args.extend(mask_args(PG_RULES));
        ok(run(&db, &args));
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), a);
    let mut unzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(fs::File::open(&gz).unwrap()),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, a);
    for t in ["users", "orders"] {
        let one = json(&fs::read_to_string(per_table.join(format!("{t}.json"))).unwrap());
        assert_eq!(one[t], ja[t], "{t}.json");
    }
}

#[test]
fn pg_without_a_salt_warns_that_the_output_is_only_pseudonymous() {
    let db = pg_db("mask_pg_nosalt");
    let out = run(&db, &["dump", "--mask", "users.email=email"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("pseudonymous"), "{}", out.stderr);
    // Still deterministic: the fixed default key.
    assert_eq!(
        ok(run(&db, &["dump", "--mask", "users.email=email"])),
        out.stdout
    );
    assert_ne!(
        out.stdout,
        ok(run(
            &db,
            &["dump", "--mask", "users.email=email", "--mask-salt", "x"]
        ))
    );
    // keep changes nothing, so there is nothing to warn about.
    let keep = run(&db, &["dump", "--mask", "users.email=keep"]);
    assert!(!keep.stderr.contains("pseudonymous"), "{}", keep.stderr);
    assert_eq!(keep.stdout, ok(run(&db, &["dump"])));
}

#[test]
fn pg_key_columns_are_refused_before_anything_is_written() {
    let db = TestDb::new("mask_pg_keys");
    db.sql(
        "CREATE TABLE parent (id int PRIMARY KEY, code text NOT NULL UNIQUE, name text);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id),
                             parent_code text REFERENCES parent (code));
         INSERT INTO parent VALUES (1, 'c1', 'n1');
         INSERT INTO child VALUES (1, 1, 'c1');",
    );
    let dir = temp();
    let file = dir.path().join("out.json");
    for (rule, says) in [
        ("parent.id=hash", "primary key of parent"),
        (
            "child.parent_id=int:1..9",
            "foreign key (child_parent_id_fkey) to parent",
        ),
        (
            "parent.code=hash",
            "referenced by foreign key child_parent_code_fkey of child",
        ),
        ("*.parent_code=hash", "foreign key (child_parent_code_fkey)"),
    ] {
        let e = refused(run(&db, &["dump", "--mask", rule, "--mask-salt", "s"]));
        assert!(e.contains(rule) && e.contains(says), "{rule}: {e}");
        let e = refused(run(
            &db,
            &["dump", "--mask", rule, "--mask-salt", "s", "-o", p(&file)],
        ));
        assert!(e.contains(says), "{e}");
        assert!(!file.exists(), "no file after a refused rule");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temp file left"
        );
    }
    // keep on a key column is not masking.
    ok(run(&db, &["dump", "--mask", "parent.id=keep"]));
}

#[test]
fn pg_bad_rules_are_errors_naming_the_rule_before_output() {
    let db = pg_db("mask_pg_bad");
    db.sql(
        "CREATE TABLE shorty (id int PRIMARY KEY, code varchar(20) UNIQUE, tag varchar(10),
                              n bigint, d date, ts timestamptz, u uuid, flag boolean);",
    );
    for (rule, says) in [
        ("nosuch.email=email", "unknown table nosuch"),
        ("users.nosuch=email", "table users has no column \"nosuch\""),
        ("users.email=emial", "unknown strategy \"emial\""),
        ("users.email", "expected TABLE.COLUMN=STRATEGY"),
        ("*.nosuch=email", "matches no column"),
        ("users.salary=email", "email needs a text column"),
        ("users.bio=int:1..2", "needs an integer or numeric column"),
        ("users.bio=date_shift:3", "needs a date or timestamp column"),
        ("shorty.u=hash", "the column is uuid"),
        ("shorty.flag=redact", "the column is boolean"),
        (
            "users.salary=int:1..99999999999",
            "does not fit the column's type integer",
        ),
        (
            "users.score=int:1..10000",
            "does not fit the column's type numeric(6,2)",
        ),
        ("users.secret=null", "NOT NULL"),
        ("users.email=first_name", "unique constraint (email)"),
        ("users.token=text", "unique constraint (token)"),
        (
            "shorty.code=email",
            "at most 20 characters; email needs 28 to keep values unique",
        ),
        ("shorty.tag=email", "at most 10 characters; email needs 16"),
        ("users.salary=int:5..1", "MIN is above MAX"),
    ] {
        let e = refused(run(&db, &["dump", "--mask", rule]));
        assert!(e.contains(says), "{rule}: expected {says:?} in {e}");
        assert!(e.contains("(--mask)"), "{e}");
    }
    // Two globs that disagree on a column, unless an exact rule decides.
    let e = refused(run(
        &db,
        &["dump", "--mask", "*.email=email", "--mask", "users.e*=hash"],
    ));
    assert!(e.contains("also matched by"), "{e}");
    ok(run(
        &db,
        &[
            "dump",
            "--mask",
            "*.email=email",
            "--mask",
            "users.e*=hash",
            "--mask",
            "users.email=email",
        ],
    ));
    // A rule on a table outside the selection is checked to exist, not applied.
    let e = refused(run(
        &db,
        &["dump", "-t", "orders", "--mask", "nosuch.x=hash"],
    ));
    assert!(e.contains("nosuch"), "{e}");
    ok(run(
        &db,
        &["dump", "-t", "orders", "--mask", "users.bio=text"],
    ));
}

/// One of the unique tests' originals: `person<N>@corp.test`, `login<N>`, `nick<N>`.
fn is_original(v: &str) -> bool {
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    v.ends_with("@corp.test")
        || ["login", "nick"]
            .iter()
            .any(|p| v.strip_prefix(p).is_some_and(digits))
}

#[test]
fn pg_unique_columns_stay_unique_on_100000_rows() {
    let db = TestDb::new("mask_pg_unique");
    let ddl = "CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL UNIQUE,
                                    login varchar(16) UNIQUE, nick varchar(40) UNIQUE);";
    db.sql(ddl);
    db.sql(
        "INSERT INTO people SELECT i, 'person' || i || '@corp.test', 'login' || i, 'nick' || i
           FROM generate_series(1, 100000) i;",
    );
    let dir = temp();
    let file = dir.path().join("people.json");
    ok(run(
        &db,
        &[
            "dump",
            "-o",
            p(&file),
            "--mask-salt",
            SALT,
            "--mask",
            "people.email=email",
            "--mask",
            "people.login=hash",
            "--mask",
            "people.nick=email",
        ],
    ));
    let masked = json(&fs::read_to_string(&file).unwrap());
    for c in ["email", "login", "nick"] {
        let all = values(&masked, "people", c);
        assert_eq!(all.len(), 100_000);
        assert!(all.iter().all(|v| !is_original(v)), "{c} is masked");
        let distinct: BTreeSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), 100_000, "{c} stays unique");
    }
    assert!(values(&masked, "people", "login")
        .iter()
        .all(|l| l.len() == 16));
    // The database agrees: the unique constraints accept the masked rows.
    let copy = TestDb::new("mask_pg_unique_copy");
    copy.sql(ddl);
    ok(run(&copy, &["load", p(&file)]));
    assert_eq!(
        copy.query_scalar("SELECT count(DISTINCT email) FROM people")
            .as_deref(),
        Some("100000")
    );
}

#[test]
fn pg_config_file_rules_apply_and_flags_override_them() {
    let db = pg_db("mask_pg_config");
    let dir = temp();
    let conf = dir.path().join("dbfixtures.toml");
    fs::write(
        &conf,
        "[mask]\n\"*.email\" = \"email\"\n\"users.bio\" = \"redact\"\n\"users.phone\" = \"phone\"\n",
    )
    .unwrap();
    let from_file = json(&ok(run(
        &db,
        &["--config", p(&conf), "dump", "--mask-salt", SALT],
    )));
    assert!(values(&from_file, "orders", "email")
        .iter()
        .all(|e| e.ends_with("@example.com")));
    assert!(values(&from_file, "users", "bio")
        .iter()
        .all(|b| b == "REDACTED"));
    // The file in the current directory is found too; a flag replaces its rule for a column.
    let mut c = cmd();
    c.current_dir(dir.path())
        .args(["dump", "--mask-salt", SALT, "--mask", "users.bio=text"])
        .arg("--database-url")
        .arg(db.url());
    let overridden = json(&Out::from(c.output().unwrap()).stdout);
    assert_eq!(overridden["orders"], from_file["orders"]);
    assert!(values(&overridden, "users", "bio")
        .iter()
        .all(|b| b != "REDACTED"));
    assert_eq!(
        values(&overridden, "users", "phone"),
        values(&from_file, "users", "phone")
    );
    // A bad rule in the file names the file.
    fs::write(&conf, "[mask]\n\"users.bio\" = \"lorem\"\n").unwrap();
    let e = refused(run(&db, &["--config", p(&conf), "dump"]));
    assert!(e.contains("dbfixtures.toml") && e.contains("lorem"), "{e}");
}

#[test]
fn pg_date_shift_keeps_infinity_and_shifts_bc_dates() {
    let db = TestDb::new("mask_pg_badvalue");
    db.sql(
        "CREATE TABLE ev (id int PRIMARY KEY, at date);
         INSERT INTO ev VALUES (1, '2020-01-01'), (2, 'infinity'), (3, '0044-03-15 BC');",
    );
    let out = json(&ok(run(
        &db,
        &["dump", "--mask", "ev.at=date_shift:3", "--mask-salt", "s"],
    )));
    let at = values(&out, "ev", "at");
    assert_eq!(at[1], "infinity");
    assert!(at[2].ends_with(" BC") && at[2] != "0044-03-15 BC", "{at:?}");
}

/// A value a mask cannot handle (a date past chrono's range) fails the dump naming the table,
/// the row by its key (and by its place when the table is read whole in key order), and the
/// column, never the value; in parallel, where the table is read in parts, by its key.
#[test]
fn pg_mask_failure_names_the_row_by_its_key_serial_and_parallel() {
    let db = TestDb::new("mask_pg_failure_key");
    db.sql(
        "CREATE TABLE ev (id int PRIMARY KEY, pad text, at date);
         INSERT INTO ev SELECT i, repeat('p', 100), date '2020-01-01' + i % 1000
             FROM generate_series(1, 120000) i;
         UPDATE ev SET at = '280000-01-01' WHERE id = 90001;",
    );
    let dir = temp();
    for jobs in ["1", "2"] {
        for to_file in [false, true] {
            let file = dir.path().join(format!("ev-{jobs}.json"));
            let mut args = vec!["dump", "-j", jobs, "--mask", "ev.at=date_shift:2"];
            args.extend(["--mask-salt", "s"]);
            if to_file {
                args.extend(["-o", p(&file)]);
            }
            let out = run(&db, &args);
            assert_eq!(out.code, 2, "-j {jobs}: {out:#?}");
            let expected = if jobs == "1" {
                "table ev, row 90000 (id=90001), column at"
            } else {
                "table ev, row id=90001, column at"
            };
            assert!(
                out.stderr.contains(expected) && out.stderr.contains("not a date"),
                "-j {jobs}, to a file: {to_file}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("280000"), "the value is not printed");
            assert!(!file.exists());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite

const SQLITE_SCHEMA: &str = "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email VARCHAR(120) NOT NULL UNIQUE,
    first_name TEXT,
    full_name TEXT,
    phone TEXT,
    address TEXT,
    bio TEXT,
    salary INTEGER,
    born DATE,
    seen_at DATETIME,
    epoch TIMESTAMP,
    note TEXT,
    secret TEXT NOT NULL,
    token TEXT UNIQUE
);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id), email TEXT);
";

const SQLITE_DATA: &str = "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO users SELECT i, 'origmail' || i || '@corp-secret.test', 'Origfirst' || i,
       'Origfull Person' || i, '+99 555 ' || (100000 + i), i || ' Origstreet Road',
       'Origbio text ' || i || ' with some words', 7000000 + i,
       date('1900-01-01', '+' || (i * 40) || ' days'),
       datetime('1990-01-01 12:34:56', '+' || (i * 40) || ' days'),
       1000000000 + i * 40 * 86400,
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'orignote' || i END,
       'origsecret' || i, 'origtoken' || i
  FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
INSERT INTO orders SELECT i, i, 'origmail' || i || '@corp-secret.test' FROM n;
";

const SQLITE_RULES: &[&str] = &[
    "*.email=email",
    "users.first_name=first_name",
    "users.full_name=full_name",
    "users.phone=phone",
    "users.address=address",
    "users.bio=text",
    "users.salary=int:1..100",
    "users.born=date_shift:10",
    "users.seen_at=date_shift:10",
    "users.epoch=date_shift:10",
    "users.note=null",
    "users.secret=redact",
    "users.token=hash",
];

const SQLITE_MASKED: &[(&str, &str)] = &[
    ("users", "email"),
    ("orders", "email"),
    ("users", "first_name"),
    ("users", "full_name"),
    ("users", "phone"),
    ("users", "address"),
    ("users", "bio"),
    ("users", "salary"),
    ("users", "born"),
    ("users", "seen_at"),
    ("users", "epoch"),
    ("users", "note"),
    ("users", "secret"),
    ("users", "token"),
];

/// A SQLite file with `ddl` applied, in its own directory.
struct Lite {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Lite {
    fn new(ddl: &str) -> Lite {
        let dir = temp();
        let path = dir.path().join("test.db");
        let mut c = Connection::open(&DatabaseUrl::Sqlite(path.clone()), true).unwrap();
        c.execute(ddl).unwrap();
        Lite { _dir: dir, path }
    }

    fn run(&self, args: &[&str]) -> Out {
        let mut c = cmd();
        c.args(args)
            .arg("--database-url")
            .arg(format!("sqlite://{}", self.path.display()))
            .env_remove("DBFIXTURES_MASK_SALT");
        Out::from(c.output().unwrap())
    }

    fn masked(&self, rules: &[&str], salt: &str) -> String {
        let mut args = vec!["dump", "--mask-salt", salt];
        args.extend(mask_args(rules));
        ok(self.run(&args))
    }
}

#[test]
fn sqlite_no_original_value_survives_and_the_fixture_loads_into_an_empty_copy() {
    let db = Lite::new(&format!("{SQLITE_SCHEMA}{SQLITE_DATA}"));
    let unmasked = json(&ok(db.run(&["dump"])));
    let out = db.masked(SQLITE_RULES, SALT);
    assert_hidden(&out, &unmasked, SQLITE_MASKED);
    assert_eq!(db.masked(SQLITE_RULES, SALT), out, "same salt, same bytes");
    assert_ne!(db.masked(SQLITE_RULES, "other"), out);
    let masked = json(&out);
    let users = masked["users"].as_array().unwrap();
    for (u, o) in users.iter().zip(unmasked["users"].as_array().unwrap()) {
        assert!(u["email"].as_str().unwrap().ends_with("@example.com"));
        assert!((1..=100).contains(&u["salary"].as_i64().unwrap()));
        assert_eq!(u["note"], Value::Null);
        let shift = u["epoch"].as_i64().unwrap() - o["epoch"].as_i64().unwrap();
        assert!(shift != 0 && shift % 86_400 == 0 && shift.abs() <= 10 * 86_400);
        let (m, orig) = (
            u["seen_at"].as_str().unwrap(),
            o["seen_at"].as_str().unwrap(),
        );
        assert_eq!(m[10..], orig[10..]);
    }
    for o in masked["orders"].as_array().unwrap() {
        let uid = o["user_id"].as_i64().unwrap() as usize;
        assert_eq!(o["email"], users[uid - 1]["email"], "joins survive masking");
    }
    // Round trip into an empty copy of the schema.
    let copy = Lite::new(SQLITE_SCHEMA);
    let file = copy.path.with_file_name("masked.json");
    fs::write(&file, &out).unwrap();
    ok(copy.run(&["load", p(&file)]));
    assert_eq!(json(&ok(copy.run(&["dump"]))), masked);
}

#[test]
fn sqlite_refusals_match_postgresql() {
    let db = Lite::new(&format!("{SQLITE_SCHEMA}{SQLITE_DATA}"));
    for (rule, says) in [
        ("users.id=hash", "primary key of users"),
        ("orders.user_id=int:1..5", "foreign key"),
        ("users.token=first_name", "unique constraint (token)"),
        ("users.secret=null", "NOT NULL"),
        ("users.salary=hash", "needs a text column"),
        ("users.bio=date_shift:1", "needs a date or timestamp column"),
        ("users.nosuch=hash", "has no column"),
    ] {
        let e = refused(db.run(&["dump", "--mask", rule]));
        assert!(e.contains(says), "{rule}: expected {says:?} in {e}");
    }
    // SQLite's INTEGER is 64 bits.
    ok(db.run(&["dump", "--mask", "users.salary=int:1..99999999999"]));
    // A value date_shift cannot read: the dump fails naming table, row and column, no file.
    let bad = Lite::new("CREATE TABLE ev (id INTEGER PRIMARY KEY, at DATE); INSERT INTO ev VALUES (1, '2020-01-01'), (2, 'soon');");
    let file = bad.path.with_file_name("ev.json");
    let out = bad.run(&["dump", "-o", p(&file), "--mask", "ev.at=date_shift:2"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("table ev, row 1 (id=2), column at")
            && out.stderr.contains("not a date"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("soon"), "the value is not printed");
    assert!(!file.exists());
}

#[test]
fn sqlite_unique_columns_stay_unique_on_100000_rows() {
    let db = Lite::new(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, login VARCHAR(16) UNIQUE);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO people SELECT i, 'person' || i || '@corp.test', 'login' || i FROM n;",
    );
    let out = db.masked(&["people.email=email", "people.login=hash"], SALT);
    let masked = json(&out);
    for c in ["email", "login"] {
        let all = values(&masked, "people", c);
        assert!(all.iter().all(|v| !is_original(v)), "{c} is masked");
        let distinct: BTreeSet<String> = all.into_iter().collect();
        assert_eq!(distinct.len(), 100_000, "{c} stays unique");
    }
    let copy = Lite::new(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, login VARCHAR(16) UNIQUE);",
    );
    let file = copy.path.with_file_name("people.json");
    fs::write(&file, &out).unwrap();
    ok(copy.run(&["load", p(&file)]));
}

#[test]
fn library_dump_takes_the_same_mask_options_as_the_command_line() {
    use dbfixtures::dump::{dump, DumpOptions};
    use dbfixtures::mask::{MaskOptions, Rule};
    let db = pg_db("mask_pg_library");
    let rules: Vec<Rule> = PG_RULES
        .iter()
        .map(|r| Rule::parse(r, "--mask").unwrap())
        .collect();
    let opts = DumpOptions {
        mask: MaskOptions::new(rules, Some(SALT.into())),
        ..Default::default()
    };
    assert!(
        !format!("{opts:?}").contains(SALT),
        "Debug never shows the salt"
    );
    let mut out = Vec::new();
    dump(&mut db.conn(), &opts, &mut out, &dbfixtures::NoProgress).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), pg_masked_dump(&db, SALT));
    // A refused rule is an error before the writer sees a byte.
    let opts = DumpOptions {
        mask: MaskOptions::new(vec![Rule::parse("users.id=hash", "--mask").unwrap()], None),
        ..Default::default()
    };
    let mut out = Vec::new();
    let e = dump(&mut db.conn(), &opts, &mut out, &dbfixtures::NoProgress).unwrap_err();
    assert!(matches!(e, dbfixtures::Error::Mask { .. }), "{e}");
    assert!(out.is_empty());
}
