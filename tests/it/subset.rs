//! Subset dumps (`dump --where`, issue 8) on PostgreSQL and SQLite: each case builds a schema,
//! dumps a subset through the binary, and checks (see [`Case::run`]) that the subset holds
//! exactly the expected rows, that they are the source's rows in full-dump order, that the
//! output is the same bytes on a second run, and that it loads into an empty copy of the schema
//! where a full dump gives back the same rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::support::both::{Db, Kind, BOTH};
use crate::support::{cmd, Out, TestDb};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Parses a dump, keeping only tables with rows.
fn tables_of(dump: &str) -> BTreeMap<String, Vec<Value>> {
    let v: serde_json::Map<String, Value> = serde_json::from_str(dump).expect("dump is JSON");
    v.into_iter()
        .map(|(k, rows)| (k, rows.as_array().unwrap().clone()))
        .filter(|(_, rows)| !rows.is_empty())
        .collect()
}

/// Integers as the JSON texts of a column's values.
fn n(values: impl IntoIterator<Item = i64>) -> Vec<String> {
    values.into_iter().map(|v| v.to_string()).collect()
}

/// Strings as the JSON texts of a column's values.
fn s(values: &[&str]) -> Vec<String> {
    values
        .iter()
        .map(|v| serde_json::to_string(v).unwrap())
        .collect()
}

/// One scenario: a schema, its rows, the subset flags and what the subset must hold.
struct Case<'a> {
    name: &'a str,
    ddl: &'a str,
    data: &'a str,
    args: &'a [&'a str],
    /// (table key, column, the column's values in the subset as JSON texts, any order).
    expect: Vec<(&'a str, &'a str, Vec<String>)>,
}

impl Case<'_> {
    /// Runs the case on `kind` and returns the subset dump.
    fn run(&self, kind: Kind) -> String {
        let src = Db::new(kind, self.name);
        src.sql(self.ddl);
        src.sql(self.data);
        self.check(kind, &src)
    }

    /// The checks of the module doc, on an already filled `src`.
    fn check(&self, kind: Kind, src: &Db) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subset.json");
        let dump = |file: &Path| {
            let mut args = vec!["dump", "-o", file.to_str().unwrap()];
            args.extend_from_slice(self.args);
            let out = src.run(&args);
            assert_eq!(out.code, 0, "{kind:?} {}: dump failed: {out:#?}", self.name);
            std::fs::read_to_string(file).unwrap()
        };
        let text = dump(&file);
        assert_eq!(
            text,
            dump(&dir.path().join("again.json")),
            "{kind:?} {}: not the same bytes twice",
            self.name
        );
        let subset = tables_of(&text);

        // Exactly the expected rows.
        let mut want: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (table, col, values) in &self.expect {
            let mut v = values.clone();
            v.sort();
            want.insert(table, v);
            let rows = subset
                .get(*table)
                .unwrap_or_else(|| panic!("{kind:?} {}: no table {table} in\n{text}", self.name));
            let mut got: Vec<String> = rows.iter().map(|r| r[*col].to_string()).collect();
            got.sort();
            let mut values = values.clone();
            values.sort();
            assert_eq!(got, values, "{kind:?} {}: rows of {table}", self.name);
        }
        let tables: Vec<&str> = subset.keys().map(String::as_str).collect();
        let expected: Vec<&str> = want.keys().copied().collect();
        assert_eq!(
            tables, expected,
            "{kind:?} {}: tables in the subset",
            self.name
        );

        // The source's rows, in full-dump order.
        let full = tables_of(&src.dump_all());
        for (table, rows) in &subset {
            let mut source = full[table].iter();
            for row in rows {
                assert!(
                    source.any(|r| r == row),
                    "{kind:?} {}: {table} row {row} is not a source row, or out of order",
                    self.name
                );
            }
        }

        // Loads into an empty copy of the schema, where it is exactly the rows.
        let dst = Db::new(kind, &format!("{}_copy", self.name));
        dst.sql(self.ddl);
        // --mode insert: every row must be new there.
        let out = dst.run(&["load", "--mode", "insert", file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{kind:?} {}: load failed: {out:#?}", self.name);
        assert_eq!(
            tables_of(&dst.dump_all()),
            subset,
            "{kind:?} {}: the loaded copy differs",
            self.name
        );
        text
    }
}

// ---------------------------------------------------------------------------------------------
// Graph shapes

#[test]
fn diamond_includes_the_shared_parent_once() {
    let ddl = "CREATE TABLE d (id integer PRIMARY KEY, v text);
        CREATE TABLE b (id integer PRIMARY KEY, d_id integer REFERENCES d (id));
        CREATE TABLE c (id integer PRIMARY KEY, d_id integer REFERENCES d (id));
        CREATE TABLE a (id integer PRIMARY KEY, b_id integer REFERENCES b (id),
                        c_id integer REFERENCES c (id));";
    let data = "INSERT INTO d VALUES (1, 'x'), (2, 'y'), (3, 'z');
        INSERT INTO b VALUES (1, 1), (2, 2);
        INSERT INTO c VALUES (1, 1), (2, 3);
        INSERT INTO a VALUES (1, 1, 1), (2, 2, 2);";
    for kind in BOTH {
        let text = Case {
            name: "diamond",
            ddl,
            data,
            args: &["--where", "a: id = 1"],
            expect: vec![
                ("a", "id", n([1])),
                ("b", "id", n([1])),
                ("c", "id", n([1])),
                ("d", "id", n([1])),
            ],
        }
        .run(kind);
        assert_eq!(text.matches("\"id\":1,\"v\"").count(), 1, "{text}");
        // From the bottom: d's children, and theirs, with their parents.
        Case {
            name: "diamond_up",
            ddl,
            data,
            args: &["--where", "d: id = 3"],
            expect: vec![
                ("a", "id", n([2])),
                ("b", "id", n([2])),
                ("c", "id", n([2])),
                ("d", "id", n([2, 3])),
            ],
        }
        .run(kind);
    }
}

#[test]
fn nullable_two_table_cycle() {
    let ddl = "CREATE TABLE x (id integer PRIMARY KEY, y_id integer);
        CREATE TABLE y (id integer PRIMARY KEY, x_id integer REFERENCES x (id));";
    // SQLite cannot add a constraint later: declare x's FK up front there (see pg_ddl below).
    let pg_ddl = format!("{ddl} ALTER TABLE x ADD FOREIGN KEY (y_id) REFERENCES y (id);");
    let sqlite_ddl = "CREATE TABLE x (id integer PRIMARY KEY, y_id integer REFERENCES y (id));
        CREATE TABLE y (id integer PRIMARY KEY, x_id integer REFERENCES x (id));";
    // x1 -> y1 -> x2; y2 -> x1 (a child of x1); x3 -> y2 (a child of y2); y3 -> x9 unrelated.
    let data = "INSERT INTO x VALUES (1, NULL), (2, NULL), (3, NULL), (9, NULL);
        INSERT INTO y VALUES (1, 2), (2, 1), (3, 9);
        UPDATE x SET y_id = 1 WHERE id = 1; UPDATE x SET y_id = 2 WHERE id = 3;";
    for kind in BOTH {
        let ddl = if kind == Kind::Pg {
            pg_ddl.as_str()
        } else {
            sqlite_ddl
        };
        Case {
            name: "nullable_cycle",
            ddl,
            data,
            args: &["--where", "x: id = 1"],
            expect: vec![("x", "id", n([1, 2, 3])), ("y", "id", n([1, 2]))],
        }
        .run(kind);
        Case {
            name: "nullable_cycle_nc",
            ddl,
            data,
            args: &["--where", "x: id = 1", "--no-children"],
            expect: vec![("x", "id", n([1, 2])), ("y", "id", n([1]))],
        }
        .run(kind);
    }
}

#[test]
fn deferrable_not_null_cycle() {
    let pg_ddl = "CREATE TABLE x (id integer PRIMARY KEY, y_id integer NOT NULL);
        CREATE TABLE y (id integer PRIMARY KEY, x_id integer NOT NULL
                        REFERENCES x (id) DEFERRABLE INITIALLY DEFERRED);
        ALTER TABLE x ADD FOREIGN KEY (y_id) REFERENCES y (id) DEFERRABLE INITIALLY DEFERRED;";
    let sqlite_ddl = "CREATE TABLE x (id integer PRIMARY KEY, y_id integer NOT NULL
                        REFERENCES y (id) DEFERRABLE INITIALLY DEFERRED);
        CREATE TABLE y (id integer PRIMARY KEY, x_id integer NOT NULL
                        REFERENCES x (id) DEFERRABLE INITIALLY DEFERRED);";
    let data = "BEGIN; INSERT INTO x VALUES (1, 1), (2, 2); INSERT INTO y VALUES (1, 1), (2, 2);
        COMMIT;";
    for (kind, ddl) in [(Kind::Pg, pg_ddl), (Kind::Sqlite, sqlite_ddl)] {
        Case {
            name: "deferrable_cycle",
            ddl,
            data,
            args: &["--where", "y: id = 2"],
            expect: vec![("x", "id", n([2])), ("y", "id", n([2]))],
        }
        .run(kind);
    }
}

#[test]
fn two_thousand_deep_self_reference_from_both_ends() {
    let ddl = "CREATE TABLE node (id integer PRIMARY KEY, parent_id integer REFERENCES node (id),
                                  label text);
        CREATE TABLE other (id integer PRIMARY KEY);";
    let data = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 2000)
        INSERT INTO node SELECT i, CASE WHEN i = 1 THEN NULL ELSE i - 1 END, 'n' || i FROM s;
        INSERT INTO other VALUES (1);";
    for kind in BOTH {
        // The leaf needs every ancestor.
        Case {
            name: "chain_leaf",
            ddl,
            data,
            args: &["--where", "node: id = 2000"],
            expect: vec![("node", "id", n(1..=2000))],
        }
        .run(kind);
        // The root's descendants, transitively.
        Case {
            name: "chain_root",
            ddl,
            data,
            args: &["--where", "node: id = 1"],
            expect: vec![("node", "id", n(1..=2000))],
        }
        .run(kind);
        // The middle: ancestors and descendants both.
        Case {
            name: "chain_root_nc",
            ddl,
            data,
            args: &["--where", "node: id = 1000", "--no-children"],
            expect: vec![("node", "id", n(1..=1000))],
        }
        .run(kind);
    }
}

#[test]
fn two_self_references_on_one_table() {
    let ddl = "CREATE TABLE emp (id integer PRIMARY KEY,
                                 manager_id integer REFERENCES emp (id),
                                 mentor_id integer REFERENCES emp (id));";
    // 1 boss; 2, 3 report to 1; 4 reports to 2, mentored by 3; 5 mentored by 4; 6 unrelated.
    let data = "INSERT INTO emp VALUES (1, NULL, NULL), (2, 1, NULL), (3, 1, NULL), (4, 2, 3),
        (5, NULL, 4), (6, NULL, NULL);";
    for kind in BOTH {
        Case {
            name: "two_self_refs",
            ddl,
            data,
            args: &["--where", "emp: id = 4", "--no-children"],
            expect: vec![("emp", "id", n([1, 2, 3, 4]))],
        }
        .run(kind);
        // 2's children: 4 (managed), and 4's child 5 (mentored); parents 1 and 3 come along,
        // but 3's other children do not pull in anything more, and 1's other report (3) is in
        // only as 4's mentor.
        Case {
            name: "two_self_refs_children",
            ddl,
            data,
            args: &["--where", "emp: id = 2"],
            expect: vec![("emp", "id", n([1, 2, 3, 4, 5]))],
        }
        .run(kind);
    }
}

#[test]
fn composite_keys_full_partly_null_and_to_a_unique_column() {
    let ddl =
        "CREATE TABLE parent (a integer, b text, code text NOT NULL UNIQUE, PRIMARY KEY (a, b));
        CREATE TABLE child (id integer PRIMARY KEY, pa integer, pb text, pcode text,
            FOREIGN KEY (pa, pb) REFERENCES parent (a, b),
            FOREIGN KEY (pcode) REFERENCES parent (code));";
    let data = "INSERT INTO parent VALUES (1, 'x', 'P1'), (1, 'y', 'P2'), (2, 'x', 'P3'),
            (3, 'z', 'P4');
        INSERT INTO child VALUES (10, 1, 'x', NULL), (11, 1, NULL, NULL), (12, NULL, NULL, 'P3'),
            (13, 3, 'z', NULL);";
    for kind in BOTH {
        // 10: full composite key -> (1, x); 11: (1, NULL) references nothing (MATCH SIMPLE);
        // 12: by the unique code -> P3.
        Case {
            name: "composite",
            ddl,
            data,
            args: &["--where", "child: id IN (10, 11, 12)"],
            expect: vec![
                ("child", "id", n([10, 11, 12])),
                ("parent", "code", s(&["P1", "P3"])),
            ],
        }
        .run(kind);
        // Children through both keys; the partly-NULL child references no parent.
        Case {
            name: "composite_children",
            ddl,
            data,
            args: &["--where", "parent: code IN ('P1', 'P3')"],
            expect: vec![
                ("child", "id", n([10, 12])),
                ("parent", "code", s(&["P1", "P3"])),
            ],
        }
        .run(kind);
    }
}

#[test]
fn hub_rows_included_as_parents_do_not_pull_their_children() {
    let ddl = "CREATE TABLE rep (id integer PRIMARY KEY, name text);
        CREATE TABLE customer (id integer PRIMARY KEY, rep_id integer REFERENCES rep (id));
        CREATE TABLE invoice (id integer PRIMARY KEY, customer_id integer REFERENCES customer (id));";
    let data = "INSERT INTO rep VALUES (1, 'r1'), (2, 'r2');
        WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 200)
        INSERT INTO customer SELECT i, 1 + i % 2 FROM s;
        WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 400)
        INSERT INTO invoice SELECT i, 1 + i % 200 FROM s;";
    for kind in BOTH {
        Case {
            name: "hub",
            ddl,
            data,
            args: &["--where", "customer: id = 5"],
            expect: vec![
                ("rep", "id", n([2])),
                ("customer", "id", n([5])),
                ("invoice", "id", n([4, 204])),
            ],
        }
        .run(kind);
    }
}

#[test]
fn tables_without_a_primary_key() {
    // tag has no key at all; item has only a UNIQUE column, which tag references.
    let ddl = "CREATE TABLE item (code text NOT NULL UNIQUE, v integer);
        CREATE TABLE tag (item_code text REFERENCES item (code), tag text);";
    let data = "INSERT INTO item VALUES ('a', 1), ('b', 2), ('c', 3);
        INSERT INTO tag VALUES ('a', 'red'), ('a', 'red'), ('b', 'blue'), ('c', 'red'),
            (NULL, 'red');";
    for kind in BOTH {
        // Two identical rows stay two rows.
        Case {
            name: "no_pk",
            ddl,
            data,
            args: &["--where", "item: code = 'a'"],
            expect: vec![
                ("item", "code", s(&["a"])),
                ("tag", "tag", s(&["red", "red"])),
            ],
        }
        .run(kind);
        Case {
            name: "no_pk_seed",
            ddl,
            data,
            args: &["--where", "tag: tag = 'red'"],
            expect: vec![
                ("item", "code", s(&["a", "c"])),
                (
                    "tag",
                    "item_code",
                    vec![
                        "\"a\"".into(),
                        "\"a\"".into(),
                        "\"c\"".into(),
                        "null".into(),
                    ],
                ),
            ],
        }
        .run(kind);
    }
}

#[test]
fn binary_text_and_real_keys() {
    for (kind, ty) in [(Kind::Pg, "bytea"), (Kind::Sqlite, "blob")] {
        let bin = |hex: &str| match kind {
            Kind::Pg => format!("'\\x{hex}'::bytea"),
            Kind::Sqlite => format!("x'{hex}'"),
        };
        let data = format!(
            "INSERT INTO b VALUES ({}, 'a', 1.5, 1), ({}, 'b', 2.25, 2), ({}, 'c', 3, 3);
             INSERT INTO c VALUES (1, {}, 'a', 1.5), (2, {}, 'c', 3), (3, NULL, NULL, NULL);",
            bin("00ff"),
            bin("01"),
            bin(""),
            bin("00ff"),
            bin("")
        );
        let data = data.as_str();
        let ddl = format!(
            "CREATE TABLE b (k {ty} PRIMARY KEY, t text UNIQUE, r double precision UNIQUE, v integer);
             CREATE TABLE c (id integer PRIMARY KEY, bk {ty} REFERENCES b (k),
                             bt text REFERENCES b (t), br double precision REFERENCES b (r));"
        );
        Case {
            name: "binary_keys",
            ddl: &ddl,
            data,
            args: &["--where", "c: id IN (1, 2)"],
            expect: vec![("b", "v", n([1, 3])), ("c", "id", n([1, 2]))],
        }
        .run(kind);
        Case {
            name: "binary_keys_children",
            ddl: &ddl,
            data,
            args: &["--where", "b: v <> 2"],
            expect: vec![("b", "v", n([1, 3])), ("c", "id", n([1, 2]))],
        }
        .run(kind);
    }
}

#[test]
fn several_overlapping_seeds_full_tables_and_no_children() {
    let ddl = "CREATE TABLE continent (id integer PRIMARY KEY, name text);
        CREATE TABLE country (id integer PRIMARY KEY, continent_id integer REFERENCES continent (id));
        CREATE TABLE city (id integer PRIMARY KEY, country_id integer REFERENCES country (id));
        CREATE TABLE person (id integer PRIMARY KEY, city_id integer REFERENCES city (id));";
    let data = "INSERT INTO continent VALUES (1, 'eu'), (2, 'am'), (3, 'as');
        INSERT INTO country VALUES (1, 1), (2, 2), (3, 1);
        INSERT INTO city VALUES (1, 1), (2, 1), (3, 2), (4, 3);
        INSERT INTO person VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 1);";
    for kind in BOTH {
        // Two seeds sharing city 1: its row appears once.
        Case {
            name: "overlap",
            ddl,
            data,
            args: &["--where", "person: id = 1", "--where", "city: id IN (1, 3)"],
            expect: vec![
                ("continent", "id", n([1, 2])),
                ("country", "id", n([1, 2])),
                ("city", "id", n([1, 3])),
                ("person", "id", n([1, 3, 5])),
            ],
        }
        .run(kind);
        // --full: every country (and, as their parents, the continents they use), but not the
        // countries' children.
        Case {
            name: "full",
            ddl,
            data,
            args: &["--where", "person: id = 4", "--full", "countr*"],
            expect: vec![
                ("continent", "id", n([1, 2])),
                ("country", "id", n([1, 2, 3])),
                ("city", "id", n([4])),
                ("person", "id", n([4])),
            ],
        }
        .run(kind);
        // --no-children: the seed city and its parents, no people.
        Case {
            name: "no_children",
            ddl,
            data,
            args: &["--where", "city: id = 2", "--no-children"],
            expect: vec![
                ("continent", "id", n([1])),
                ("country", "id", n([1])),
                ("city", "id", n([2])),
            ],
        }
        .run(kind);
    }
}

// ---------------------------------------------------------------------------------------------
// Guards, plan, errors, config

const SHOP: &str = "CREATE TABLE rep (id integer PRIMARY KEY);
    CREATE TABLE customer (id integer PRIMARY KEY, rep_id integer REFERENCES rep (id));
    CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL
                         REFERENCES customer (id));";
const SHOP_DATA: &str = "INSERT INTO rep VALUES (1), (2);
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50)
    INSERT INTO customer SELECT i, 1 + i % 2 FROM s;
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 500)
    INSERT INTO orders SELECT i, 1 + i % 50 FROM s;";

fn shop(kind: Kind, name: &str) -> Db {
    let db = Db::new(kind, name);
    db.sql(SHOP);
    db.sql(SHOP_DATA);
    db
}

#[test]
fn max_rows_fails_naming_the_tables_and_writes_nothing() {
    for kind in BOTH {
        let db = shop(kind, "max_rows");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.json");
        let out = db.run(&[
            "dump",
            "--where",
            "customer: id <= 10",
            "--max-rows",
            "50",
            "-o",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 2, "{kind:?}: {out:#?}");
        assert!(
            out.stderr.contains("more than 50 rows") && out.stderr.contains("orders 100 rows"),
            "{kind:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("child of customer"), "{}", out.stderr);
        assert!(!file.exists(), "{kind:?}: a file was written");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp files left"
        );
        // To stdout: nothing either.
        let out = db.run(&["dump", "--where", "customer: id <= 10", "--max-rows", "50"]);
        assert_eq!((out.code, out.stdout.as_str()), (2, ""), "{kind:?}");
        // At the limit it passes; 0 means no limit.
        for max in ["112", "0"] {
            let out = db.run(&["dump", "--where", "customer: id <= 10", "--max-rows", max]);
            assert_eq!(out.code, 0, "{kind:?} {max}: {out:#?}");
        }
    }
}

#[test]
fn plan_lists_rows_and_how_each_table_was_reached() {
    for kind in BOTH {
        let db = shop(kind, "plan");
        let out = db.run(&["dump", "--where", "customer: id = 3", "--plan"]);
        assert_eq!(out.code, 0, "{kind:?}: {out:#?}");
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["TABLE", "ROWS", "REACHED", "AS"]
        );
        let row = |t: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(&format!("{t} ")))
                .unwrap_or_else(|| panic!("{kind:?}: no {t} in\n{}", out.stdout))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            row("rep"),
            "rep 1 parent of customer via ".to_string()
                + fk(kind, "customer", "rep_id")
                + " (1 row)"
        );
        assert_eq!(row("customer"), "customer 1 seed (1 row)");
        assert_eq!(
            row("orders"),
            "orders 10 child of customer via ".to_string()
                + fk(kind, "orders", "customer_id")
                + " (10 rows)"
        );
        assert_eq!(lines.last().unwrap(), &"12 rows in 3 tables, 2 rounds");
        assert!(!out.stdout.contains('{'), "no data: {}", out.stdout);
        // --max-rows does not stop a plan (it is how one finds out why a subset is large).
        let out = db.run(&[
            "dump",
            "--where",
            "customer: id = 3",
            "--plan",
            "--max-rows",
            "2",
        ]);
        assert_eq!(out.code, 0, "{kind:?}: {out:#?}");
        assert!(out.stdout.contains("12 rows in 3 tables"), "{}", out.stdout);
    }
}

/// The name the backend gives an unnamed foreign key on `column`.
fn fk(kind: Kind, table: &str, column: &str) -> &'static str {
    let name = match kind {
        Kind::Pg => format!("{table}_{column}_fkey"),
        // SQLite keeps no constraint names: the catalog's `fk_<table>_<n>` (one per table here).
        Kind::Sqlite => {
            let _ = column;
            format!("fk_{table}_0")
        }
    };
    Box::leak(name.into_boxed_str())
}

#[test]
fn excluded_parent_table_is_an_error_naming_the_foreign_key() {
    for kind in BOTH {
        let db = shop(kind, "excluded_parent");
        let out = db.run(&["dump", "--where", "customer: id = 3", "-T", "rep"]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (2, ""),
            "{kind:?}: {out:#?}"
        );
        assert!(
            out.stderr.contains("table rep is left out")
                && out.stderr.contains("customer")
                && out.stderr.contains("rep_id"),
            "{kind:?}: {}",
            out.stderr
        );
        // An excluded child table is simply not followed.
        let out = db.run(&["dump", "--where", "customer: id = 3", "-T", "orders"]);
        assert_eq!(out.code, 0, "{out:#?}");
        assert_eq!(
            tables_of(&out.stdout).keys().collect::<Vec<_>>(),
            ["customer", "rep"]
        );
        // A bad condition names the --where.
        let out = db.run(&["dump", "--where", "customer: nope = 1"]);
        assert_eq!(out.code, 2);
        assert!(
            out.stderr.contains("--where 'customer: nope = 1'"),
            "{}",
            out.stderr
        );
        let out = db.run(&["dump", "--where", "customer id = 1"]);
        assert_eq!(out.code, 2);
        assert!(out.stderr.contains("TABLE: CONDITION"), "{}", out.stderr);
    }
}

#[test]
fn conditions_cannot_write() {
    for kind in BOTH {
        let db = shop(kind, "no_write");
        let cond = match kind {
            // A function that writes: refused by the read-only snapshot.
            Kind::Pg => {
                db.sql(
                    "CREATE FUNCTION wipe() RETURNS boolean LANGUAGE sql \
                     AS 'DELETE FROM orders; SELECT true'",
                );
                "customer: wipe()"
            }
            // A second statement smuggled into the condition: refused before it reaches the
            // database (which also has query_only on).
            Kind::Sqlite => "customer: id = 1); DELETE FROM orders; SELECT (1",
        };
        let out = db.run(&["dump", "--where", cond]);
        assert_eq!(out.code, 2, "{kind:?}: {out:#?}");
        assert!(out.stderr.contains("--where"), "{}", out.stderr);
        let full = tables_of(&db.dump_all());
        assert_eq!(full["orders"].len(), 500, "{kind:?}: rows were deleted");
    }
}

#[test]
fn config_file_subset_section_and_flags_override_it() {
    for kind in BOTH {
        let db = shop(kind, "config");
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("dbfixtures.toml");
        std::fs::write(
            &conf,
            "[subset]\nwhere = [\"customer: id = 3\"]\nno-children = true\nmax-rows = 100\n",
        )
        .unwrap();
        let c = conf.to_str().unwrap();
        let out = db.run(&["--config", c, "dump"]);
        assert_eq!(out.code, 0, "{out:#?}");
        assert_eq!(
            tables_of(&out.stdout).keys().collect::<Vec<_>>(),
            ["customer", "rep"]
        );
        // --where replaces the file's seeds; the file's no-children still applies.
        let out = db.run(&["--config", c, "dump", "--where", "customer: id IN (3, 4)"]);
        assert_eq!(out.code, 0, "{out:#?}");
        assert_eq!(tables_of(&out.stdout)["customer"].len(), 2);
        assert!(!tables_of(&out.stdout).contains_key("orders"));
        // --max-rows overrides the file's.
        std::fs::write(
            &conf,
            "[subset]\nwhere = [\"customer: id <= 10\"]\nmax-rows = 5\n",
        )
        .unwrap();
        assert_eq!(db.run(&["--config", c, "dump"]).code, 2);
        let out = db.run(&["--config", c, "dump", "--max-rows", "0"]);
        assert_eq!(out.code, 0, "{out:#?}");
        assert_eq!(tables_of(&out.stdout)["orders"].len(), 100);
    }
}

#[test]
fn subset_to_a_directory_writes_only_tables_with_rows() {
    for kind in BOTH {
        let db = shop(kind, "subset_dir");
        let dir = tempfile::tempdir().unwrap();
        let target = format!("{}/", dir.path().join("out").display());
        let out = db.run(&[
            "dump",
            "--where",
            "rep: id = 1",
            "--no-children",
            "-o",
            &target,
        ]);
        assert_eq!(out.code, 0, "{out:#?}");
        let files: Vec<String> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["rep.json"], "{kind:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: schemas, partitions, roles, concurrency

#[test]
fn several_schemas_and_quoted_names() {
    let ddl = r#"CREATE SCHEMA "Sales.EU";
        CREATE TABLE "Customer ""Main""" (id integer PRIMARY KEY, "Name" text);
        CREATE TABLE "Sales.EU"."Order Items" ("Item Id" integer PRIMARY KEY,
            "Customer" integer REFERENCES "Customer ""Main""" (id));"#;
    let data = r#"INSERT INTO "Customer ""Main""" VALUES (1, 'a'), (2, 'b');
        INSERT INTO "Sales.EU"."Order Items" VALUES (10, 1), (11, 2), (12, 1);"#;
    Case {
        name: "schemas",
        ddl,
        data,
        args: &["--where", r#""Sales.EU"."Order Items": "Item Id" = 11"#],
        expect: vec![
            (r#""Sales.EU".Order Items"#, "Item Id", n([11])),
            (r#""Customer ""Main""""#, "id", n([2])),
        ],
    }
    .run(Kind::Pg);
    Case {
        name: "schemas_children",
        ddl,
        data,
        args: &["--where", r#""Customer ""Main""": "Name" = 'a'"#],
        expect: vec![
            (r#""Sales.EU".Order Items"#, "Item Id", n([10, 12])),
            (r#""Customer ""Main""""#, "id", n([1])),
        ],
    }
    .run(Kind::Pg);
}

#[test]
fn partitioned_tables_with_and_without_a_key() {
    let ddl = "CREATE TABLE account (id integer PRIMARY KEY);
        CREATE TABLE event (id integer, at date, account_id integer REFERENCES account (id),
                            PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE event_2023 PARTITION OF event FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
        CREATE TABLE event_2024 PARTITION OF event FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE note (event_id integer, event_at date, body text,
                           FOREIGN KEY (event_id, event_at) REFERENCES event (id, at))
                           PARTITION BY LIST (body);
        CREATE TABLE note_a PARTITION OF note FOR VALUES IN ('a');
        CREATE TABLE note_b PARTITION OF note DEFAULT;";
    // Rows with the same ctid in both partitions of note: (tableoid, ctid) tells them apart.
    let data = "INSERT INTO account VALUES (1), (2);
        INSERT INTO event VALUES (1, '2023-05-01', 1), (2, '2024-05-01', 1), (3, '2024-06-01', 2);
        INSERT INTO note VALUES (1, '2023-05-01', 'a'), (2, '2024-05-01', 'b'),
            (3, '2024-06-01', 'a'), (3, '2024-06-01', 'b');";
    Case {
        name: "partitioned",
        ddl,
        data,
        args: &["--where", "account: id = 1"],
        expect: vec![
            ("account", "id", n([1])),
            ("event", "id", n([1, 2])),
            ("note", "event_id", n([1, 2])),
        ],
    }
    .run(Kind::Pg);
    Case {
        name: "partitioned_seed",
        ddl,
        data,
        args: &["--where", "note: event_id = 3 AND body = 'b'"],
        expect: vec![
            ("account", "id", n([2])),
            ("event", "id", n([3])),
            ("note", "body", s(&["b"])),
        ],
    }
    .run(Kind::Pg);
}

#[test]
fn a_select_only_role_is_enough() {
    static N: AtomicUsize = AtomicUsize::new(0);
    let src = shop(Kind::Pg, "select_only");
    let Db::Pg(pg) = &src else { unreachable!() };
    let role = format!(
        "dbf_subset_ro_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    /// Drops the role even when the test fails.
    struct Role<'a>(&'a TestDb, String);
    impl Drop for Role<'_> {
        fn drop(&mut self) {
            self.0
                .sql(&format!("DROP OWNED BY {0}; DROP ROLE {0}", self.1));
        }
    }
    pg.sql(&format!(
        "CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
         REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC;",
        db = pg
            .query_scalar("SELECT quote_ident(current_database())")
            .unwrap()
    ));
    let _guard = Role(pg, role.clone());
    let mut url = url::Url::parse(&pg.url()).unwrap();
    url.set_username(&role).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ro.json");
    let out = Out::from(
        cmd()
            .args([
                "dump",
                "--where",
                "customer: id = 3",
                "-o",
                file.to_str().unwrap(),
            ])
            .arg("--database-url")
            .arg(url.as_str())
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out:#?}");
    let as_owner = src.run(&["dump", "--where", "customer: id = 3"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), as_owner.stdout);
    // And it is a real subset that loads.
    let case = Case {
        name: "select_only",
        ddl: SHOP,
        data: "",
        args: &["--where", "customer: id = 3"],
        expect: vec![
            ("rep", "id", n([2])),
            ("customer", "id", n([3])),
            ("orders", "id", n((0..10).map(|i| 2 + 50 * i))),
        ],
    };
    case.check(Kind::Pg, &src);
}

#[test]
fn concurrent_writes_during_the_dump_still_load() {
    let ddl = "CREATE TABLE p (id serial PRIMARY KEY, parent_id integer REFERENCES p (id)
                               ON DELETE CASCADE);
        CREATE TABLE c (id serial PRIMARY KEY, p_id integer NOT NULL REFERENCES p (id)
                        ON DELETE CASCADE);";
    let src = Db::new(Kind::Pg, "subset_concurrent");
    src.sql(ddl);
    src.sql(
        "INSERT INTO p (parent_id) SELECT NULL FROM generate_series(1, 500);
         UPDATE p SET parent_id = id - 1 WHERE id > 1 AND id % 5 <> 0;
         INSERT INTO c (p_id) SELECT 1 + i % 500 FROM generate_series(1, 3000) i;",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, writes, url) = (stop.clone(), writes.clone(), src.url());
        std::thread::spawn(move || {
            use diesel::connection::SimpleConnection;
            use diesel::Connection as _;
            let mut c = diesel::pg::PgConnection::establish(&url).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Parents deleted (with their children, cascading) and new chains added.
                c.batch_execute(&format!(
                    "BEGIN;
                     DELETE FROM p WHERE id = (SELECT id FROM p WHERE id % 7 = {} ORDER BY id
                                               DESC LIMIT 1);
                     WITH n AS (INSERT INTO p (parent_id)
                                SELECT id FROM p ORDER BY random() LIMIT 1 RETURNING id)
                     INSERT INTO c (p_id) SELECT id FROM n, generate_series(1, 5);
                     COMMIT;",
                    i % 7
                ))
                .unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let file = dir.path().join(format!("c{round}.json"));
        let out = src.run(&[
            "dump",
            "--where",
            "p: id % 50 = 3",
            "--max-rows",
            "0",
            "-o",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{out:#?}");
        let dst = Db::new(Kind::Pg, "subset_concurrent_copy");
        dst.sql(ddl);
        let out = dst.run(&["load", file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "round {round}: {out:#?}");
        let subset = tables_of(&std::fs::read_to_string(&file).unwrap());
        assert_eq!(tables_of(&dst.dump_all()), subset, "round {round}");
        assert!(subset["c"].len() > 10, "round {round}: {subset:?}");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(writes.load(Ordering::Relaxed) > 0, "the writer never wrote");
}
