//! PostgreSQL side of realignment: locking, reading sequence values and column extremes (UNION
//! ALLs of [`CHUNK`] branches), and moving sequences with `setval`.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::backend::Connection;
use crate::catalog::{quote_ident, quote_literal, Catalog, QualifiedName, Sequence};
use crate::error::Result;

pub(super) fn lock_sql(tables: &[&QualifiedName]) -> String {
    let list: Vec<String> = tables.iter().map(|t| t.sql()).collect();
    format!(
        "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE;",
        list.join(", ")
    )
}

/// Branches per UNION ALL query. PostgreSQL's planning time grows with the square of the number
/// of branches: for 1,000 sequences one query spends about 0.6 s in the planner, chunks of 50
/// about 0.05 s in all. The chunks run in the caller's transaction (a snapshot for `inspect`,
/// under the table locks for `realign`), so they read one consistent state.
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
struct Current {
    i: usize,
    last: String,
    called: bool,
}

/// (last value returned by nextval, next value nextval will return) of each sequence.
pub(super) fn current_values(
    conn: &mut Connection,
    seqs: &[&Sequence],
) -> Result<Vec<(Option<i128>, i128)>> {
    let parts: Vec<String> = seqs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "SELECT {i} AS i, last_value::text AS last, is_called AS called FROM {}",
                s.name.sql()
            )
        })
        .collect();
    let rows: Vec<Current> = union_all(conn, &parts)?;
    let mut out = vec![(None, 0); seqs.len()];
    for r in rows {
        let last: i128 = r.last.parse().unwrap_or_default();
        out[r.i] = if r.called {
            (Some(last), last + seqs[r.i].increment)
        } else {
            (None, last)
        };
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Extreme {
    i: usize,
    max: Option<String>,
    min: Option<String>,
}

/// (MAX, MIN) over the columns fed by each sequence; `columns` holds (sequence position, table,
/// column).
pub(super) fn extremes(
    conn: &mut Connection,
    count: usize,
    columns: &[(usize, &QualifiedName, &str)],
) -> Result<Vec<(Option<i128>, Option<i128>)>> {
    let mut out = vec![(None, None); count];
    if columns.is_empty() {
        return Ok(out);
    }
    // max/min of numeric columns may have a fraction; the sequence cares about the integer part
    // that would collide, so round outward.
    let parts: Vec<String> = columns
        .iter()
        .map(|(i, t, c)| {
            let c = quote_ident(c);
            format!(
                "SELECT {i} AS i, ceil(max({c}))::numeric(1000,0)::text AS max, \
                 floor(min({c}))::numeric(1000,0)::text AS min FROM {}",
                t.sql()
            )
        })
        .collect();
    let rows: Vec<Extreme> = union_all(conn, &parts)?;
    let parse = |v: Option<String>| v.and_then(|s| s.parse::<i128>().ok());
    for r in rows {
        let (max, min) = (parse(r.max), parse(r.min));
        super::merge_extremes(&mut out[r.i], max, min);
    }
    Ok(out)
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
