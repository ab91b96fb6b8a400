//! PostgreSQL `COPY ... TO STDOUT` / `COPY ... FROM STDIN` for SQL text built at run time.
//!
//! diesel 2.3 only runs COPY through [`diesel::copy_to`] / [`diesel::copy_from`], which take a
//! [`CopyTarget`]: a trait whose (doc-hidden) `walk_target` is a *static* function and whose
//! `Table` must be a `table!` type. Our tables are discovered at run time, so this module declares
//! one private dummy `table!` and one private zero-sized [`CopyTarget`] (`RuntimeTarget`) whose
//! `walk_target` pushes SQL text read from a thread-local. [`copy_out`] / [`copy_in`] install that
//! text (through an RAII guard that restores the previous value, so nesting and early returns,
//! errors and panics included, leave it as it was) around the diesel call that renders and runs
//! the statement. The text never outlives that call in any cache: diesel's COPY nodes call
//! `AstPass::unsafe_to_cache_prepared()` first thing in `walk_ast` (`CopyToCommand` and
//! `InternalCopyFromQuery`, diesel 2.3.14 `src/pg/query_builder/copy/copy_{to,from}.rs`), and
//! `StatementCache::cached_statement_non_generic` then builds the SQL anew and runs it as an
//! unnamed statement (`PrepareForCache::No`), so a stale text can never be reused. This relies on
//! diesel internals, hence the `~2.3` pin in `Cargo.toml`.
//!
//! Invariants:
//! - The caller supplies `source` / `target` already quoted (`"schema"."table" ("a", "b")` or a
//!   parenthesised `(SELECT ...)`); it is spliced into the statement verbatim.
//! - Both functions return with the connection idle and in step with the server, whatever
//!   happened: success, server error, an error from the caller's closure, or a panic in it (the
//!   panic is resumed once the connection is clean). Three libpq/diesel traps stand in the way:
//!
//! Trap 1 — diesel never collects the result of a COPY TO. `load_raw` hands out a reader over
//! `PQgetCopyData`; once it reports the end of the data, libpq still holds the COPY's final
//! `PGresult`. The next statement sent with `PQsendQueryParams` then fails with "another command
//! is already in progress" (`execute` fetches the pending result while failing, so the one after
//! works; `load` does not, and keeps failing). Worse, a reader dropped *before* the end of the data
//! leaves libpq in COPY OUT state, where diesel's next `execute` spins forever (`PQgetResult`
//! keeps answering `PGRES_COPY_OUT`). So [`copy_out`] always reads the stream to its end
//! (discarding the rows after an error or panic in `on_row`: diesel cannot cancel a query), then
//! sends one statement through `execute` on purpose while the result is pending: libpq refuses to
//! send it (`UnableToSendCommand`) and diesel's `execute_returning_count` then calls `PQgetResult`
//! until the connection is idle.
//!
//! Trap 2 — a server error in the middle of a text COPY TO looks like a normal end of data
//! (`PQgetCopyData` returns -1 on the `ErrorResponse` as on `CopyDone`). The error is in the final
//! `PGresult` that trap 1 fetches: diesel turns it into a `DatabaseError` that replaces the
//! "unable to send" one. So `UnableToSendCommand` from that statement means the COPY succeeded,
//! and any other error *is* the COPY's error ([`CopyError::Db`]). `batch_execute` (`PQexec`) would
//! clear trap 1 as well, but libpq silently discards the pending result there, error included.
//! Side effect: diesel's transaction manager sees that statement fail. Inside
//! `Connection::transaction` / `build_transaction().run(..)` that changes nothing; inside a raw
//! `BEGIN` diesel does not know about, it marks its transaction manager broken until the raw
//! `COMMIT` / `ROLLBACK`, as after any failed statement there.
//!
//! Trap 3 — a COPY FROM that the server rejects *before reading any data* (FREEZE refused, a view
//! or partitioned table with FREEZE, a failing `BEFORE ... FOR EACH STATEMENT` trigger) leaves a
//! second `ReadyForQuery` on its way: diesel sends COPY through the extended protocol, whose
//! `Sync` is still unread when the error makes the server skip to the next `Sync`, and libpq sends
//! another after `CopyDone`/`CopyFail` (rust-postgres issue 789 describes the protocol flaw). If
//! the next statement picks it up, diesel panics ("Is never none") and then every answer goes to
//! the statement after the one that asked. So after any failed COPY FROM, [`copy_in`] exchanges
//! probes with the server until one gets its own answer (`resync_after_failed_copy_in`).
//!
//! diesel's `from_raw_data` wants an `Fn` callback and an error type implementing
//! `std::error::Error`: [`copy_in`] passes its `FnOnce` through a `RefCell<Option<_>>` and brings
//! the caller's error (any type) back through another cell.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead, BufWriter, Write};
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::{CopyFormat, CopyTarget, Pg, PgConnection};
use diesel::prelude::{ExecuteCopyFromDsl, RunQueryDsl};
use diesel::query_builder::AstPass;
use diesel::result::{DatabaseErrorKind, Error as DieselError, QueryResult};

/// Size of the buffer between the caller's writer and diesel's COPY sink, which calls
/// `PQputCopyData` once per `write`.
const COPY_IN_BUFFER: usize = 256 * 1024;

/// Probes sent by `resync_after_failed_copy_in` before giving up (waits between them: 1 ms
/// doubling up to 500 ms, about 3 s in all).
const RESYNC_ATTEMPTS: u32 = 14;

/// The statement [`copy_out`] sends to collect the final result of its COPY (see trap 1 in the
/// module docs). libpq refuses to send it while that result is pending, so it normally never runs;
/// the comment shows up in diesel's instrumentation/logs next to the expected refusal.
const FETCH_COPY_RESULT_SQL: &str = "SELECT 1 /* dbfixtures pg_copy: collect COPY TO result */";

/// Why a COPY failed.
pub enum CopyError<E> {
    /// The server rejected the statement or failed during the COPY (message from the server).
    Db(diesel::result::Error),
    /// The caller's closure (`on_row` for [`copy_out`], `write` for [`copy_in`]) returned an error;
    /// the COPY was abandoned (copy_out) or aborted so that no row lands (copy_in).
    Source(E),
    /// Reading or writing the COPY stream failed outside the caller's closure.
    Io(std::io::Error),
}

impl<E: fmt::Debug> fmt::Debug for CopyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Db(e) => f.debug_tuple("Db").field(e).finish(),
            CopyError::Source(e) => f.debug_tuple("Source").field(e).finish(),
            CopyError::Io(e) => f.debug_tuple("Io").field(e).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CopyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Db(DieselError::DatabaseError(_, info)) => {
                // diesel's own Display shows the primary message only.
                write!(f, "COPY failed: {}", info.message())?;
                if let Some(column) = info.column_name() {
                    write!(f, " (column {column})")?;
                }
                if let Some(details) = info.details() {
                    write!(f, "; detail: {details}")?;
                }
                if let Some(hint) = info.hint() {
                    write!(f, "; hint: {hint}")?;
                }
                Ok(())
            }
            CopyError::Db(e) => write!(f, "COPY failed: {e}"),
            CopyError::Source(e) => e.fmt(f),
            CopyError::Io(e) => write!(f, "COPY stream I/O error: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for CopyError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CopyError::Db(e) => Some(e),
            CopyError::Io(e) => Some(e),
            CopyError::Source(_) => None,
        }
    }
}

/// Lets a `CopyError` be the error type of `Connection::transaction`, which needs
/// `From<diesel::result::Error>`.
impl<E> From<diesel::result::Error> for CopyError<E> {
    fn from(e: diesel::result::Error) -> Self {
        CopyError::Db(e)
    }
}

/// Runs `COPY <source> TO STDOUT` in text format, where `source` is either a quoted table reference
/// with column list or a parenthesised query `(SELECT ...)`, and calls
/// `on_row(line_without_trailing_newline)` once per row (each row's bytes). Returns the number of
/// rows seen.
///
/// A server error at any point, mid-stream included, is returned as [`CopyError::Db`]; rows
/// already handed to `on_row` must then be discarded by the caller. When `on_row` fails, the rest
/// of the stream is still read and dropped (diesel offers no way to cancel the query), so the cost
/// is that of the whole COPY; the connection is left usable either way.
pub fn copy_out<E>(
    conn: &mut PgConnection,
    source: &str,
    mut on_row: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, CopyError<E>> {
    copy_out_with(conn, source, CopyFormat::Text, |reader, rows| {
        read_rows(reader, &mut on_row, rows)
    })
}

/// Runs `COPY <source> TO STDOUT (FORMAT binary)` and calls `on_row` once per row with its
/// fields (see [`BinaryRow`]). Same contract as [`copy_out`]: a server error at any point is
/// [`CopyError::Db`], a failing `on_row` abandons the COPY (the rest of the stream is read and
/// dropped), and the connection is left usable. A stream that does not end with the binary
/// format's trailer is an error.
pub fn copy_out_binary<E>(
    conn: &mut PgConnection,
    source: &str,
    mut on_row: impl FnMut(&BinaryRow<'_>) -> Result<(), E>,
) -> Result<u64, CopyError<E>> {
    copy_out_with(conn, source, CopyFormat::Binary, |reader, rows| {
        read_binary_rows(reader, &mut on_row, rows)
    })
}

/// The body of [`copy_out`] and [`copy_out_binary`]: starts the COPY in `format`, lets `read`
/// consume the stream, and brings the connection back to idle whatever happened.
fn copy_out_with<E>(
    conn: &mut PgConnection,
    source: &str,
    format: CopyFormat,
    read: impl FnOnce(&mut dyn BufRead, &mut u64) -> ReadEnd<E>,
) -> Result<u64, CopyError<E>> {
    let mut rows = 0u64;
    let (outcome, at_end) = {
        let mut reader = {
            let _sql = SqlGuard::install(source);
            diesel::copy_to(RuntimeTarget)
                .with_format(format)
                .load_raw(conn)
                // A failure to start the COPY went through diesel's normal error path, which
                // drains the connection: nothing to clean up.
                .map_err(CopyError::Db)?
        };
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| read(&mut reader, &mut rows)));
        let at_end = match &outcome {
            Ok(ReadEnd::Eof { .. }) => true,
            // Reading fails only when the connection is lost or libpq is not in COPY OUT state.
            Ok(ReadEnd::Io(_)) => false,
            // Trap 1: never leave libpq in COPY OUT state.
            Ok(ReadEnd::Source(_)) | Ok(ReadEnd::Malformed(_)) | Err(_) => {
                discard_rest(&mut reader)
            }
        };
        (outcome, at_end)
    };
    let fetched = if at_end {
        fetch_copy_out_result(conn)
    } else {
        // State unknown (a lost connection, or a `source` that turned the statement into
        // something else than COPY TO STDOUT): `PQexec` first ends any COPY state and discards
        // pending results, where diesel's `execute` could spin forever. Its own answer is
        // irrelevant.
        let _ = conn.batch_execute("");
        Ok(())
    };
    match outcome {
        Err(payload) => panic::resume_unwind(payload),
        Ok(ReadEnd::Source(e)) => Err(CopyError::Source(e)),
        Ok(ReadEnd::Io(e)) => Err(CopyError::Io(e)),
        Ok(ReadEnd::Malformed(e)) => {
            // A server error cuts the stream anywhere: it explains the damage better.
            fetched.map_err(CopyError::Db)?;
            Err(CopyError::Io(e))
        }
        Ok(ReadEnd::Eof { dangling }) => {
            // The server's error, if any, comes first: a failed COPY also ends early.
            fetched.map_err(CopyError::Db)?;
            if dangling {
                return Err(CopyError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "COPY TO stream ended in the middle of a row",
                )));
            }
            Ok(rows)
        }
    }
}

/// Runs `COPY <target> FROM STDIN` (text format; `WITH (FREEZE)` when freeze) where target is
/// `"schema"."table" ("a", "b")`; `write` gets a `&mut dyn std::io::Write` (buffered: diesel's
/// sink is wrapped in a 256 KiB `BufWriter` so `PQputCopyData` isn't called per row) and writes
/// COPY text rows. If `write` returns Err, the COPY is aborted (no row lands) and the error is
/// returned as [`CopyError::Source`]. Returns rows copied as reported by the server.
///
/// A server error (bad value, constraint, ...) is only reported once all data has been sent, as
/// [`CopyError::Db`]; diesel exposes the server's message, detail and hint but not its `CONTEXT`
/// ("COPY t, line 3, column a"). Inside a transaction, any failure leaves it aborted, as usual.
/// After a failure the connection is brought back in step with the server (trap 3 in the module
/// docs), which costs a round trip or two; should that fail (connection lost), the error is a
/// [`CopyError::Db`] of kind `ClosedConnection`: discard the connection.
pub fn copy_in<E>(
    conn: &mut PgConnection,
    target: &str,
    freeze: bool,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<(), E>,
) -> Result<u64, CopyError<E>> {
    // diesel wants an `Fn` callback (it calls it once): hand the `FnOnce` over through a cell, and
    // bring the caller's error (which need not implement `std::error::Error`) back through another.
    let write = RefCell::new(Some(write));
    let failure: RefCell<Option<WriteFailure<E>>> = RefCell::new(None);
    let callback = |sink: &mut dyn Write| -> Result<(), CopyInAbort> {
        let Some(write) = write.borrow_mut().take() else {
            return Err(CopyInAbort::CalledTwice);
        };
        let mut buffered = BufWriter::with_capacity(COPY_IN_BUFFER, sink);
        let failed = match panic::catch_unwind(AssertUnwindSafe(|| write(&mut buffered))) {
            Ok(Ok(())) => match buffered.flush() {
                Ok(()) => return Ok(()),
                Err(e) => WriteFailure::Io(e),
            },
            Ok(Err(e)) => WriteFailure::Source(e),
            // Unwinding through diesel would skip `PQputCopyEnd` and leave libpq in COPY IN
            // state, where diesel's next statement spins forever: abort the COPY first, resume
            // the panic afterwards.
            Err(payload) => WriteFailure::Panic(payload),
        };
        // Drop what is still buffered instead of sending it: the COPY is being aborted.
        drop(buffered.into_parts());
        *failure.borrow_mut() = Some(failed);
        // diesel sends this error's text to the server with `PQputCopyEnd`, which aborts the COPY.
        Err(CopyInAbort::Client)
    };

    let result = {
        let _sql = SqlGuard::install(target);
        let query = diesel::copy_from(runtime_table::pg_copy_runtime_target::table)
            .from_raw_data(RuntimeTarget, callback)
            .with_format(CopyFormat::Text);
        let query = if freeze {
            query.with_freeze(true)
        } else {
            query
        };
        query.execute(conn)
    };
    if let Err(e) = &result {
        // Trap 3: a stray ReadyForQuery may still be on its way.
        if let Err(lost) = resync_after_failed_copy_in(conn) {
            if let Some(WriteFailure::Panic(payload)) = failure.into_inner() {
                panic::resume_unwind(payload);
            }
            return Err(CopyError::Db(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new(format!(
                    "{e}; afterwards the connection could not be brought back in step with \
                     the server ({lost}): discard it"
                )),
            )));
        }
    }
    match failure.into_inner() {
        Some(WriteFailure::Panic(payload)) => panic::resume_unwind(payload),
        Some(WriteFailure::Source(e)) => Err(CopyError::Source(e)),
        Some(WriteFailure::Io(e)) => Err(CopyError::Io(e)),
        None => match result {
            Ok(rows) => Ok(rows as u64),
            Err(CopyInAbort::Db(e)) => Err(CopyError::Db(e)),
            Err(abort) => Err(CopyError::Db(DieselError::QueryBuilderError(
                abort.to_string().into(),
            ))),
        },
    }
}

mod runtime_table {
    diesel::table! {
        /// Never queried: diesel's COPY builders need *some* `table!` type as `CopyTarget::Table`.
        pg_copy_runtime_target (id) {
            id -> Integer,
        }
    }
}

thread_local! {
    /// The COPY source/target text that [`RuntimeTarget::walk_target`] renders; empty outside
    /// [`copy_out`] / [`copy_in`].
    static COPY_SQL: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs a COPY source/target text for the current thread; restores the previous text (empty at
/// the top level) when dropped, even when unwinding.
struct SqlGuard {
    previous: String,
}

impl SqlGuard {
    fn install(sql: &str) -> Self {
        let previous = COPY_SQL.with(|cell| cell.replace(sql.to_owned()));
        SqlGuard { previous }
    }
}

impl Drop for SqlGuard {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.previous);
        // `try_with`: never panic in drop, even during thread teardown.
        let _ = COPY_SQL.try_with(|cell| cell.replace(previous));
    }
}

/// The COPY target whose SQL is whatever [`SqlGuard`] installed on this thread.
#[derive(Debug, Clone, Copy)]
struct RuntimeTarget;

impl CopyTarget for RuntimeTarget {
    type Table = runtime_table::pg_copy_runtime_target::table;
    // Unused by `load_raw` / `from_raw_data`, which move raw bytes.
    type SqlType = diesel::sql_types::Integer;

    fn walk_target(mut pass: AstPass<'_, '_, Pg>) -> QueryResult<()> {
        COPY_SQL.with(|cell| {
            let sql = cell.borrow();
            if sql.is_empty() {
                return Err(DieselError::QueryBuilderError(
                    "pg_copy: COPY target rendered without a source/target text installed".into(),
                ));
            }
            pass.push_sql(&sql);
            Ok(())
        })
    }
}

/// How reading a COPY TO stream ended.
enum ReadEnd<E> {
    /// The end of the data (or a server error: see trap 2). `dangling`: bytes after the last
    /// newline, which the text format never produces.
    Eof { dangling: bool },
    /// `on_row` failed; the stream is not at its end.
    Source(E),
    /// Reading failed (lost connection, ...).
    Io(io::Error),
    /// The stream is not what the format says (binary COPY); the rest is still to be read.
    Malformed(io::Error),
}

/// Splits a text-format COPY stream into rows (a raw `\n` only ever ends a row: newlines in values
/// are escaped) and hands each one to `on_row` without its newline. libpq delivers one row per
/// chunk, so rows are normally passed straight from its buffer; rows split across chunks are
/// reassembled.
fn read_rows<R: BufRead + ?Sized, E>(
    reader: &mut R,
    on_row: &mut impl FnMut(&[u8]) -> Result<(), E>,
    rows: &mut u64,
) -> ReadEnd<E> {
    let mut carry = Vec::new();
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) => return ReadEnd::Io(e),
        };
        if chunk.is_empty() {
            return ReadEnd::Eof {
                dangling: !carry.is_empty(),
            };
        }
        let mut start = 0;
        while let Some(offset) = chunk[start..].iter().position(|&b| b == b'\n') {
            let line = &chunk[start..start + offset];
            let result = if carry.is_empty() {
                on_row(line)
            } else {
                carry.extend_from_slice(line);
                let result = on_row(&carry);
                carry.clear();
                result
            };
            start += offset + 1;
            if let Err(e) = result {
                return ReadEnd::Source(e);
            }
            *rows += 1;
        }
        carry.extend_from_slice(&chunk[start..]);
        let len = chunk.len();
        reader.consume(len);
    }
}

/// One row of a binary COPY stream: its fields in order ([`BinaryRow::fields`]), each in its
/// type's binary (send) form, `None` for SQL NULL. Borrowed from the stream's buffer: valid
/// during `on_row` only. Its field lengths were checked against its bytes when it was found.
pub struct BinaryRow<'a> {
    /// The fields, each a 4-byte length (-1: NULL) and that many bytes.
    data: &'a [u8],
    count: usize,
}

impl<'a> BinaryRow<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True for a row without fields (the format allows it; a SELECT never makes one).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The fields, first to last: reading them in order is one pass over the row, where
    /// looking each one up by its index would walk the lengths before it.
    pub fn fields(&self) -> BinaryFields<'a> {
        BinaryFields { rest: self.data }
    }

    /// Field `i`, or `None` for NULL (and past [`BinaryRow::len`]).
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.fields().nth(i).flatten()
    }
}

/// The fields of a [`BinaryRow`], in order.
pub struct BinaryFields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for BinaryFields<'a> {
    type Item = Option<&'a [u8]>;

    #[inline]
    fn next(&mut self) -> Option<Option<&'a [u8]>> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        let Ok(len) = usize::try_from(len) else {
            // -1, NULL: other lengths were refused when the row was found.
            debug_assert_eq!(len, -1);
            self.rest = rest;
            return Some(None);
        };
        let (value, rest) = rest.split_at_checked(len)?;
        self.rest = rest;
        Some(Some(value))
    }
}

/// The binary COPY format's signature, the first 11 bytes of its header.
const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// What [`next_binary_item`] found at the start of a buffer.
enum BinaryItem {
    /// The header (signature, flags, extension area).
    Header,
    /// A row of this many fields.
    Row(usize),
    /// The trailer (a field count of -1).
    Trailer,
}

/// Parses the next item of a binary COPY stream from the start of `buf`: `Ok(None)` when `buf`
/// holds only part of it, else the item and the bytes it took. A row's field lengths are
/// checked against the bytes here, once.
fn next_binary_item(buf: &[u8], header_done: bool) -> io::Result<Option<(BinaryItem, usize)>> {
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("binary COPY: {what}"));
    if !header_done {
        if buf.len() < 19 {
            return Ok(None);
        }
        if &buf[..11] != BINARY_SIGNATURE {
            return Err(bad("the stream does not start with the PGCOPY signature"));
        }
        let flags = u32::from_be_bytes([buf[11], buf[12], buf[13], buf[14]]);
        // Bits 0-15 are reserved for format changes a reader must know about (bit 16: OIDs).
        if flags & 0xffff != 0 || flags & (1 << 16) != 0 {
            return Err(bad("unknown header flags"));
        }
        let ext = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
        return Ok((buf.len() >= 19 + ext).then_some((BinaryItem::Header, 19 + ext)));
    }
    if buf.len() < 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([buf[0], buf[1]]);
    if count == -1 {
        return Ok(Some((BinaryItem::Trailer, 2)));
    }
    if count < 0 {
        return Err(bad("negative field count"));
    }
    let mut at = 2usize;
    for _ in 0..count {
        let Some(len) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        if len == -1 {
            continue;
        }
        if len < 0 {
            return Err(bad("negative field length"));
        }
        at += len as usize;
        if at > buf.len() {
            return Ok(None);
        }
    }
    Ok(Some((BinaryItem::Row(count as usize), at)))
}

/// Reads a binary COPY stream: checks the header, hands each row to `on_row`, and stops at the
/// trailer. libpq delivers one row per chunk (the header with the first), so rows are normally
/// read straight from its buffer; rows split across chunks are reassembled.
fn read_binary_rows<R: BufRead + ?Sized, E>(
    reader: &mut R,
    on_row: &mut impl FnMut(&BinaryRow<'_>) -> Result<(), E>,
    rows: &mut u64,
) -> ReadEnd<E> {
    let mut carry: Vec<u8> = Vec::new();
    let mut header_done = false;
    let mut trailer = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) => return ReadEnd::Io(e),
        };
        if chunk.is_empty() {
            return ReadEnd::Eof {
                dangling: !carry.is_empty() || !trailer,
            };
        }
        let len = chunk.len();
        // Parse from the chunk itself unless a partial item is pending.
        let joined;
        let buf: &[u8] = if carry.is_empty() {
            chunk
        } else {
            carry.extend_from_slice(chunk);
            joined = std::mem::take(&mut carry);
            &joined
        };
        let mut start = 0;
        while start < buf.len() {
            if trailer {
                return ReadEnd::Malformed(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "binary COPY: data after the trailer",
                ));
            }
            let rest = &buf[start..];
            match next_binary_item(rest, header_done) {
                Err(e) => return ReadEnd::Malformed(e),
                Ok(None) => break,
                Ok(Some((item, used))) => {
                    match item {
                        BinaryItem::Header => header_done = true,
                        BinaryItem::Trailer => trailer = true,
                        BinaryItem::Row(count) => {
                            let row = BinaryRow {
                                data: &rest[2..used],
                                count,
                            };
                            if let Err(e) = on_row(&row) {
                                return ReadEnd::Source(e);
                            }
                            *rows += 1;
                        }
                    }
                    start += used;
                }
            }
        }
        let leftover = buf[start..].to_vec();
        carry = leftover;
        reader.consume(len);
    }
}

/// Reads and drops the rest of a COPY TO stream, so that libpq leaves COPY OUT state. Returns
/// whether the end of the data was reached (false: reading failed).
fn discard_rest(reader: &mut impl BufRead) -> bool {
    loop {
        match reader.fill_buf() {
            Ok([]) => return true,
            Err(_) => return false,
            Ok(chunk) => {
                let len = chunk.len();
                reader.consume(len);
            }
        }
    }
}

/// Collects the final result of a COPY TO whose data has been read to the end: clears trap 1 and
/// reports trap 2 (see the module docs). Must only be called once the data is exhausted: while
/// libpq is still in COPY OUT state, diesel's `execute` never returns.
fn fetch_copy_out_result(conn: &mut PgConnection) -> QueryResult<()> {
    match diesel::sql_query(FETCH_COPY_RESULT_SQL).execute(conn) {
        // Not sent because the COPY's result was pending; diesel then fetched that result and it
        // was a success.
        Err(DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _)) => Ok(()),
        // The pending result was the COPY's error (or the connection is gone).
        Err(e) => Err(e),
        // The connection was already idle (not the case with diesel 2.3): nothing to report.
        Ok(_) => Ok(()),
    }
}

/// Brings libpq back in step with the server after a failed COPY FROM (trap 3 in the module docs).
///
/// At most one stray `ReadyForQuery` can be pending, and it may still be on its way. Two probes
/// with answers that cannot be confused are sent in turn through `batch_execute` (`PQexec`):
/// `""` (only an empty query gets `EmptyQueryResponse`, "Received an empty query" in diesel) and
/// `SELECT 1` (rows, or "current transaction is aborted" in a failed transaction: anything but an
/// empty-query answer or no answer). A probe that gets its own kind of answer proves that the
/// stream is in step. Otherwise the answer belonged to what came before (the stray
/// `ReadyForQuery` reads as "no result"), and the probe's own answer is now the one in flight: it
/// is left to arrive and dropped by libpq, which discards messages that arrive while it is idle
/// when `PQconsumeInput` + `PQnotifies` (diesel's `notifications_iter`) parse them. The next probe
/// checks. Normally the first probe settles it: one round trip.
fn resync_after_failed_copy_in(conn: &mut PgConnection) -> Result<(), String> {
    const EMPTY_QUERY: &str = "Received an empty query";
    let mut wait = Duration::from_millis(1);
    let mut last = String::new();
    for attempt in 0..RESYNC_ATTEMPTS {
        let empty_probe = attempt % 2 == 0;
        let answer = conn.batch_execute(if empty_probe { "" } else { "SELECT 1" });
        let (got_empty, got_nothing) = match &answer {
            Err(DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _)) => {
                (false, true)
            }
            Err(DieselError::DatabaseError(_, info)) => (info.message() == EMPTY_QUERY, false),
            _ => (false, false),
        };
        if (empty_probe && got_empty) || (!empty_probe && !got_empty && !got_nothing) {
            return Ok(());
        }
        last = match answer {
            Ok(()) => "rows".to_owned(),
            Err(e) => e.to_string(),
        };
        std::thread::sleep(wait);
        // Reads what has arrived; libpq drops it since nothing is expected. May swallow one
        // pending LISTEN notification.
        let _ = conn.notifications_iter().next();
        wait = (wait * 2).min(Duration::from_millis(500));
    }
    Err(format!(
        "{RESYNC_ATTEMPTS} probes never got their own answer, last: {last:?}"
    ))
}

/// What went wrong on the caller's side of a [`copy_in`].
enum WriteFailure<E> {
    Source(E),
    Io(io::Error),
    Panic(Box<dyn Any + Send + 'static>),
}

/// The error type of the callback handed to diesel's `from_raw_data` (it must implement
/// `std::error::Error + From<diesel::result::Error>`, which the caller's `E` need not).
#[derive(Debug)]
enum CopyInAbort {
    Db(DieselError),
    /// The caller's side failed (see [`WriteFailure`]); this text is what the server logs.
    Client,
    CalledTwice,
}

impl fmt::Display for CopyInAbort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyInAbort::Db(e) => e.fmt(f),
            CopyInAbort::Client => {
                f.write_str("COPY aborted by the client: its data source failed")
            }
            CopyInAbort::CalledTwice => {
                f.write_str("pg_copy: diesel called the COPY FROM callback twice")
            }
        }
    }
}

impl std::error::Error for CopyInAbort {}

impl From<DieselError> for CopyInAbort {
    fn from(e: DieselError) -> Self {
        CopyInAbort::Db(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `BufRead` handing out the given chunks one `fill_buf` at a time, like libpq's rows.
    struct Chunks {
        chunks: Vec<&'static [u8]>,
        next: usize,
        offset: usize,
    }

    impl Chunks {
        fn new(chunks: &[&'static [u8]]) -> Self {
            Chunks {
                chunks: chunks.to_vec(),
                next: 0,
                offset: 0,
            }
        }
    }

    impl io::Read for Chunks {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            unreachable!("only BufRead is used")
        }
    }

    impl BufRead for Chunks {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            while self.next < self.chunks.len() && self.offset == self.chunks[self.next].len() {
                self.next += 1;
                self.offset = 0;
            }
            Ok(self
                .chunks
                .get(self.next)
                .map_or(&[][..], |c| &c[self.offset..]))
        }

        fn consume(&mut self, amt: usize) {
            self.offset += amt;
        }
    }

    fn collect(chunks: &[&'static [u8]]) -> (Vec<Vec<u8>>, u64, bool) {
        let mut seen = Vec::new();
        let mut rows = 0;
        let end = read_rows(
            &mut Chunks::new(chunks),
            &mut |row: &[u8]| {
                seen.push(row.to_vec());
                Ok::<(), ()>(())
            },
            &mut rows,
        );
        let ReadEnd::Eof { dangling } = end else {
            panic!("expected end of data")
        };
        (seen, rows, dangling)
    }

    #[test]
    fn splits_rows_within_and_across_chunks() {
        let (seen, rows, dangling) = collect(&[b"a\t1\n", b"b\\n\t\\N\nc", b"d\n", b"", b"\n"]);
        assert_eq!(
            seen,
            [&b"a\t1"[..], b"b\\n\t\\N", b"cd", b""].map(<[u8]>::to_vec)
        );
        assert_eq!(rows, 4);
        assert!(!dangling);
        assert!(collect(&[b"x\n", b"tail"]).2);
    }

    #[test]
    fn stops_at_the_first_row_error() {
        let mut reader = Chunks::new(&[b"1\n2\n3\n", b"4\n"]);
        let mut rows = 0;
        let end = read_rows(
            &mut reader,
            &mut |row: &[u8]| if row == b"2" { Err("boom") } else { Ok(()) },
            &mut rows,
        );
        assert!(matches!(end, ReadEnd::Source("boom")));
        assert_eq!(rows, 1);
        assert!(discard_rest(&mut reader));
        assert!(reader.fill_buf().unwrap().is_empty());
    }

    #[test]
    fn sql_guard_nests_and_restores() {
        let current = || COPY_SQL.with(|cell| cell.borrow().clone());
        assert_eq!(current(), "");
        {
            let _outer = SqlGuard::install("\"s\".\"a\" (\"x\")");
            {
                let _inner = SqlGuard::install("(SELECT 1)");
                assert_eq!(current(), "(SELECT 1)");
            }
            assert_eq!(current(), "\"s\".\"a\" (\"x\")");
        }
        assert_eq!(current(), "");
        let caught = panic::catch_unwind(|| {
            let _guard = SqlGuard::install("(SELECT 2)");
            panic!("unwind");
        });
        assert!(caught.is_err());
        assert_eq!(current(), "");
    }

    #[test]
    fn error_display() {
        let source: CopyError<String> = CopyError::Source("bad fixture".into());
        assert_eq!(source.to_string(), "bad fixture");
        let db: CopyError<String> = CopyError::Db(DieselError::NotFound);
        assert_eq!(db.to_string(), "COPY failed: Record not found");
        assert!(std::error::Error::source(&db).is_some());
    }
}
