//! PostgreSQL side of realignment: locking, reading each sequence's value together with the
//! extreme of the columns it feeds (UNION ALLs of [`CHUNK`] branches, one per sequence), and
//! moving sequences with `setval`.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::backend::Connection;
use crate::catalog::{quote_ident, quote_literal, Catalog, QualifiedName, Sequence};
use crate::error::Result;

use super::FedColumn;

pub(super) fn lock_sql(tables: &[&QualifiedName]) -> String {
    let list: Vec<String> = tables.iter().map(|t| t.sql()).collect();
    format!(
        "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE;",
        list.join(", ")
    )
}

/// Branches per UNION ALL query (one branch per sequence). PostgreSQL's planning time grows
/// faster than the number of branches: for 1,000 sequences one query spends about 0.6 s in the
/// planner. Chunks of 10, 20 and 50 measured within noise of each other end to end (the round
/// trips cost about what the smaller plans save); 50 keeps the round trips few. The chunks run
/// in the caller's transaction (a snapshot for `inspect`, under the table locks for `realign`),
/// so they read one consistent state.
const CHUNK: usize = 50;

/// Runs `SELECT json_agg(x) FROM (part UNION ALL part ...) x` over `parts`, [`CHUNK`] at a time,
/// and concatenates the rows.
fn union_all<T: DeserializeOwned>(conn: &mut Connection, parts: &[String]) -> Result<Vec<T>> {
    let mut rows = Vec::with_capacity(parts.len());
    for chunk in parts.chunks(CHUNK) {
        let sql = format!(
            "SELECT json_agg(x)::text AS j FROM ({}) x",
            chunk.join(" UNION ALL ")
        );
        let part: Option<Vec<T>> = conn.query_json(&sql)?;
        rows.extend(part.unwrap_or_default());
    }
    Ok(rows)
}

#[derive(Deserialize)]
struct Row {
    i: usize,
    last: String,
    called: bool,
    /// MAX (ascending sequence) or MIN (descending) over its columns; None without rows.
    e: Option<String>,
}

/// The SQL giving the extreme of one column in the sequence's direction: MAX for an ascending
/// sequence, MIN for a descending one (the other one is never used, and each aggregate costs a
/// plan of its own). Integer columns skip `ceil`/`floor`, which would go through float8 and lose
/// precision above 2^53.
fn extreme_sql(col: &FedColumn, ascending: bool) -> String {
    let (agg, round) = if ascending {
        ("max", "ceil")
    } else {
        ("min", "floor")
    };
    let sub = format!(
        "(SELECT {agg}({}) FROM {})",
        quote_ident(col.column),
        col.table.sql()
    );
    if col.integer {
        format!("{sub}::numeric")
    } else {
        format!("{round}({sub})::numeric(1000,0)")
    }
}

/// For each sequence: (last value returned by nextval, next value nextval will return) and the
/// extreme of the columns it feeds (MAX when ascending, MIN when descending, across all its
/// `columns`; None when they hold no rows). One UNION ALL branch per sequence reads both, which
/// halves the branches the planner sees compared with reading them apart.
#[allow(clippy::type_complexity)]
pub(super) fn read(
    conn: &mut Connection,
    seqs: &[&Sequence],
    columns: &[FedColumn],
) -> Result<(Vec<(Option<i128>, i128)>, Vec<Option<i128>>)> {
    let mut terms: Vec<Vec<String>> = vec![Vec::new(); seqs.len()];
    for col in columns {
        terms[col.seq].push(extreme_sql(col, seqs[col.seq].increment > 0));
    }
    let parts: Vec<String> = seqs
        .iter()
        .zip(&terms)
        .enumerate()
        .map(|(i, (s, terms))| {
            let e = match terms.len() {
                0 => "NULL".to_string(),
                1 => terms[0].clone(),
                // greatest/least skip NULLs: a sequence's empty tables do not hide the others.
                _ if s.increment > 0 => format!("greatest({})", terms.join(", ")),
                _ => format!("least({})", terms.join(", ")),
            };
            format!(
                "SELECT {i} AS i, last_value::text AS last, is_called AS called, \
                 ({e})::text AS e FROM {}",
                s.name.sql()
            )
        })
        .collect();
    let rows: Vec<Row> = union_all(conn, &parts)?;
    let mut current = vec![(None, 0); seqs.len()];
    let mut extremes = vec![None; seqs.len()];
    for r in rows {
        let last: i128 = r.last.parse().unwrap_or_default();
        current[r.i] = if r.called {
            (Some(last), last + seqs[r.i].increment)
        } else {
            (None, last)
        };
        extremes[r.i] = r.e.and_then(|s| s.parse::<i128>().ok());
    }
    Ok((current, extremes))
}

/// The setval arguments giving `target` as the next value. `setval(s, target - increment, true)`
/// keeps `last_value` meaningful in pg_sequences (what users check); when that value would fall
/// outside the bounds (an empty table at START = MINVALUE), `setval(s, target, false)` instead.
pub(super) fn setval_args(seq: &Sequence, target: i128) -> (i128, bool) {
    let prev = target - seq.increment;
    if prev >= seq.min && prev <= seq.max {
        (prev, true)
    } else {
        (target, false)
    }
}

/// Moves the sequences in one statement.
pub(super) fn apply(
    conn: &mut Connection,
    catalog: &Catalog,
    moves: &[(usize, i128)],
) -> Result<()> {
    let values: Vec<String> = moves
        .iter()
        .map(|&(s, target)| {
            let seq = &catalog.sequences[s];
            let (v, called) = setval_args(seq, target);
            format!(
                "({}::regclass, {v}::int8, {called})",
                quote_literal(&seq.name.sql())
            )
        })
        .collect();
    conn.execute(&format!(
        "SELECT setval(v.s, v.n, v.c) FROM (VALUES {}) AS v(s, n, c)",
        values.join(", ")
    ))
}
