//! The features composed, against real PostgreSQL, SQLite and Django databases: a subset dump
//! (`--where`) that is also masked (`--mask`) hides every original value, loads into an empty
//! copy of the schema and is byte-stable for a salt; `-j 2` writes the bytes `-j 1` writes with
//! both; `--format django` with a subset and masks is read back by `loaddata` and by `load`; the
//! config file's [subset], [mask] and [django] sections apply together; and an upsert keeps two
//! identical rows of a table without a key on both backends.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::both::{Db, Kind, BOTH};
use crate::support::django::{manage_ok, migrated_db, table_contents};
use crate::support::{Out, TestDb};

const SALT: &str = "compose-salt-9x";

/// Every table's rows, as a full native dump.
fn contents(db: &Db) -> BTreeMap<String, Vec<Value>> {
    tables_of(&db.dump_all())
}

fn tables_of(dump: &str) -> BTreeMap<String, Vec<Value>> {
    let v: BTreeMap<String, Vec<Value>> =
        serde_json::from_str(dump).unwrap_or_else(|e| panic!("{e}:\n{dump}"));
    v.into_iter().filter(|(_, rows)| !rows.is_empty()).collect()
}

/// Asserts no original value is in `output`: values of 8 characters or more anywhere in it,
/// shorter ones as a whole JSON string (a short word can occur inside a fake value by chance).
fn assert_hidden(output: &str, originals: &[&str]) {
    assert!(!originals.is_empty());
    for v in originals {
        let needle = if v.chars().count() >= 8 {
            v.to_string()
        } else {
            serde_json::to_string(v).unwrap()
        };
        assert!(
            !output.contains(&needle),
            "original value {v:?} found in the masked output:\n{output}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A shop on both backends

const SCHEMA: &str = "
CREATE TABLE customer (
    id integer PRIMARY KEY,
    email varchar(80) NOT NULL UNIQUE,
    name text NOT NULL,
    phone varchar(30)
);
CREATE TABLE orders (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customer (id),
    note text
);
CREATE TABLE audit (
    customer_id integer REFERENCES customer (id),
    message text
);";

/// Customers 1..=6; customer i has orders 10i and 10i+1, and two identical audit rows.
fn shop(kind: Kind, name: &str) -> Db {
    let db = Db::new(kind, name);
    db.sql(SCHEMA);
    let mut sql = String::new();
    for i in 1..=6 {
        sql.push_str(&format!(
            "INSERT INTO customer VALUES ({i}, 'person{i}.original@corp.example', \
             'Originalname Person{i}', '+33 1 23 45 67 0{i}');\n\
             INSERT INTO orders VALUES ({a}, {i}, 'secret order note {a}'), \
             ({b}, {i}, 'secret order note {b}');\n\
             INSERT INTO audit VALUES ({i}, 'private audit message {i}'), \
             ({i}, 'private audit message {i}');\n",
            a = 10 * i,
            b = 10 * i + 1
        ));
    }
    db.sql(&sql);
    db
}

fn originals() -> Vec<String> {
    let mut v = Vec::new();
    for i in 1..=6 {
        v.push(format!("person{i}.original@corp.example"));
        v.push(format!("Originalname Person{i}"));
        v.push(format!("+33 1 23 45 67 0{i}"));
        v.push(format!("private audit message {i}"));
        for o in [10 * i, 10 * i + 1] {
            v.push(format!("secret order note {o}"));
        }
    }
    v
}

const MASKS: &[&str] = &[
    "--mask",
    "customer.email=email",
    "--mask",
    "customer.name=full_name",
    "--mask",
    "customer.phone=phone",
    "--mask",
    "orders.note=redact",
    "--mask",
    "audit.message=text",
];

fn subset_masked_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "dump",
        "--quiet",
        "--where",
        "customer: id IN (2, 5)",
        "--mask-salt",
        SALT,
    ];
    args.extend_from_slice(MASKS);
    args.extend_from_slice(extra);
    args
}

#[test]
fn subset_and_mask_hide_every_original_load_into_an_empty_schema_and_are_stable() {
    for kind in BOTH {
        let src = shop(kind, "subset_mask");
        let args = subset_masked_args(&[]);
        let masked = src.ok(&args);
        let tables = tables_of(&masked);
        // The subset: customers 2 and 5, their orders and audit rows (both identical ones).
        assert_eq!(tables["customer"].len(), 2, "{kind:?}: {masked}");
        assert_eq!(tables["orders"].len(), 4, "{kind:?}: {masked}");
        assert_eq!(tables["audit"].len(), 4, "{kind:?}: {masked}");
        let ids: Vec<&Value> = tables["customer"].iter().map(|r| &r["id"]).collect();
        assert_eq!(ids, [2, 5], "{kind:?}");
        let originals = originals();
        assert_hidden(
            &masked,
            &originals.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        for row in &tables["orders"] {
            assert_ne!(row["note"], Value::Null, "{kind:?}: redact keeps a value");
        }

        // Same salt, same bytes; to a file and to a directory as well.
        assert_eq!(src.ok(&args), masked, "{kind:?}: same salt, same bytes");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subset.json");
        src.ok(&subset_masked_args(&["-o", file.to_str().unwrap()]));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), masked, "{kind:?}");
        let per_table = format!("{}/", dir.path().join("tables").display());
        src.ok(&subset_masked_args(&["-o", &per_table]));
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("tables"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["audit.json", "customer.json", "orders.json"]);
        for name in &names {
            let text = std::fs::read_to_string(dir.path().join("tables").join(name)).unwrap();
            assert_hidden(
                &text,
                &originals.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
        // Another salt, other bytes.
        let mut other = args.clone();
        let i = other.iter().position(|a| *a == SALT).unwrap();
        other[i] = "another-salt";
        assert_ne!(src.ok(&other), masked, "{kind:?}");

        // It loads into an empty copy of the schema, giving back exactly the dumped rows.
        let dst = Db::new(kind, "subset_mask_dst");
        dst.sql(SCHEMA);
        dst.ok(&["load", "--quiet", file.to_str().unwrap()]);
        assert_eq!(contents(&dst), tables, "{kind:?}");
        // And the per-table directory too, into another empty copy.
        let dst2 = Db::new(kind, "subset_mask_dst2");
        dst2.sql(SCHEMA);
        dst2.ok(&["load", "--quiet", &per_table]);
        assert_eq!(contents(&dst2), tables, "{kind:?}");
    }
}

#[test]
fn subset_masked_parallel_dump_is_byte_identical_to_serial() {
    let src = shop(Kind::Pg, "subset_mask_j");
    // Enough rows that two connections both have work.
    src.sql(
        "INSERT INTO customer SELECT i, 'bulk' || i || '@corp.example', 'Bulk Name ' || i, NULL \
         FROM generate_series(100, 2100) i;
         INSERT INTO orders SELECT 100000 + i, i, 'bulk note ' || i FROM generate_series(100, 2100) i;
         INSERT INTO audit SELECT i, 'bulk audit ' || i FROM generate_series(100, 2100) i;",
    );
    for subset in ["customer: id IN (2, 5)", "customer: id % 3 = 0"] {
        let run = |jobs: &str, extra: &[&str]| {
            let mut args = vec![
                "dump",
                "--quiet",
                "--where",
                subset,
                "-j",
                jobs,
                "--mask-salt",
                SALT,
            ];
            args.extend_from_slice(MASKS);
            args.extend_from_slice(extra);
            src.ok(&args)
        };
        let serial = run("1", &[]);
        assert!(tables_of(&serial)["customer"].len() >= 2, "{serial}");
        assert_eq!(run("2", &[]), serial, "{subset}: -j 2 differs from -j 1");
        assert_eq!(
            run("2", &["--pretty"]),
            run("1", &["--pretty"]),
            "{subset}: --pretty"
        );
        assert_hidden(
            &serial,
            &["person2.original@corp.example", "Originalname Person5"],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Django

const LEGACY: &str = "legacy_things=shop.legacy";

/// The values masked in the Django project's seed data.
const DJANGO_ORIGINALS: &[&str] = &[
    "Ada",
    "Bob \"quoted\"\nnewline",
    "Çy ünïcode ☃",
    "tab\there",
    "First",
    "Second",
];

const DJANGO_MASKS: &[&str] = &[
    "--mask",
    "shop_author.name=full_name",
    "--mask",
    "shop_profile.bio=text",
    "--mask",
    "shop_document.title=text",
];

fn django_dump(src: &TestDb, path: &Path, extra: &[&str]) {
    let mut args = vec![
        "dump",
        "--quiet",
        "--format",
        "django",
        "--django-model",
        LEGACY,
        "--mask-salt",
        SALT,
        "-o",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = crate::support::dbf(src, &args);
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
}

/// Rows of a table, one JSON text per row, sorted.
fn rows_of(db: &TestDb, table: &str) -> Vec<String> {
    table_contents(db)
        .into_iter()
        .find(|(t, _)| t == table)
        .map(|(_, rows)| rows.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Loads a Django fixture with `loaddata` and with `dbfixtures load`, each into a fresh migrated
/// database, asserting both give the same tables; returns (loaddata's, ours).
fn load_both_ways(fixture: &Path, name: &str) -> (TestDb, TestDb) {
    let f = fixture.to_str().unwrap();
    let by_django = migrated_db(&format!("compose_{name}_loaddata"));
    manage_ok(&by_django, &["loaddata", f]);
    let by_us = migrated_db(&format!("compose_{name}_load"));
    let out = crate::support::dbf(&by_us, &["load", "--quiet", "--django-model", LEGACY, f]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(table_contents(&by_us), table_contents(&by_django));
    (by_django, by_us)
}

#[test]
fn django_format_with_masks_and_a_subset_reads_back_with_loaddata_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let src = migrated_db("compose_src");
    manage_ok(&src, &["seed"]);

    // Masked, whole tables: no original value; loaddata and load give the same tables.
    let masked = dir.path().join("masked.json");
    django_dump(&src, &masked, DJANGO_MASKS);
    let text = std::fs::read_to_string(&masked).unwrap();
    assert_hidden(&text, DJANGO_ORIGINALS);
    let again = dir.path().join("again.json");
    django_dump(&src, &again, DJANGO_MASKS);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text, "same salt");
    let (by_django, _) = load_both_ways(&masked, "whole");
    let names = rows_of(&by_django, "shop_author");
    assert_eq!(names.len(), 3);
    for original in ["Ada", "Bob", "Çy"] {
        assert!(
            !names.iter().any(|r| r.contains(original)),
            "{original}: {names:?}"
        );
    }

    // A subset (one author and what it reaches), masked, as JSON Lines.
    let subset = dir.path().join("subset.jsonl");
    let mut extra = vec!["--where", "shop_author: email = 'ada@example.com'"];
    extra.extend_from_slice(DJANGO_MASKS);
    django_dump(&src, &subset, &extra);
    let text = std::fs::read_to_string(&subset).unwrap();
    assert_hidden(&text, DJANGO_ORIGINALS);
    // -j 2 writes the same bytes.
    let parallel = dir.path().join("parallel.jsonl");
    extra.extend_from_slice(&["-j", "2"]);
    django_dump(&src, &parallel, &extra);
    assert_eq!(std::fs::read_to_string(&parallel).unwrap(), text, "-j 2");
    let objects: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let authors: Vec<&Value> = objects
        .iter()
        .filter(|o| o["model"] == "shop.author")
        .map(|o| &o["fields"]["email"])
        .collect();
    // Ada, and the authors her rows reach (friends, her mentee through the mentor key).
    assert!(authors.contains(&&Value::from("ada@example.com")), "{text}");
    assert!(
        !objects.iter().any(|o| o["model"] == "shop.legacy"),
        "legacy is not reached: {text}"
    );
    let (_, by_us) = load_both_ways(&subset, "subset");
    assert_eq!(rows_of(&by_us, "shop_author").len(), authors.len());
    assert!(rows_of(&by_us, "legacy_things").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Upsert into a table without a key

/// Rows of `audit` as (customer_id, message), sorted.
fn audit_rows(db: &Db) -> Vec<(i64, String)> {
    let mut rows: Vec<(i64, String)> = contents(db)
        .get("audit")
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["customer_id"].as_i64().unwrap(),
                        r["message"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort();
    rows
}

#[test]
fn upsert_without_a_key_loads_every_duplicate_and_a_rerun_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("dup.json");
    std::fs::write(
        &fixture,
        r#"{"customer": [{"id": 1, "email": "a@x.example", "name": "A"}],
            "audit": [{"customer_id": 1, "message": "twice"},
                      {"customer_id": 1, "message": "twice"},
                      {"customer_id": 1, "message": "once"}]}"#,
    )
    .unwrap();
    let f = fixture.to_str().unwrap();
    let twice = |n: usize| {
        let mut v = vec![(1, "once".to_string())];
        v.extend(std::iter::repeat_n((1, "twice".to_string()), n));
        v
    };
    for kind in BOTH {
        // Into an empty table: both identical rows go in (the default mode is upsert).
        let db = Db::new(kind, "upsert_dup");
        db.sql(SCHEMA);
        db.ok(&["load", "--quiet", f]);
        assert_eq!(audit_rows(&db), twice(2), "{kind:?}: first load");
        // A re-run changes nothing.
        let out = db.run(&["load", f]);
        assert_eq!(out.code, 0, "{out:#?}");
        assert_eq!(audit_rows(&db), twice(2), "{kind:?}: re-run");
        assert!(
            out.stderr.contains("0 inserted"),
            "{kind:?}: {}",
            out.stderr
        );

        // Into a table already holding one copy (so not the empty-table fast path): the second
        // copy goes in, "once" is already there.
        let db = Db::new(kind, "upsert_dup_one");
        db.sql(SCHEMA);
        db.sql(
            "INSERT INTO customer VALUES (1, 'a@x.example', 'A', NULL);
             INSERT INTO audit VALUES (1, 'twice'), (1, 'once');",
        );
        db.ok(&["load", "--quiet", f]);
        assert_eq!(audit_rows(&db), twice(2), "{kind:?}: one copy there");
        db.ok(&["load", "--quiet", f]);
        assert_eq!(audit_rows(&db), twice(2), "{kind:?}: re-run");

        // Three copies already there: nothing is removed or added.
        db.sql("INSERT INTO audit VALUES (1, 'twice');");
        db.ok(&["load", "--quiet", f]);
        assert_eq!(audit_rows(&db), twice(3), "{kind:?}: more copies there");

        // Copies are counted among consecutive rows with the same columns, alike on both
        // backends: the second "apart" starts a new run and the table already holds one; a row
        // matches on the columns it has, so {customer_id: 1} is already there five times.
        let runs = dir.path().join("runs.json");
        std::fs::write(
            &runs,
            r#"{"audit": [{"customer_id": 1, "message": "apart"}, {"customer_id": 1},
                          {"customer_id": 1, "message": "apart"}]}"#,
        )
        .unwrap();
        db.ok(&["load", "--quiet", runs.to_str().unwrap()]);
        let audit = &contents(&db)["audit"];
        let apart = audit.iter().filter(|r| r["message"] == "apart").count();
        let null = audit.iter().filter(|r| r["message"].is_null()).count();
        assert_eq!((apart, null, audit.len()), (1, 0, 5), "{kind:?}: {audit:?}");
        db.sql("DELETE FROM audit WHERE message = 'apart';");

        // --mode insert always inserts.
        let only_audit = dir.path().join("audit.json");
        std::fs::write(
            &only_audit,
            r#"{"audit": [{"customer_id": 1, "message": "once"}]}"#,
        )
        .unwrap();
        db.ok(&[
            "load",
            "--quiet",
            "--mode",
            "insert",
            only_audit.to_str().unwrap(),
        ]);
        assert_eq!(audit_rows(&db).len(), 5, "{kind:?}: insert mode");
    }
}

// ---------------------------------------------------------------------------------------------
// The config file's sections together, and --plan with the other features

const MODELS: &[&str] = &[
    "--django-model",
    "customer=shop.customer",
    "--django-model",
    "orders=shop.order",
    "--django-model",
    "audit=shop.audit",
];

#[test]
fn config_file_subset_mask_and_django_sections_apply_together() {
    for kind in BOTH {
        let db = shop(kind, "config_all");
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("dbfixtures.toml");
        std::fs::write(
            &conf,
            r#"[subset]
where = ["customer: id = 3"]
no-children = true

[mask]
"*.email" = "email"
"customer.name" = "full_name"
"customer.phone" = "phone"

[django]
models = { customer = "shop.customer", orders = "shop.order", audit = "shop.audit" }
"#,
        )
        .unwrap();
        let c = conf.to_str().unwrap();
        // Native: the file's subset and masks, the salt from the flag.
        let native = db.ok(&["--config", c, "dump", "--quiet", "--mask-salt", SALT]);
        let tables = tables_of(&native);
        assert_eq!(tables.keys().collect::<Vec<_>>(), ["customer"], "{kind:?}");
        assert_eq!(tables["customer"][0]["id"], 3);
        assert_hidden(
            &native,
            &[
                "person3.original@corp.example",
                "Originalname Person3",
                "+33 1 23 45 67 03",
            ],
        );
        // Django: the same rows under the file's model names, the same masked values.
        let django = db.ok(&[
            "--config",
            c,
            "dump",
            "--quiet",
            "--mask-salt",
            SALT,
            "--format",
            "django",
        ]);
        let objects: Vec<Value> = serde_json::from_str(&django).unwrap();
        assert_eq!(objects.len(), 1, "{kind:?}: {django}");
        assert_eq!(objects[0]["model"], "shop.customer");
        assert_eq!(objects[0]["pk"], 3);
        for field in ["email", "name", "phone"] {
            assert_eq!(
                objects[0]["fields"][field], tables["customer"][0][field],
                "{kind:?}: {field} masks the same in both formats"
            );
        }
        // Flags override the file: another seed, and a mask set back to keep.
        let out = db.ok(&[
            "--config",
            c,
            "dump",
            "--quiet",
            "--mask-salt",
            SALT,
            "--where",
            "customer: id = 4",
            "--mask",
            "customer.phone=keep",
        ]);
        let row = &tables_of(&out)["customer"][0];
        assert_eq!(row["id"], 4, "{kind:?}");
        assert_eq!(row["phone"], "+33 1 23 45 67 04", "{kind:?}");
        assert_hidden(&out, &["person4.original@corp.example"]);
        // The Django output loads back (through the file's [django] names) into an empty copy.
        let fixture = dir.path().join("customer3.json");
        std::fs::write(&fixture, &django).unwrap();
        let dst = Db::new(kind, "config_all_dst");
        dst.sql(SCHEMA);
        dst.ok(&["--config", c, "load", "--quiet", fixture.to_str().unwrap()]);
        assert_eq!(contents(&dst), tables, "{kind:?}");
    }
}

#[test]
fn plan_checks_masks_and_django_models_like_the_dump() {
    for kind in BOTH {
        let db = shop(kind, "plan_checks");
        let plan = |extra: &[&str]| {
            let mut args = vec!["dump", "--where", "customer: id = 1", "--plan"];
            args.extend_from_slice(extra);
            db.run(&args)
        };
        let refused = |out: Out, needle: &str| {
            assert_eq!(out.code, 2, "{kind:?}: {out:#?}");
            assert_eq!(out.stdout, "", "{kind:?}: nothing is written");
            assert!(out.stderr.contains(needle), "{kind:?}: {}", out.stderr);
        };
        // A plan with good masks and models lists the tables.
        let mut good = vec!["--mask", "customer.name=full_name", "--format", "django"];
        good.extend_from_slice(MODELS);
        // audit has no primary key, so it is no Django model: the plan says so, as the dump.
        refused(plan(&good), "table audit has 0 primary-key columns");
        good.extend_from_slice(&["-T", "audit"]);
        let out = plan(&good);
        assert_eq!(out.code, 0, "{kind:?}: {out:#?}");
        assert!(out.stdout.contains("customer") && out.stdout.contains("orders"));
        // A mask the dump refuses, the plan refuses.
        refused(plan(&["--mask", "customer.id=hash"]), "primary key");
        refused(plan(&["--mask", "customer.name=bogus"]), "unknown strategy");
        refused(
            plan(&["--mask", "nosuch.col=email"]),
            "unknown table nosuch",
        );
        // A table the Django dump cannot name, the plan names.
        refused(plan(&["--format", "django"]), "is no Django model");
        // The Django dump itself refuses it before writing anything to stdout.
        refused(
            db.run(&["dump", "--format", "django", "--where", "customer: id = 1"]),
            "is no Django model",
        );
    }
}
