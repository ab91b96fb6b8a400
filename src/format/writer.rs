//! Fixture writer: the byte layout of a fixture file.
//!
//! Default layout, chosen for reviewable diffs (one row per line, nothing else moves when a row
//! changes):
//! ```text
//! {
//!   "users": [
//!     {"id":1,"email":"ana@example.com"},
//!     {"id":2,"email":"bo@example.com"}
//!   ],
//!   "sales.orders": []
//! }
//! ```
//! `pretty` puts each column of a row on its own line instead. Values are never reformatted: the
//! writer only places rows that the caller has already rendered as compact JSON.
//!
//! Rows are rendered straight into a batch of about [`BATCH`] bytes, which goes to the output
//! in one write: a row is about a hundred bytes, and a write per row (through the output's
//! buffering, its dispatch and a copy) cost the dump more than rendering the row's numbers.
//! Everything reaches the output in order; the batch is handed on by [`FixtureWriter::finish`],
//! [`FixtureWriter::finish_rows`] and [`FixtureWriter::go_back`], so a writer dropped before
//! one of those (the dump failed) leaves up to a batch unwritten. After an error from the
//! output the writer is done: its byte count includes the batch that was lost.

use std::io::{self, Write};

use super::bytes::ShortRun;
use super::copy_text::push_json_string;

/// Bytes gathered before they are written to the output.
const BATCH: usize = 64 * 1024;

pub struct FixtureWriter<W: Write> {
    out: W,
    /// Bytes not yet written to `out` (counted in `bytes` already).
    batch: Vec<u8>,
    pretty: bool,
    tables: usize,
    rows_in_table: u64,
    bytes: u64,
}

impl<W: Write> FixtureWriter<W> {
    pub fn new(out: W, pretty: bool) -> Self {
        FixtureWriter {
            out,
            batch: Vec::new(),
            pretty,
            tables: 0,
            rows_in_table: 0,
            bytes: 0,
        }
    }

    /// A writer continuing a document in which `tables` tables were already written (by other
    /// writers: a parallel dump writes each table on its own and concatenates them).
    pub fn resume(out: W, pretty: bool, tables: usize) -> Self {
        FixtureWriter {
            tables,
            ..FixtureWriter::new(out, pretty)
        }
    }

    /// A writer of rows only, each one after a separator (`,` then the new line), to be placed
    /// inside a table of another writer with [`FixtureWriter::append_rows`]: a parallel dump
    /// renders parts of tables on their own.
    pub fn rows_only(out: W, pretty: bool) -> Self {
        FixtureWriter {
            tables: 1,
            rows_in_table: 1,
            ..FixtureWriter::new(out, pretty)
        }
    }

    /// Appends bytes written by a [`FixtureWriter::rows_only`] writer (split anywhere) to the
    /// current table, as if its rows had been written here: the separator before the table's
    /// first row is dropped.
    pub fn append_rows(&mut self, mut part: &[u8]) -> io::Result<()> {
        if part.is_empty() {
            return Ok(());
        }
        if self.rows_in_table == 0 {
            debug_assert_eq!(part[0], b',');
            part = &part[1..];
            self.rows_in_table = 1;
        }
        self.put(part)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.bytes += b.len() as u64;
        if self.batch.len() + b.len() > BATCH {
            self.write_batch()?;
            if b.len() >= BATCH {
                // A parallel dump's pieces: no point in copying them into the batch.
                return self.out.write_all(b);
            }
        }
        self.batch.extend_from_slice(b);
        Ok(())
    }

    /// Writes the batch to the output.
    fn write_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let result = self.out.write_all(&self.batch);
        self.batch.clear();
        result
    }

    /// Starts a row in the batch; returns where it starts, for [`FixtureWriter::end_row`].
    fn start_row(&mut self) -> usize {
        if self.batch.capacity() == 0 {
            // Room for a batch and the row that completes it, allocated once.
            self.batch.reserve(BATCH + BATCH / 2);
        }
        let start = self.batch.len();
        // Each branch is one fixed-size copy (see `format::bytes`).
        if self.rows_in_table == 0 {
            self.batch.extend_from_slice(b"\n    {");
        } else {
            self.batch.extend_from_slice(b",\n    {");
        }
        start
    }

    /// Counts the row rendered in the batch since `start`, and writes the batch once full.
    fn end_row(&mut self, start: usize) -> io::Result<()> {
        self.rows_in_table += 1;
        self.bytes += (self.batch.len() - start) as u64;
        if self.batch.len() >= BATCH {
            self.write_batch()?;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the writer stands, to come back to with [`FixtureWriter::go_back`].
    pub fn mark(&self) -> Mark {
        Mark {
            tables: self.tables,
            rows_in_table: self.rows_in_table,
            bytes: self.bytes,
        }
    }

    /// Comes back to `mark`: `cut(out, len)` cuts the output back to its first `len` bytes (what
    /// was written when the mark was taken), and the writer goes on from there.
    pub fn go_back(
        &mut self,
        mark: Mark,
        cut: impl FnOnce(&mut W, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        self.write_batch()?;
        self.out.flush()?;
        cut(&mut self.out, mark.bytes)?;
        self.tables = mark.tables;
        self.rows_in_table = mark.rows_in_table;
        self.bytes = mark.bytes;
        Ok(())
    }

    pub fn begin_table(&mut self, key: &str) -> io::Result<()> {
        let mut buf = Vec::with_capacity(key.len() + 16);
        buf.extend_from_slice(if self.tables == 0 { b"{\n  " } else { b",\n  " });
        push_json_string(&mut buf, key.as_bytes());
        buf.extend_from_slice(b": [");
        self.tables += 1;
        self.rows_in_table = 0;
        self.put(&buf)
    }

    /// Writes one row given as `(escaped key with quotes, rendered JSON value)` pairs.
    pub fn row(&mut self, fields: &[(&[u8], &[u8])]) -> io::Result<()> {
        let start = self.start_row();
        for (i, (k, v)) in fields.iter().enumerate() {
            column_prefix(self.pretty, i, k, &mut self.batch);
            self.batch.extend_from_slice(v);
        }
        self.batch
            .extend_from_slice(row_end(self.pretty, fields.len()));
        self.end_row(start)
    }

    /// The bytes before each value of a row whose columns have these keys (escaped, with
    /// quotes), for [`FixtureWriter::row_rendered`].
    pub fn layout<'a>(&self, keys: impl ExactSizeIterator<Item = &'a [u8]>) -> RowLayout {
        let n = keys.len();
        let prefixes = keys
            .enumerate()
            .map(|(i, k)| {
                let mut p = Vec::new();
                column_prefix(self.pretty, i, k, &mut p);
                match ShortRun::new(&p) {
                    Some(run) => Prefix::Short(run),
                    None => Prefix::Long(p),
                }
            })
            .collect();
        RowLayout {
            prefixes,
            end: row_end(self.pretty, n),
        }
    }

    /// Writes one row whose values `value(i, buf)` appends to `buf` as compact JSON, column by
    /// column, in `layout`'s order: the same bytes as [`FixtureWriter::row`], without a buffer
    /// per value. `value` is called for each column once, in order; when it fails, nothing of
    /// the row is written.
    #[inline(always)]
    pub fn row_rendered<E: From<io::Error>>(
        &mut self,
        layout: &RowLayout,
        mut value: impl FnMut(usize, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.start_row();
        // Fixed-size appends (see `format::bytes`): a row is many short runs.
        for (i, prefix) in layout.prefixes.iter().enumerate() {
            match prefix {
                Prefix::Short(run) => run.push_to(&mut self.batch),
                Prefix::Long(p) => self.batch.extend_from_slice(p),
            }
            if let Err(e) = value(i, &mut self.batch) {
                self.batch.truncate(start);
                return Err(e);
            }
        }
        self.batch.extend_from_slice(layout.end);
        Ok(self.end_row(start)?)
    }

    pub fn end_table(&mut self) -> io::Result<()> {
        if self.rows_in_table == 0 {
            self.put(b"]")
        } else {
            self.put(b"\n  ]")
        }
    }

    /// Returns the inner writer of a [`FixtureWriter::rows_only`] writer (flushed).
    pub fn finish_rows(mut self) -> io::Result<W> {
        self.write_batch()?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Closes the document and returns the inner writer (flushed).
    pub fn finish(mut self) -> io::Result<W> {
        if self.tables == 0 {
            self.put(b"{}\n")?;
        } else {
            self.put(b"\n}\n")?;
        }
        self.write_batch()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A place in a document being written: see [`FixtureWriter::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    tables: usize,
    rows_in_table: u64,
    bytes: u64,
}

/// The bytes before each value of a row: see [`FixtureWriter::layout`].
#[derive(Debug, Clone)]
pub struct RowLayout {
    prefixes: Vec<Prefix>,
    end: &'static [u8],
}

/// A column's prefix: most keys are short enough for one fixed-size copy.
#[derive(Debug, Clone)]
enum Prefix {
    Short(ShortRun<32>),
    Long(Vec<u8>),
}

/// What goes before the value of column `i`: a separator, the key and a colon.
fn column_prefix(pretty: bool, i: usize, key: &[u8], out: &mut Vec<u8>) {
    if pretty {
        out.extend_from_slice(if i == 0 { b"\n      " } else { b",\n      " });
        out.extend_from_slice(key);
        out.extend_from_slice(b": ");
    } else {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key);
        out.push(b':');
    }
}

/// What closes a row of `columns` columns.
fn row_end(pretty: bool, columns: usize) -> &'static [u8] {
    if pretty && columns > 0 {
        b"\n    }"
    } else {
        b"}"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_one_row_per_line() {
        let mut w = FixtureWriter::new(Vec::new(), false);
        w.begin_table("users").unwrap();
        w.row(&[(b"\"id\"", b"1"), (b"\"n\"", b"\"a\"")]).unwrap();
        w.row(&[(b"\"id\"", b"2"), (b"\"n\"", b"null")]).unwrap();
        w.end_table().unwrap();
        w.begin_table("s.t").unwrap();
        w.end_table().unwrap();
        let bytes = w.bytes();
        let out = w.finish().unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "{\n  \"users\": [\n    {\"id\":1,\"n\":\"a\"},\n    {\"id\":2,\"n\":null}\n  ],\n  \"s.t\": []\n}\n"
        );
        assert_eq!(bytes + 3, out.len() as u64);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["users"][1]["id"], 2);
    }

    #[test]
    fn rows_written_apart_are_appended_as_if_written_in_place() {
        for pretty in [false, true] {
            let mut whole = FixtureWriter::new(Vec::new(), pretty);
            whole.begin_table("t").unwrap();
            whole.row(&[(b"\"id\"", b"1")]).unwrap();
            whole.row(&[(b"\"id\"", b"2")]).unwrap();
            whole.row(&[(b"\"id\"", b"3")]).unwrap();
            whole.end_table().unwrap();
            whole.begin_table("empty").unwrap();
            whole.end_table().unwrap();
            let whole = whole.finish().unwrap();

            let part = |ids: &[&[u8]]| {
                let mut w = FixtureWriter::rows_only(Vec::new(), pretty);
                for id in ids {
                    w.row(&[(b"\"id\"", id)]).unwrap();
                }
                (w.bytes(), w.finish_rows().unwrap())
            };
            let mut joined = FixtureWriter::new(Vec::new(), pretty);
            joined.begin_table("t").unwrap();
            let (a, b, c) = (part(&[]), part(&[b"1", b"2"]), part(&[b"3"]));
            assert_eq!(a.0, 0);
            assert_eq!(b.0, b.1.len() as u64);
            for bytes in [&a.1, &b.1[..3].to_vec(), &b.1[3..].to_vec(), &c.1] {
                joined.append_rows(bytes).unwrap();
            }
            joined.end_table().unwrap();
            joined.begin_table("empty").unwrap();
            joined.append_rows(&part(&[]).1).unwrap();
            joined.end_table().unwrap();
            let bytes = joined.bytes();
            let joined = joined.finish().unwrap();
            assert_eq!(
                String::from_utf8(joined.clone()).unwrap(),
                String::from_utf8(whole).unwrap()
            );
            assert_eq!(bytes + 3, joined.len() as u64);
        }
    }

    #[test]
    fn rendered_rows_are_the_same_bytes() {
        for pretty in [false, true] {
            let mut a = FixtureWriter::new(Vec::new(), pretty);
            let mut b = FixtureWriter::new(Vec::new(), pretty);
            let keys: [&[u8]; 2] = [b"\"id\"", b"\"n\""];
            let layout = b.layout(keys.iter().copied());
            let empty = b.layout(std::iter::empty());
            for t in ["t", "u"] {
                a.begin_table(t).unwrap();
                b.begin_table(t).unwrap();
                for (id, n) in [(&b"1"[..], &b"\"x\""[..]), (b"2", b"null")] {
                    a.row(&[(keys[0], id), (keys[1], n)]).unwrap();
                    b.row_rendered(&layout, |i, buf| {
                        buf.extend_from_slice([id, n][i]);
                        Ok::<(), io::Error>(())
                    })
                    .unwrap();
                }
                a.row(&[]).unwrap();
                b.row_rendered(&empty, |_, _| Ok::<(), io::Error>(()))
                    .unwrap();
                a.end_table().unwrap();
                b.end_table().unwrap();
            }
            assert_eq!(a.bytes(), b.bytes());
            assert_eq!(a.finish().unwrap(), b.finish().unwrap());
        }
    }

    #[test]
    fn pretty_and_empty_documents() {
        let mut w = FixtureWriter::new(Vec::new(), true);
        w.begin_table("t").unwrap();
        w.row(&[(b"\"id\"", b"1"), (b"\"n\"", b"[1,2]")]).unwrap();
        w.end_table().unwrap();
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(
            out,
            "{\n  \"t\": [\n    {\n      \"id\": 1,\n      \"n\": [1,2]\n    }\n  ]\n}\n"
        );
        let empty = FixtureWriter::new(Vec::new(), false).finish().unwrap();
        assert_eq!(empty, b"{}\n");
    }

    /// An output that records each write, to see what reaches it and when.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rows_reach_the_output_in_batches_and_in_order() {
        let mut w = FixtureWriter::new(Writes::default(), false);
        let layout = w.layout([&b"\"id\""[..]].into_iter());
        w.begin_table("t").unwrap();
        let rows = 20_000;
        for id in 0..rows {
            w.row_rendered(&layout, |_, buf| {
                buf.extend_from_slice(id.to_string().as_bytes());
                Ok::<(), io::Error>(())
            })
            .unwrap();
        }
        // A failed row leaves nothing behind, the batch before it included.
        let failed = w.row_rendered(&layout, |_, buf| {
            buf.extend_from_slice(b"partial");
            Err(io::Error::other("bad value"))
        });
        assert!(failed.is_err());
        let piece = vec![b' '; BATCH + 1];
        w.append_rows(&piece).unwrap();
        w.end_table().unwrap();
        let bytes = w.bytes();
        let out = w.finish().unwrap();
        assert!(out.0.iter().all(|b| b.len() <= BATCH + BATCH / 2));
        assert!(out.0.len() < 10, "{} writes", out.0.len());
        assert!(out.0.contains(&piece), "a large piece is written as it is");
        let all = out.0.concat();
        assert_eq!(bytes + 3, all.len() as u64);
        let text = String::from_utf8(all).unwrap();
        assert!(!text.contains("partial"));
        let expected: Vec<String> = (0..rows).map(|id| format!("{{\"id\":{id}}}")).collect();
        assert!(text.starts_with(&format!("{{\n  \"t\": [\n    {}", expected.join(",\n    "))));
    }

    #[test]
    fn going_back_writes_the_batch_first_and_cuts_it() {
        let mut w = FixtureWriter::new(Vec::new(), false);
        w.begin_table("t").unwrap();
        w.row(&[(b"\"id\"", b"1")]).unwrap();
        let mark = w.mark();
        w.row(&[(b"\"id\"", b"2")]).unwrap();
        w.go_back(mark, |out, len| {
            assert_eq!(
                out.len() as u64,
                len + 14,
                "the batch was written before the cut"
            );
            out.truncate(len as usize);
            Ok(())
        })
        .unwrap();
        w.row(&[(b"\"id\"", b"3")]).unwrap();
        w.end_table().unwrap();
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(
            out,
            "{\n  \"t\": [\n    {\"id\":1},\n    {\"id\":3}\n  ]\n}\n"
        );
    }
}
