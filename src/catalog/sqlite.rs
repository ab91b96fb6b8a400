//! SQLite catalog introspection: one query returning one JSON document for any number of tables
//! (plus one for `sqlite_stat1` row counts when that table exists), built from the pragma
//! table-valued functions (`pragma_table_list`, `pragma_table_xinfo`, `pragma_index_list`,
//! `pragma_index_info`, `pragma_foreign_key_list`). Table names reach the pragmas as values, never
//! as SQL text, so no name can change a statement.
//!
//! Scope and decisions:
//! - Only the `main` database (attached and temp databases are out of scope); every table's schema
//!   is `main`, which is also the default schema, so fixture keys are bare table names.
//! - Tables are `pragma_table_list` rows of type `table`: views, virtual tables and their shadow
//!   tables (type `shadow`, reported for modules that declare them: FTS3/4/5, R*Tree) are left out,
//!   and so are SQLite's own `sqlite_*` tables. WITHOUT ROWID tables are ordinary tables.
//! - A column's `type` is its declared type as SQLite reports it (empty when none). Its `kind`
//!   follows SQLite's affinity rules (<https://sqlite.org/datatype3.html#determination_of_column_affinity>),
//!   refined for the NUMERIC affinity: see [`value_kind`]. Untyped columns (BLOB affinity, any value
//!   kept as is) are `text`, not `bytes`: they usually hold text or numbers written by loose
//!   schemas, and a declared `BLOB` says bytes explicitly.
//! - The rowid alias (a rowid table's single-column `INTEGER PRIMARY KEY`) is never NULL, whatever
//!   the pragma says. Other columns are nullable unless declared NOT NULL (SQLite lets NULL into
//!   the primary key of a rowid table unless the column says NOT NULL).
//! - A table with no declared primary key has an empty `primary_key` (its rowid is not a column).
//! - `unique` lists UNIQUE constraints and unique indexes over plain columns; partial and
//!   expression indexes are not conflict targets for a plain column list and are left out.
//! - `autoincrement` is exact: the table's CREATE statement contains the AUTOINCREMENT keyword as
//!   a token (not inside a string, quoted identifier or comment). SQLite accepts the keyword only
//!   on a rowid alias, and only such tables consult `sqlite_sequence`; a `sqlite_sequence` row
//!   for another table (written by hand) is ignored by SQLite and by us.
//! - Foreign keys get a synthesized, stable name `fk_<table>_<id>` (`id` from
//!   `pragma_foreign_key_list`; SQLite keeps no constraint names). The parent table is resolved
//!   case-insensitively as SQLite does; omitted parent columns mean the parent's primary key. A
//!   foreign key whose parent is not a catalog table (missing, a view, another database) or whose
//!   parent key cannot be resolved (no primary key, column count differs) is left out: SQLite
//!   rejects every write to such a child with "foreign key mismatch" anyway.
//!   `deferrable` is always false: the pragma does not report DEFERRABLE INITIALLY DEFERRED, and
//!   treating a deferred key as immediate is safe (the loader orders rows instead of relying on
//!   the deferral).
//! - Each AUTOINCREMENT table has one sequence named after the table (its `sqlite_sequence` row),
//!   START 1, INCREMENT 1, MINVALUE 1, MAXVALUE i64::MAX, feeding the rowid alias.
//! - `estimated_rows` comes from `sqlite_stat1` (written by ANALYZE) when present, else 0.

use std::collections::HashMap;

use serde::Deserialize;

use super::{
    Catalog, Column, ForeignKey, QualifiedName, Sequence, SequenceUse, Table, TableKind, ValueKind,
};
use crate::backend::Connection;
use crate::error::Result;

const MAIN: &str = "main";

/// The whole catalog in one document. Every list carries its position (cid, seqno, ...) so the
/// order does not depend on how SQLite feeds rows to json_group_array.
const CATALOG_SQL: &str = r#"SELECT json_object(
  'stat1', EXISTS (SELECT 1 FROM pragma_table_list AS s
                    WHERE s.schema = 'main' AND s.name = 'sqlite_stat1' AND s.type = 'table'),
  'tables', json((SELECT json_group_array(json_object(
      'name', t.name,
      'without_rowid', t.wr,
      'sql', (SELECT m.sql FROM main.sqlite_master AS m WHERE m.type = 'table' AND m.name = t.name),
      'columns', json((SELECT json_group_array(json_object(
            'cid', c.cid, 'name', c.name, 'type', c.type, 'notnull', c."notnull",
            'default', c.dflt_value, 'pk', c.pk, 'hidden', c.hidden))
          FROM pragma_table_xinfo(t.name, 'main') AS c)),
      'indexes', json((SELECT json_group_array(json_object(
            'name', il.name, 'unique', il."unique", 'origin', il.origin, 'partial', il.partial,
            'columns', json((SELECT json_group_array(json_object(
                    'seqno', ii.seqno, 'cid', ii.cid, 'name', ii.name))
                  FROM pragma_index_info(il.name, 'main') AS ii))))
          FROM pragma_index_list(t.name, 'main') AS il)),
      'foreign_keys', json((SELECT json_group_array(json_object(
            'id', f.id, 'seq', f.seq, 'table', f."table", 'from', f."from", 'to', f."to"))
          FROM pragma_foreign_key_list(t.name, 'main') AS f))))
    FROM pragma_table_list AS t
   WHERE t.schema = 'main' AND t.type = 'table' AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\' AND t.name <> '__diesel_schema_migrations'))
) AS j"#;

/// Row counts per table from ANALYZE's statistics (first number of `stat` is the row count).
const STAT1_SQL: &str = "SELECT json_group_object(tbl, n) AS j FROM (\
    SELECT tbl, max(CAST(stat AS INTEGER)) AS n FROM main.sqlite_stat1 \
     WHERE tbl IS NOT NULL GROUP BY tbl)";

/// SQLite has no boolean type: flags arrive as 0 / 1.
fn de_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(i64::deserialize(d)? != 0)
}

#[derive(Deserialize)]
struct RawCatalog {
    #[serde(deserialize_with = "de_flag")]
    stat1: bool,
    tables: Vec<RawTable>,
}

#[derive(Deserialize)]
struct RawTable {
    name: String,
    #[serde(deserialize_with = "de_flag")]
    without_rowid: bool,
    sql: Option<String>,
    columns: Vec<RawColumn>,
    indexes: Vec<RawIndex>,
    foreign_keys: Vec<RawForeignKey>,
}

#[derive(Deserialize)]
struct RawColumn {
    cid: i64,
    name: String,
    #[serde(rename = "type")]
    type_name: Option<String>,
    #[serde(deserialize_with = "de_flag")]
    notnull: bool,
    default: Option<String>,
    pk: i64,
    hidden: i64,
}

#[derive(Deserialize)]
struct RawIndex {
    name: String,
    #[serde(deserialize_with = "de_flag")]
    unique: bool,
    origin: String,
    #[serde(deserialize_with = "de_flag")]
    partial: bool,
    columns: Vec<RawIndexColumn>,
}

#[derive(Deserialize)]
struct RawIndexColumn {
    seqno: i64,
    cid: i64,
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawForeignKey {
    id: i64,
    seq: i64,
    table: String,
    from: String,
    to: Option<String>,
}

pub(super) fn read(conn: &mut Connection) -> Result<Catalog> {
    let raw: RawCatalog = conn.query_json(CATALOG_SQL)?;
    let rows: HashMap<String, f64> = if raw.stat1 {
        conn.query_json::<Option<HashMap<String, Option<f64>>>>(STAT1_SQL)?
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?.max(0.0))))
            .collect()
    } else {
        HashMap::new()
    };
    Ok(build(raw.tables, &rows))
}

fn main_name(name: &str) -> QualifiedName {
    QualifiedName {
        schema: MAIN.into(),
        name: name.into(),
    }
}

/// Turns the pragma answers into the catalog (pure, so it is testable without a database).
fn build(mut raw: Vec<RawTable>, rows: &HashMap<String, f64>) -> Catalog {
    let mut tables = Vec::with_capacity(raw.len());
    let mut sequences = Vec::new();
    for t in &mut raw {
        t.columns.sort_by_key(|c| c.cid);
        t.indexes.sort_by(|a, b| a.name.cmp(&b.name));
        for i in &mut t.indexes {
            i.columns.sort_by_key(|c| c.seqno);
        }
        let mut pk: Vec<&RawColumn> = t.columns.iter().filter(|c| c.pk > 0).collect();
        pk.sort_by_key(|c| c.pk);
        // A rowid table's single-column INTEGER PRIMARY KEY is the rowid itself, unless it is
        // backed by an index (the `INTEGER PRIMARY KEY DESC` quirk makes an ordinary column).
        let rowid_alias: Option<&str> = match pk.as_slice() {
            [c] if !t.without_rowid
                && c.type_name
                    .as_deref()
                    .is_some_and(|ty| ty.eq_ignore_ascii_case("INTEGER"))
                && !t.indexes.iter().any(|i| i.origin == "pk") =>
            {
                Some(c.name.as_str())
            }
            _ => None,
        };
        let autoincrement =
            rowid_alias.is_some() && t.sql.as_deref().is_some_and(has_autoincrement_keyword);
        let columns = t
            .columns
            .iter()
            .map(|c| {
                let type_name = c.type_name.clone().unwrap_or_default();
                let generated = matches!(c.hidden, 2 | 3);
                Column {
                    kind: value_kind(&type_name),
                    base_type: None,
                    type_name,
                    nullable: !c.notnull && rowid_alias != Some(c.name.as_str()),
                    default: if generated { None } else { c.default.clone() },
                    generated,
                    identity: None,
                    name: c.name.clone(),
                }
            })
            .collect();
        let unique = t
            .indexes
            .iter()
            .filter(|i| i.unique && i.origin != "pk" && !i.partial && !i.columns.is_empty())
            .filter_map(|i| {
                i.columns
                    .iter()
                    .map(|c| if c.cid >= 0 { c.name.clone() } else { None })
                    .collect::<Option<Vec<String>>>()
            })
            .collect();
        let name = main_name(&t.name);
        if autoincrement {
            sequences.push(Sequence {
                name: name.clone(),
                start: 1,
                increment: 1,
                min: 1,
                max: i64::MAX as i128,
                cycle: false,
                feeds: vec![SequenceUse {
                    table: name.clone(),
                    column: rowid_alias.unwrap_or_default().to_string(),
                    // A rowid alias is declared INTEGER (see above).
                    kind: ValueKind::Integer,
                }],
            });
        }
        tables.push(Table {
            estimated_rows: rows.get(&t.name).copied().unwrap_or(0.0),
            name,
            kind: TableKind::Ordinary,
            columns,
            primary_key: pk.iter().map(|c| c.name.clone()).collect(),
            unique,
            autoincrement,
            key: String::new(),
        });
    }
    let foreign_keys = foreign_keys(&raw, &tables);
    sequences.sort_by(|a, b| a.name.cmp(&b.name));
    Catalog {
        default_schema: MAIN.into(),
        tables,
        foreign_keys,
        sequences,
    }
}

/// Resolves each table's foreign keys against the catalog (see the module doc).
fn foreign_keys(raw: &[RawTable], tables: &[Table]) -> Vec<ForeignKey> {
    // SQLite compares table and column names ASCII case-insensitively; an exact match wins.
    let find_table = |written: &str| {
        tables.iter().find(|t| t.name.name == written).or_else(|| {
            tables
                .iter()
                .find(|t| t.name.name.eq_ignore_ascii_case(written))
        })
    };
    let mut out = Vec::new();
    for (t, table) in raw.iter().zip(tables) {
        let mut ids: Vec<i64> = t.foreign_keys.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let mut parts: Vec<&RawForeignKey> =
                t.foreign_keys.iter().filter(|f| f.id == id).collect();
            parts.sort_by_key(|f| f.seq);
            let Some(parent) = find_table(&parts[0].table) else {
                continue;
            };
            let columns: Vec<String> = parts.iter().map(|f| f.from.clone()).collect();
            let ref_columns: Vec<String> = if parts.iter().all(|f| f.to.is_none()) {
                parent.primary_key.clone()
            } else {
                let resolved: Option<Vec<String>> = parts
                    .iter()
                    .map(|f| {
                        let to = f.to.as_deref()?;
                        let col = parent
                            .column(to)
                            .or_else(|| {
                                parent
                                    .columns
                                    .iter()
                                    .find(|c| c.name.eq_ignore_ascii_case(to))
                            })
                            .map(|c| c.name.clone())
                            .unwrap_or_else(|| to.to_string());
                        Some(col)
                    })
                    .collect();
                match resolved {
                    Some(r) => r,
                    None => continue,
                }
            };
            if ref_columns.len() != columns.len() {
                continue;
            }
            out.push(ForeignKey {
                name: format!("fk_{}_{id}", t.name),
                table: table.name.clone(),
                columns,
                ref_table: parent.name.clone(),
                ref_columns,
                deferrable: false,
            });
        }
    }
    out.sort_by(|a, b| (&a.table, &a.name).cmp(&(&b.table, &b.name)));
    out
}

/// How values of a column with this declared type are written to fixtures. SQLite's affinity
/// rules in their order (INT → integer; CHAR/CLOB/TEXT → text; BLOB → bytes; none → text, see
/// the module doc; REAL/FLOA/DOUB → number), then the NUMERIC affinity split by intent:
/// BOOL → boolean, JSON (and JSONB) → json (the text verbatim), NUM/DEC (NUMERIC, DECIMAL,
/// NUMBER) → number, anything else (DATE, DATETIME, TIMESTAMP, UUID, STRICT's ANY, ...) → text,
/// which is what SQLite stores when a value does not look like a number.
pub(crate) fn value_kind(declared: &str) -> ValueKind {
    let t = declared.to_ascii_uppercase();
    let has = |s: &str| t.contains(s);
    if has("INT") {
        ValueKind::Integer
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        ValueKind::Text
    } else if has("BLOB") {
        ValueKind::Bytes
    } else if t.trim().is_empty() {
        ValueKind::Text
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        ValueKind::Number
    } else if has("BOOL") {
        ValueKind::Boolean
    } else if has("JSON") {
        ValueKind::Json
    } else if has("NUM") || has("DEC") {
        ValueKind::Number
    } else {
        ValueKind::Text
    }
}

/// Whether a CREATE TABLE statement contains the AUTOINCREMENT keyword as a token: string
/// literals, quoted identifiers ("", ``, []) and comments are skipped. AUTOINCREMENT cannot be a
/// bare identifier or part of a type name in SQLite's grammar, so a token match is exact.
pub(crate) fn has_autoincrement_keyword(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    // Skips to just past the closing `close` of a quoted run starting at `i` (the opening
    // character); a doubled closing character is an escaped one (not for `[...]`).
    let skip_quoted = |mut i: usize, close: u8, doubling: bool| {
        i += 1;
        while i < b.len() {
            if b[i] == close {
                if doubling && b.get(i + 1) == Some(&close) {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        b.len()
    };
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    while i < b.len() {
        match b[i] {
            b'\'' => i = skip_quoted(i, b'\'', true),
            b'"' => i = skip_quoted(i, b'"', true),
            b'`' => i = skip_quoted(i, b'`', true),
            b'[' => i = skip_quoted(i, b']', false),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(b.len());
            }
            c if is_word(c) => {
                let start = i;
                while i < b.len() && is_word(b[i]) {
                    i += 1;
                }
                if sql[start..i].eq_ignore_ascii_case("AUTOINCREMENT") {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_affinity_rules() {
        for (ty, kind) in [
            ("INTEGER", ValueKind::Integer),
            ("BigInt", ValueKind::Integer),
            ("UNSIGNED BIG INT", ValueKind::Integer),
            ("VARCHAR(255)", ValueKind::Text),
            ("NCHAR(5)", ValueKind::Text),
            ("CLOB", ValueKind::Text),
            ("text", ValueKind::Text),
            ("BLOB", ValueKind::Bytes),
            ("", ValueKind::Text),
            ("REAL", ValueKind::Number),
            ("DOUBLE PRECISION", ValueKind::Number),
            ("FLOAT", ValueKind::Number),
            ("NUMERIC", ValueKind::Number),
            ("DECIMAL(10,2)", ValueKind::Number),
            ("BOOLEAN", ValueKind::Boolean),
            ("bool", ValueKind::Boolean),
            ("DATE", ValueKind::Text),
            ("DATETIME", ValueKind::Text),
            ("TIMESTAMP", ValueKind::Text),
            ("JSON", ValueKind::Json),
            ("JSONB", ValueKind::Json),
            ("ANY", ValueKind::Text),
            ("UUID", ValueKind::Text),
        ] {
            assert_eq!(value_kind(ty), kind, "{ty:?}");
        }
    }

    #[test]
    fn autoincrement_is_found_only_as_a_token() {
        assert!(has_autoincrement_keyword(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT)"
        ));
        assert!(has_autoincrement_keyword(
            "create table t(id integer primary key autoincrement,x)"
        ));
        assert!(has_autoincrement_keyword(
            "CREATE TABLE t (id INTEGER PRIMARY KEY /* x */ AutoIncrement)"
        ));
        for sql in [
            "CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT DEFAULT 'autoincrement')",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, \"autoincrement\" TEXT)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, [autoincrement] TEXT, `x` int)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY -- AUTOINCREMENT\n)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY /* AUTOINCREMENT */)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, no_autoincrement INT)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT DEFAULT 'it''s AUTOINCREMENT')",
        ] {
            assert!(!has_autoincrement_keyword(sql), "{sql}");
        }
    }

    use crate::backend::connection::temp_sqlite as temp_db;

    fn qn(name: &str) -> QualifiedName {
        main_name(name)
    }

    const HOSTILE: &str = "x\"; DROP TABLE y; --";

    const EDGE_DDL: &str = r#"
        CREATE TABLE y (a);
        CREATE TABLE "x""; DROP TABLE y; --" (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            "we""ird col" BigInt NOT NULL DEFAULT 7,
            g INT GENERATED ALWAYS AS (id * 2) VIRTUAL,
            s TEXT AS (upper("we""ird col")) STORED
        );
        CREATE TABLE nopk (a, b TEXT, c DATETIME);
        CREATE TABLE comp (a INT NOT NULL, b INT, c TEXT, d TEXT UNIQUE, PRIMARY KEY (b, a));
        CREATE UNIQUE INDEX comp_c ON comp (c, a);
        CREATE UNIQUE INDEX comp_expr ON comp (lower(c));
        CREATE UNIQUE INDEX comp_part ON comp (a) WHERE c IS NOT NULL;
        CREATE INDEX comp_plain ON comp (c);
        CREATE TABLE tree (
            id INTEGER PRIMARY KEY,
            parent_id INT REFERENCES tree,
            ca INT, cb INT,
            note TEXT DEFAULT 'autoincrement',
            FOREIGN KEY (cb, ca) REFERENCES COMP (B, A)
        );
        CREATE TABLE kid (id INTEGER PRIMARY KEY, comp_b INT, comp_a INT, ghost INT REFERENCES nowhere (id),
            FOREIGN KEY (comp_b, comp_a) REFERENCES comp);
        CREATE TABLE wr (k TEXT PRIMARY KEY, v BLOB, j JSON) WITHOUT ROWID;
        CREATE TABLE descq (x INTEGER PRIMARY KEY DESC, y NUMERIC);
        CREATE VIRTUAL TABLE ft USING fts5(body);
        CREATE VIEW v AS SELECT 1 AS one;
        CREATE TEMP TABLE tmp (a);
    "#;

    #[test]
    fn reads_edge_cases_from_a_real_file() {
        let (_dir, mut conn) = temp_db(EDGE_DDL);
        let cat = Catalog::read(&mut conn).unwrap();
        assert_eq!(cat.default_schema, "main");
        let names: Vec<&str> = cat.tables.iter().map(|t| t.name.name.as_str()).collect();
        assert_eq!(
            names,
            ["comp", "descq", "kid", "nopk", "tree", "wr", HOSTILE, "y"],
            "no views, virtual/shadow, temp or sqlite_ tables"
        );
        assert!(cat
            .tables
            .iter()
            .all(|t| t.name.schema == "main" && t.kind == TableKind::Ordinary));

        let h = cat.table(&qn(HOSTILE)).unwrap();
        assert_eq!(h.key, "\"x\"\"; DROP TABLE y; --\"");
        assert_eq!(cat.find(&h.key).unwrap(), cat.table_index(&h.name).unwrap());
        assert!(h.autoincrement);
        assert_eq!(h.primary_key, ["id"]);
        let cols: Vec<_> = h
            .columns
            .iter()
            .map(|c| {
                let d = c.default.as_deref();
                (
                    c.name.as_str(),
                    c.type_name.as_str(),
                    c.kind,
                    c.nullable,
                    d,
                    c.generated,
                )
            })
            .collect();
        assert_eq!(
            cols,
            [
                ("id", "INTEGER", ValueKind::Integer, false, None, false),
                (
                    "we\"ird col",
                    "BigInt",
                    ValueKind::Integer,
                    false,
                    Some("7"),
                    false
                ),
                ("g", "INT", ValueKind::Integer, true, None, true),
                ("s", "TEXT", ValueKind::Text, true, None, true),
            ]
        );
        assert_eq!(h.stored_columns().count(), 2);

        let nopk = cat.table(&qn("nopk")).unwrap();
        assert!(nopk.primary_key.is_empty() && !nopk.autoincrement);
        let kinds: Vec<(&str, ValueKind)> = nopk
            .columns
            .iter()
            .map(|c| (c.type_name.as_str(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("", ValueKind::Text),
                ("TEXT", ValueKind::Text),
                ("DATETIME", ValueKind::Text)
            ]
        );
        assert!(nopk.columns.iter().all(|c| c.nullable));

        let comp = cat.table(&qn("comp")).unwrap();
        assert_eq!(comp.primary_key, ["b", "a"]);
        assert_eq!(
            comp.unique,
            [vec!["c", "a"], vec!["d"]],
            "no pk/partial/expression/plain"
        );
        assert!(
            comp.column("b").unwrap().nullable,
            "a rowid table's PK may hold NULL"
        );

        let tree = cat.table(&qn("tree")).unwrap();
        assert!(
            !tree.autoincrement,
            "the word in a string default does not count"
        );
        assert!(!tree.column("id").unwrap().nullable, "rowid alias");

        let descq = cat.table(&qn("descq")).unwrap();
        assert!(
            descq.column("x").unwrap().nullable,
            "INTEGER PRIMARY KEY DESC is no alias"
        );
        assert_eq!(descq.column("y").unwrap().kind, ValueKind::Number);

        let wr = cat.table(&qn("wr")).unwrap();
        assert_eq!(wr.primary_key, ["k"]);
        assert!(!wr.column("k").unwrap().nullable);
        assert_eq!(wr.column("v").unwrap().kind, ValueKind::Bytes);
        assert_eq!(wr.column("j").unwrap().kind, ValueKind::Json);

        let fks: Vec<_> = cat
            .foreign_keys
            .iter()
            .map(|f| {
                assert!(!f.deferrable);
                (
                    f.name.as_str(),
                    f.table.name.as_str(),
                    f.columns.iter().map(String::as_str).collect::<Vec<_>>(),
                    f.ref_table.name.as_str(),
                    f.ref_columns.iter().map(String::as_str).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            fks,
            [
                // The key naming a missing table is left out.
                (
                    "fk_kid_0",
                    "kid",
                    vec!["comp_b", "comp_a"],
                    "comp",
                    vec!["b", "a"]
                ),
                (
                    "fk_tree_0",
                    "tree",
                    vec!["cb", "ca"],
                    "comp",
                    vec!["b", "a"]
                ),
                ("fk_tree_1", "tree", vec!["parent_id"], "tree", vec!["id"]),
            ]
        );

        assert_eq!(cat.sequences.len(), 1);
        let s = &cat.sequences[0];
        assert_eq!(s.name, qn(HOSTILE));
        assert_eq!(
            (s.start, s.increment, s.min, s.max),
            (1, 1, 1, i64::MAX as i128)
        );
        assert_eq!(
            s.feeds,
            [SequenceUse {
                table: qn(HOSTILE),
                column: "id".into(),
                kind: ValueKind::Integer,
            }]
        );
        // The hostile name was never run as SQL.
        assert!(cat.table(&qn("y")).is_some());
    }

    const DEMO: &str = include_str!(
        "../../fixtures/migrations/sqlite/2024-01-01-000000_create_demo_schema/up.sql"
    );

    #[test]
    fn reads_the_demo_schema() {
        let (_dir, mut conn) = temp_db(DEMO);
        conn.execute(
            "INSERT INTO users (email, full_name) VALUES ('a@x', 'A'), ('b@x', 'B'); ANALYZE;",
        )
        .unwrap();
        let cat = Catalog::read(&mut conn).unwrap();
        let keys: Vec<&str> = cat.tables.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cleaning_jobs",
                "clients",
                "payments",
                "properties",
                "users"
            ]
        );
        assert!(cat
            .tables
            .iter()
            .all(|t| t.autoincrement && t.primary_key == ["id"]));
        let seqs: Vec<&str> = cat.sequences.iter().map(|s| s.name.name.as_str()).collect();
        assert_eq!(seqs, keys);

        let users = cat.table(&qn("users")).unwrap();
        assert_eq!(users.estimated_rows, 2.0, "from sqlite_stat1");
        assert_eq!(users.unique, [vec!["email"]]);
        let is_admin = users.column("is_admin").unwrap();
        assert_eq!(
            (is_admin.kind, is_admin.nullable),
            (ValueKind::Boolean, false)
        );
        assert_eq!(is_admin.default.as_deref(), Some("false"));
        assert_eq!(
            users.column("created_at").unwrap().default.as_deref(),
            Some("strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')")
        );
        let clients = cat.table(&qn("clients")).unwrap();
        assert_eq!(
            clients.column("account_manager_id").unwrap().kind,
            ValueKind::Integer
        );
        assert_eq!(clients.estimated_rows, 0.0);

        let fks: Vec<(&str, &str, &str)> = cat
            .foreign_keys
            .iter()
            .map(|f| {
                (
                    f.table.name.as_str(),
                    f.columns[0].as_str(),
                    f.ref_table.name.as_str(),
                )
            })
            .collect();
        assert_eq!(
            fks,
            [
                ("cleaning_jobs", "cleaner_id", "users"),
                ("cleaning_jobs", "property_id", "properties"),
                ("clients", "account_manager_id", "users"),
                ("payments", "job_id", "cleaning_jobs"),
                ("properties", "client_id", "clients"),
            ]
        );
        assert!(cat.foreign_keys.iter().all(|f| f.ref_columns == ["id"]));
    }

    #[test]
    fn empty_database() {
        let (_dir, mut conn) = temp_db("");
        let cat = Catalog::read(&mut conn).unwrap();
        assert!(cat.tables.is_empty() && cat.foreign_keys.is_empty() && cat.sequences.is_empty());
    }
}
