//! SQLite side of realignment. The "sequence" of an AUTOINCREMENT table is its row in
//! `sqlite_sequence` (`name` = the table, `seq` = the largest rowid ever used), so the next value
//! is `seq + 1`; a table without a row has never been used and starts at 1.
//!
//! SQLite's AUTOINCREMENT never hands out a rowid below MAX(rowid) + 1 whatever `seq` says (it
//! takes the larger of the two), so a `seq` that lags behind the data does not cause collisions
//! by itself. Realignment here makes `sqlite_sequence` exact, with the same rule as PostgreSQL
//! (next = MAX + 1, START when the table is empty), and lets `--check` catch a `seq` below MAX:
//! that happens when rows are copied in while a `sqlite_sequence` row was deleted or edited by
//! hand, or when a database is restored from a dump that left `sqlite_sequence` out. It also
//! brings `seq` back down after rows were deleted, unless `never_rewind` is set.
//!
//! Values reach SQL as bound parameters (the table names in `current_values` as one JSON array,
//! the moves as text/integer binds); only identifiers are written into SQL text, quoted.

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use serde::Deserialize;

use crate::backend::Connection;
use crate::catalog::{quote_ident, quote_literal, Catalog, QualifiedName, Sequence};
use crate::error::{Context, Error, Result};

/// SQLite refuses compound SELECTs of more than SQLITE_MAX_COMPOUND_SELECT (500) terms.
const UNION_CHUNK: usize = 400;

#[derive(QueryableByName)]
struct JsonText {
    #[diesel(sql_type = Nullable<Text>)]
    j: Option<String>,
}

fn sqlite(conn: &mut Connection) -> Result<&mut diesel::SqliteConnection> {
    match conn {
        Connection::Sqlite(c) => Ok(c),
        Connection::Pg(_) => Err(Error::Invalid(
            "internal error: SQLite sequence code called on a PostgreSQL connection".into(),
        )),
    }
}

#[derive(Deserialize)]
struct Current {
    i: usize,
    found: i64,
    seq: Option<String>,
}

/// (last value handed out, next value) of each sequence, from `sqlite_sequence` in one query.
/// SQLite reads `seq` as an integer (NULL and text without digits count as 0), so do we; when a
/// table has several rows (only possible by hand), SQLite uses the first one, and so do we.
pub(super) fn current_values(
    conn: &mut Connection,
    seqs: &[&Sequence],
) -> Result<Vec<(Option<i128>, i128)>> {
    let names = serde_json::to_string(&seqs.iter().map(|s| &s.name.name).collect::<Vec<_>>())
        .map_err(|e| Error::Invalid(e.to_string()))?;
    const SQL: &str = "SELECT json_group_array(json_object(\
        'i', n.key, \
        'found', EXISTS (SELECT 1 FROM main.sqlite_sequence AS s WHERE s.name = n.value), \
        'seq', (SELECT CAST(coalesce(CAST(s.seq AS INTEGER), 0) AS TEXT) \
                  FROM main.sqlite_sequence AS s WHERE s.name = n.value \
                 ORDER BY s.rowid LIMIT 1))) AS j \
        FROM json_each(?) AS n";
    let rows: Vec<JsonText> = diesel::sql_query(SQL)
        .bind::<Text, _>(&names)
        .load(sqlite(conn)?)
        .context(|| "reading sqlite_sequence".into())?;
    let text = rows
        .into_iter()
        .next()
        .and_then(|r| r.j)
        .unwrap_or_else(|| "[]".into());
    let rows: Vec<Current> = serde_json::from_str(&text)
        .map_err(|e| Error::db("reading sqlite_sequence", format!("unexpected answer: {e}")))?;
    let mut out = vec![(None, 1); seqs.len()];
    for r in rows {
        if r.found == 0 || r.i >= out.len() {
            continue;
        }
        let seq: i128 = r.seq.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
        out[r.i] = (Some(seq), seq + 1);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Extreme {
    i: usize,
    max: Option<String>,
    min: Option<String>,
}

/// Parses an aggregate rendered as text: an integer as is, a real rounded outward (up for MAX,
/// down for MIN) like the PostgreSQL side, anything else ignored.
fn parse_extreme(v: Option<&str>, round_up: bool) -> Option<i128> {
    let v = v?.trim();
    if let Ok(n) = v.parse::<i128>() {
        return Some(n);
    }
    let f: f64 = v.parse().ok().filter(|f: &f64| f.is_finite())?;
    Some(if round_up { f.ceil() } else { f.floor() } as i128)
}

/// (MAX, MIN) over the columns fed by each sequence; `columns` holds (sequence position, table,
/// column). One query per 400 columns (a UNION ALL); only integer and real values count.
pub(super) fn extremes(
    conn: &mut Connection,
    count: usize,
    columns: &[(usize, &QualifiedName, &str)],
) -> Result<Vec<(Option<i128>, Option<i128>)>> {
    let mut out: Vec<(Option<i128>, Option<i128>)> = vec![(None, None); count];
    for chunk in columns.chunks(UNION_CHUNK) {
        let parts: Vec<String> = chunk
            .iter()
            .map(|(i, t, c)| {
                let c = quote_ident(c);
                let num = format!("CASE WHEN typeof({c}) IN ('integer', 'real') THEN {c} END");
                format!(
                    "SELECT {i} AS i, CAST(max({num}) AS TEXT) AS max, \
                     CAST(min({num}) AS TEXT) AS min FROM {}",
                    t.sql()
                )
            })
            .collect();
        let sql = format!(
            "SELECT json_group_array(json_object('i', i, 'max', max, 'min', min)) AS j \
             FROM ({}) AS x",
            parts.join(" UNION ALL ")
        );
        let rows: Option<Vec<Extreme>> = conn.query_json(&sql)?;
        for r in rows.unwrap_or_default() {
            let (max, min) = (
                parse_extreme(r.max.as_deref(), true),
                parse_extreme(r.min.as_deref(), false),
            );
            let Some(slot) = out.get_mut(r.i) else {
                continue;
            };
            super::merge_extremes(slot, max, min);
        }
    }
    Ok(out)
}

/// The two statements of a move: set `seq` on the table's row, or add the row when there is
/// none (`sqlite_sequence` has no unique key, so no upsert). Parameters: seq, name | name, seq,
/// name.
const UPDATE_SQL: &str = "UPDATE main.sqlite_sequence SET seq = ? WHERE name = ?";
const INSERT_SQL: &str = "INSERT INTO main.sqlite_sequence (name, seq) SELECT ?, ? \
     WHERE NOT EXISTS (SELECT 1 FROM main.sqlite_sequence WHERE name = ?)";

/// `seq` for a target next value (the last value handed out is one below it).
fn seq_for(seq: &Sequence, target: i128) -> Result<i64> {
    i64::try_from(target - 1).map_err(|_| Error::Sequence {
        sequence: seq.name.name.clone(),
        message: format!("next value {target} does not fit in a SQLite rowid"),
    })
}

/// Moves the sequences: per move, the UPDATE and the conditional INSERT of [`display_move`],
/// with bound parameters.
pub(super) fn apply(
    conn: &mut Connection,
    catalog: &Catalog,
    moves: &[(usize, i128)],
) -> Result<()> {
    let c = sqlite(conn)?;
    for &(s, target) in moves {
        let seq = &catalog.sequences[s];
        let name = seq.name.name.as_str();
        let value = seq_for(seq, target)?;
        let what = || format!("moving sqlite_sequence of {}", seq.name.name);
        diesel::sql_query(UPDATE_SQL)
            .bind::<BigInt, _>(value)
            .bind::<Text, _>(name)
            .execute(c)
            .context(what)?;
        diesel::sql_query(INSERT_SQL)
            .bind::<Text, _>(name)
            .bind::<BigInt, _>(value)
            .bind::<Text, _>(name)
            .execute(c)
            .context(what)?;
    }
    Ok(())
}

/// The statements `apply` runs for one move, with the values written in (dry-run output).
pub(super) fn display_move(seq: &Sequence, target: i128) -> String {
    let name = quote_literal(&seq.name.name);
    let value = target - 1;
    format!(
        "UPDATE sqlite_sequence SET seq = {value} WHERE name = {name}; \
         INSERT INTO sqlite_sequence (name, seq) SELECT {name}, {value} \
         WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = {name});"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequences::{inspect, reset, ResetOptions, Status};

    use crate::backend::connection::temp_sqlite as temp_db;

    fn seq_rows(conn: &mut Connection) -> Vec<(String, i64)> {
        #[derive(Deserialize)]
        struct R {
            name: String,
            seq: i64,
        }
        let rows: Vec<R> = conn
            .query_json(
                "SELECT json_group_array(json_object('name', name, 'seq', seq)) AS j \
                 FROM (SELECT name, seq FROM sqlite_sequence ORDER BY name)",
            )
            .unwrap();
        rows.into_iter().map(|r| (r.name, r.seq)).collect()
    }

    const HOSTILE: &str = "x\"; DROP TABLE y; --";

    const DDL: &str = r#"
        CREATE TABLE y (a);
        CREATE TABLE "x""; DROP TABLE y; --" (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        CREATE TABLE "it's" (id INTEGER PRIMARY KEY AUTOINCREMENT);
        CREATE TABLE empty (id INTEGER PRIMARY KEY AUTOINCREMENT);
        CREATE TABLE plain (id INTEGER PRIMARY KEY);
    "#;

    #[test]
    fn reset_round_trip() {
        let (_dir, mut conn) = temp_db(DDL);
        conn.execute(
            r#"INSERT INTO "x""; DROP TABLE y; --" (id, v) VALUES (5, 'a'), (42, 'b');
               INSERT INTO "it's" (id) VALUES (3);
               INSERT INTO empty (id) VALUES (9); DELETE FROM empty;
               INSERT INTO plain (id) VALUES (100);
               -- Hand edits: one row behind, one row gone.
               UPDATE sqlite_sequence SET seq = 2 WHERE name = 'x"; DROP TABLE y; --';
               DELETE FROM sqlite_sequence WHERE name = 'it''s';"#,
        )
        .unwrap();
        assert_eq!(
            seq_rows(&mut conn),
            [("empty".to_string(), 9), (HOSTILE.to_string(), 2)]
        );

        let before = inspect(&mut conn, &[]).unwrap();
        let view: Vec<_> = before
            .iter()
            .map(|s| {
                let t = s.target;
                (
                    s.sequence.as_str(),
                    s.last_value,
                    s.next_value,
                    s.column_extreme,
                    t,
                    s.status,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("empty", Some(9), 10, None, Some(1), Status::Ahead),
                ("it's", None, 1, Some(3), Some(4), Status::Behind),
                (
                    "\"x\"\"; DROP TABLE y; --\"",
                    Some(2),
                    3,
                    Some(42),
                    Some(43),
                    Status::Behind
                ),
            ],
            "plain (no AUTOINCREMENT) has no sequence"
        );
        assert_eq!(before[2].feeds, ["\"x\"\"; DROP TABLE y; --\".id"]);

        // Dry run: reports, changes nothing.
        let dry = reset(
            &mut conn,
            &ResetOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(dry.changes.len(), 3);
        assert_eq!(
            dry.statements[1],
            "UPDATE sqlite_sequence SET seq = 3 WHERE name = 'it''s'; \
             INSERT INTO sqlite_sequence (name, seq) SELECT 'it''s', 3 \
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'it''s');"
        );
        assert_eq!(seq_rows(&mut conn).len(), 2);

        // never_rewind keeps `empty` where it is.
        let report = reset(
            &mut conn,
            &ResetOptions {
                never_rewind: true,
                ..Default::default()
            },
        )
        .unwrap();
        let moves: Vec<(&str, i128, i128)> = report
            .changes
            .iter()
            .map(|c| (c.sequence.as_str(), c.from, c.to))
            .collect();
        assert_eq!(
            moves,
            [("it's", 1, 4), ("\"x\"\"; DROP TABLE y; --\"", 3, 43)]
        );
        assert_eq!(
            seq_rows(&mut conn),
            [
                ("empty".to_string(), 9),
                ("it's".to_string(), 3),
                (HOSTILE.to_string(), 42)
            ]
        );

        // A full reset brings `empty` back to START.
        let report = reset(&mut conn, &Default::default()).unwrap();
        assert_eq!(report.changes.len(), 1);
        assert_eq!((report.changes[0].from, report.changes[0].to), (10, 1));
        assert!(inspect(&mut conn, &[])
            .unwrap()
            .iter()
            .all(|s| s.status == Status::Ok));
        assert!(reset(&mut conn, &Default::default())
            .unwrap()
            .changes
            .is_empty());

        // SQLite continues from the realigned value; the hostile name stayed a name.
        conn.execute(
            r#"INSERT INTO "x""; DROP TABLE y; --" (v) VALUES ('c');
               INSERT INTO "it's" DEFAULT VALUES; INSERT INTO empty DEFAULT VALUES;
               INSERT INTO y VALUES (1);"#,
        )
        .unwrap();
        assert_eq!(
            seq_rows(&mut conn),
            [
                ("empty".to_string(), 1),
                ("it's".to_string(), 4),
                (HOSTILE.to_string(), 43)
            ]
        );
    }

    #[test]
    fn selecting_tables_and_the_demo_schema() {
        let (_dir, mut conn) = temp_db(include_str!(
            "../../fixtures/migrations/sqlite/2024-01-01-000000_create_demo_schema/up.sql"
        ));
        conn.execute(
            "INSERT INTO users (id, email, full_name) VALUES (7, 'a@x', 'A');
             INSERT INTO clients (id, name, account_manager_id) VALUES (3, 'C', 7);
             DELETE FROM sqlite_sequence;",
        )
        .unwrap();
        let report = reset(
            &mut conn,
            &ResetOptions {
                tables: vec!["users".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(report.before.len(), 1);
        assert_eq!(report.changes[0].sequence, "users");
        assert_eq!(seq_rows(&mut conn), [("users".to_string(), 7)]);
        let all = reset(&mut conn, &Default::default()).unwrap();
        assert_eq!(all.before.len(), 5);
        assert_eq!(all.changes.len(), 1, "only clients was behind");
        assert_eq!(
            seq_rows(&mut conn),
            [("clients".to_string(), 3), ("users".to_string(), 7)]
        );
    }

    #[test]
    fn exhausted_at_the_rowid_limit() {
        let (_dir, mut conn) = temp_db(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT);
             INSERT INTO t (id) VALUES (9223372036854775807);",
        );
        let states = inspect(&mut conn, &[]).unwrap();
        assert_eq!(states[0].status, Status::Exhausted);
        assert_eq!(states[0].next_value, i64::MAX as i128 + 1);
        let err = reset(&mut conn, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("sequence t"), "{err}");
    }

    #[test]
    fn extremes_round_outward_and_ignore_text() {
        assert_eq!(parse_extreme(Some("42"), true), Some(42));
        assert_eq!(parse_extreme(Some("-7"), false), Some(-7));
        assert_eq!(parse_extreme(Some("4.5"), true), Some(5));
        assert_eq!(parse_extreme(Some("4.5"), false), Some(4));
        assert_eq!(
            parse_extreme(Some("1.0e+20"), true),
            Some(100_000_000_000_000_000_000)
        );
        assert_eq!(parse_extreme(Some("abc"), true), None);
        assert_eq!(parse_extreme(None, true), None);
    }

    #[test]
    fn many_tables_stay_under_the_compound_select_limit() {
        let ddl: String = (0..450)
            .map(|i| format!("CREATE TABLE t{i} (id INTEGER PRIMARY KEY AUTOINCREMENT);"))
            .collect();
        let (_dir, mut conn) = temp_db(&ddl);
        conn.execute("INSERT INTO t449 (id) VALUES (5); DELETE FROM sqlite_sequence;")
            .unwrap();
        let report = reset(&mut conn, &Default::default()).unwrap();
        assert_eq!(report.before.len(), 450);
        let moves: Vec<(&str, i128)> = report
            .changes
            .iter()
            .map(|c| (c.sequence.as_str(), c.to))
            .collect();
        assert_eq!(moves, [("t449", 6)]);
    }
}
