//! Progress reporting without a terminal dependency: the library calls this trait, the binary
//! implements it with indicatif bars (only when stderr is a terminal), tests use [`NoProgress`].

/// Receives progress events of long operations. Every method has an empty default so an
/// implementation only picks what it shows.
pub trait Progress {
    /// A table starts; `estimate` is the expected row count when known (catalog estimate).
    fn table_started(&self, _table: &str, _estimate: Option<u64>) {}
    /// `rows` more rows of the current table are done.
    fn rows(&self, _rows: u64) {}
    /// The current table is finished with `rows` rows in total.
    fn table_finished(&self, _table: &str, _rows: u64) {}
    /// A free-form status line (for example "realigning sequences").
    fn message(&self, _text: &str) {}
    /// Something the user should know about how the work was done, worth a line even when
    /// nothing else is shown (a table read again in key order, a table a parallel worker could
    /// not read).
    fn note(&self, _text: &str) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
