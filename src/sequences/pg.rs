//! PostgreSQL side of realignment: locking, reading each sequence's value together with the
//! extreme of the columns it feeds (one small query per sequence, run by a server-side loop), and
//! moving sequences with `setval`.
//!
//! With many sequences and a second connection allowed (`reset-sequences` and `sequences` on
//! their own, never inside a load, whose rows only its own transaction sees), a second
//! connection, opened while the catalog is read, shares the reads on the same snapshot: each read
//! costs the server about 0.2 ms, mostly opening the table, its index and the sequence for the
//! first time in that session, and that work splits across server processes.

use crate::backend::{Connection, DatabaseUrl};
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

/// Puts the read queries (a JSON array of SQL texts, bound, never spliced) in a setting local
/// to the transaction, and says whether this role may run the PL/pgSQL loop that runs them:
/// `[length of the setting, may loop]` (both in the select list, so both are evaluated).
const SET_QUERIES_SQL: &str = "SELECT json_build_array(\
    length(set_config('dbfixtures.realign_queries', $1, true)), \
    EXISTS (SELECT 1 FROM pg_language l \
             WHERE l.lanname = 'plpgsql' AND has_language_privilege(l.oid, 'USAGE')))::text AS j";

/// Runs each query of `dbfixtures.realign_queries` (each returns one JSON value) and leaves
/// their answers, in order, as one JSON array in `dbfixtures.realign_answers`: one round trip
/// for any number of sequences. Each query is planned on its own, which is linear in their
/// number; one UNION ALL of 1,000 branches spends about 0.6 s in the planner, and chunks of 50
/// still cost about twice the planning of the separate queries. An anonymous block runs in the
/// caller's transaction (the read-only snapshot of `inspect`, or under the table locks of
/// `realign`), creates nothing, and needs only USAGE on plpgsql (granted to PUBLIC by default).
const READ_LOOP_SQL: &str = "DO $dbfixtures$
DECLARE
    q text;
    answer json;
    answers json[] := '{}';
BEGIN
    FOR q IN SELECT json_array_elements_text(current_setting('dbfixtures.realign_queries')::json)
    LOOP
        EXECUTE q INTO answer;
        answers := answers || answer;
    END LOOP;
    PERFORM set_config('dbfixtures.realign_answers', array_to_json(answers)::text, true);
END
$dbfixtures$";

const ANSWERS_SQL: &str = "SELECT current_setting('dbfixtures.realign_answers') AS j";

/// Branches per UNION ALL query when PL/pgSQL may not be used: PostgreSQL's planning time grows
/// faster than the number of branches, and 10, 20 and 50 measured within noise of each other.
const CHUNK: usize = 50;

/// The answers of `queries` (each `SELECT <one json value> AS r FROM ...`), in order. They run
/// in the caller's transaction, so they read one consistent state.
fn run_all(conn: &mut Connection, queries: &[String]) -> Result<Vec<serde_json::Value>> {
    let list =
        serde_json::to_string(queries).map_err(|e| crate::error::Error::Invalid(e.to_string()))?;
    let (_, may_loop): (u64, bool) = conn.query_json_bound(SET_QUERIES_SQL, &list)?;
    if may_loop {
        conn.execute(READ_LOOP_SQL)?;
        let answers: Option<Vec<serde_json::Value>> = conn.query_json(ANSWERS_SQL)?;
        return Ok(answers.unwrap_or_default());
    }
    let mut answers = Vec::with_capacity(queries.len());
    for chunk in queries.chunks(CHUNK) {
        let sql = format!(
            "SELECT json_agg(x.r)::text AS j FROM ({}) x",
            chunk.join(" UNION ALL ")
        );
        let part: Option<Vec<serde_json::Value>> = conn.query_json(&sql)?;
        answers.extend(part.unwrap_or_default());
    }
    Ok(answers)
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

/// Sequences from which a second connection, when allowed, reads part of them: below this the
/// connection costs about what it saves (measured: 1,000 reads take 170-270 ms on one).
const SPLIT_MIN: usize = 200;

/// How long the second connection waits for any lock before leaving its part to the first.
const HELPER_LOCK_TIMEOUT: &str = "200ms";

/// The smallest share of the queries one connection takes at a time (see [`shares`]): each share
/// costs three round trips and compiling the loop once more, about 1 ms.
const MIN_SHARE: usize = 32;

/// A second connection to the database for [`read`] to split the reads with: opened in the
/// background while the catalog is read (connecting costs about 10 ms, half of it the server
/// starting a process), or only when the reads start if few of the sequences may be read.
/// Dropped unused, it closes once connected.
pub(super) enum Helper {
    Connecting(std::thread::JoinHandle<Result<Connection>>),
    Later(DatabaseUrl),
}

impl Helper {
    /// A helper for `url` (the database `conn` is on) when `conn` is in a transaction of the
    /// caller's own making (only such a transaction can share its snapshot) and the database
    /// holds enough sequences for a split to pay. It starts connecting at once when `all` of
    /// them are to be read (no table filter). Connecting only after `conn` leaves a role limited
    /// to one connection its first one.
    pub(super) fn start(
        conn: &mut Connection,
        url: &DatabaseUrl,
        all: bool,
    ) -> Result<Option<Helper>> {
        if conn.transaction_depth() != 1 {
            return Ok(None);
        }
        let many: bool = conn.query_json(&format!(
            "SELECT to_json(count(*) >= {SPLIT_MIN})::text AS j FROM pg_sequence"
        ))?;
        let url = url.clone();
        Ok(many.then(|| match all {
            true => Helper::Connecting(std::thread::spawn(move || Connection::open(&url, false))),
            false => Helper::Later(url),
        }))
    }

    fn connection(self) -> Result<Connection> {
        match self {
            Helper::Connecting(thread) => thread.join().unwrap_or_else(|_| {
                Err(crate::error::Error::db(
                    "reading sequences",
                    "the second connection's thread panicked",
                ))
            }),
            Helper::Later(url) => Connection::open(&url, false),
        }
    }
}

/// The shares of `n` queries in the order connections take them: each a quarter of what is
/// left (at least [`MIN_SHARE`]), so the early shares are long and the last ones short. The two
/// connections read at different speeds (the first has opened every table already, to lock it),
/// and whichever finishes first takes the next share, so they finish within one short share of
/// each other.
fn shares(n: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < n {
        let len = ((n - at) / 4).max(MIN_SHARE).min(n - at);
        out.push(at..at + len);
        at += len;
    }
    out
}

/// [`run_all`], shared with a second connection (`helper`, to the database `conn` is on) whose
/// transaction imports `conn`'s snapshot, so both read the same committed state. Each takes the
/// next share of the queries when done with its last (see [`shares`]). The caller holds its
/// locks until both are done (the helper's reads do not conflict with them). Whatever the helper
/// could not read (it could not connect, a lock, an error) `conn` reads. Inside a caller's
/// transaction (a savepoint, where no snapshot can be exported) or one that has written
/// anything, the helper could not see those writes: `conn` reads everything.
fn run_split(
    conn: &mut Connection,
    helper: Helper,
    queries: &[String],
) -> Result<Vec<serde_json::Value>> {
    if conn.transaction_depth() != 1 {
        return run_all(conn, queries);
    }
    let (snapshot, wrote): (String, bool) = conn.query_json(
        "SELECT json_build_array(pg_export_snapshot(), \
                txid_current_if_assigned() IS NOT NULL)::text AS j",
    )?;
    if wrote {
        return run_all(conn, queries);
    }
    let shares = shares(queries.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    // The next share nobody has taken: (its number, its queries).
    let take = || {
        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shares.get(k).map(|r| (k, &queries[r.clone()]))
    };
    std::thread::scope(|scope| {
        let theirs = scope.spawn(|| -> (Vec<usize>, Vec<serde_json::Value>) {
            let (mut done, mut answers) = (Vec::new(), Vec::new());
            let Ok(mut c) = helper.connection() else {
                return (done, answers);
            };
            // A lock the helper cannot get at once may be one it would never get: behind a
            // DDL statement (a migration's ALTER TABLE) queued after `conn`'s table locks, it
            // would wait for `conn`, which waits for it, a cycle the server cannot see. It gives
            // up instead (as pg_dump's workers do) and `conn`, which holds those locks, reads.
            let begin = c.execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}; \
                 SET LOCAL lock_timeout = '{HELPER_LOCK_TIMEOUT}'",
                quote_literal(&snapshot)
            ));
            if begin.is_ok() {
                while let Some((k, part)) = take() {
                    match run_all(&mut c, part) {
                        Ok(a) => {
                            done.push(k);
                            answers.extend(a);
                        }
                        Err(_) => break,
                    }
                }
            }
            let _ = c.execute("COMMIT");
            (done, answers)
        });
        let mut answers = Vec::with_capacity(queries.len());
        let mut done = Vec::new();
        while let Some((k, part)) = take() {
            match run_all(conn, part) {
                Ok(a) => answers.extend(a),
                Err(e) => {
                    // Stop the helper taking more, wait for it (a panic of its thread stays
                    // its own), then report.
                    next.store(shares.len(), std::sync::atomic::Ordering::Relaxed);
                    let _ = theirs.join();
                    return Err(e);
                }
            }
            done.push(k);
        }
        let (theirs, rest) = theirs.join().unwrap_or_default();
        answers.extend(rest);
        done.extend(theirs);
        for (k, r) in shares.iter().enumerate() {
            if !done.contains(&k) {
                answers.extend(run_all(conn, &queries[r.clone()])?);
            }
        }
        Ok(answers)
    })
}

/// For each sequence: (last value returned by nextval, next value nextval will return) and the
/// extreme of the columns it feeds (MAX when ascending, MIN when descending, across all its
/// `columns`; None when they hold no rows). One query per sequence reads both; with `helper`
/// and many sequences, a second connection runs part of them.
#[allow(clippy::type_complexity)]
pub(super) fn read(
    conn: &mut Connection,
    seqs: &[&Sequence],
    columns: &[FedColumn],
    helper: Option<Helper>,
) -> Result<(Vec<(Option<i128>, i128)>, Vec<Option<i128>>)> {
    let mut terms: Vec<Vec<String>> = vec![Vec::new(); seqs.len()];
    for col in columns {
        terms[col.seq].push(extreme_sql(col, seqs[col.seq].increment > 0));
    }
    let queries: Vec<String> = seqs
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
                "SELECT json_build_array({i}, last_value::text, is_called, ({e})::text) AS r \
                 FROM {}",
                s.name.sql()
            )
        })
        .collect();
    let mut current = vec![(None, 0); seqs.len()];
    let mut extremes = vec![None; seqs.len()];
    let answers = match helper {
        Some(helper) if queries.len() >= SPLIT_MIN => run_split(conn, helper, &queries)?,
        _ => run_all(conn, &queries)?,
    };
    let mut seen = 0;
    for answer in answers {
        seen += 1;
        let (i, last, called, e): (usize, String, bool, Option<String>) =
            serde_json::from_value(answer).map_err(|e| {
                crate::error::Error::db("reading sequences", format!("unexpected answer: {e}"))
            })?;
        let last: i128 = last.parse().unwrap_or_default();
        current[i] = if called {
            (Some(last), last + seqs[i].increment)
        } else {
            (None, last)
        };
        extremes[i] = e.and_then(|s| s.parse::<i128>().ok());
    }
    if seen != seqs.len() {
        return Err(crate::error::Error::db(
            "reading sequences",
            format!("{seen} answers for {} sequences", seqs.len()),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_query_once_in_order_shrinking_to_the_minimum() {
        for n in [0, 1, MIN_SHARE - 1, MIN_SHARE, SPLIT_MIN, 1000, 12_345] {
            let shares = shares(n);
            let mut at = 0;
            for (k, r) in shares.iter().enumerate() {
                assert_eq!(r.start, at, "{n}: share {k} follows the last");
                assert!(!r.is_empty(), "{n}: share {k} is empty");
                // Only the last share may be shorter than the minimum (what is left).
                assert!(r.len() >= MIN_SHARE || r.end == n, "{n}: share {k} {r:?}");
                if k > 0 {
                    assert!(r.len() <= shares[k - 1].len(), "{n}: shares grow at {k}");
                }
                at = r.end;
            }
            assert_eq!(at, n);
        }
        // 1,000 queries: a quarter of what is left each time, a handful of shares.
        let lens: Vec<usize> = shares(1000).iter().map(|r| r.len()).collect();
        assert_eq!(lens[..3], [250, 187, 140]);
        assert!(lens.len() <= 16, "{lens:?}");
    }
}
