//! Fixture inputs: paths expanded to files, stdin spooled to a temporary file, gzip by
//! extension, and the pre-scan that finds every table occurrence (and checks the JSON syntax of
//! every file) before the database is touched.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use crate::error::{Error, Location, Result};
use crate::format::reader::{FixtureReader, ReadError, TablePosition};

/// One fixture file ready to be read any number of times.
#[derive(Debug)]
pub(crate) struct Input {
    /// The name used in messages (the path as given, or `<stdin>`).
    pub name: String,
    path: PathBuf,
    gzip: bool,
    /// Keeps a spooled stdin alive for the duration of the load.
    _spool: Option<tempfile::NamedTempFile>,
}

/// Where one table's rows appear in one file.
#[derive(Debug, Clone)]
pub(crate) struct Occurrence {
    pub input: usize,
    pub key: String,
    /// Which table of the file it is (0-based), for inputs that cannot seek (gzip).
    pub ordinal: usize,
    pub position: TablePosition,
    pub rows: u64,
}

/// Expands the user's paths: files as given, directories to their `*.json` / `*.json.gz` files
/// in name order, `-` to stdin (read once, into a temporary file).
pub(crate) fn expand(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut spool = tempfile::NamedTempFile::new().map_err(|e| Error::io("<stdin>", e))?;
            std::io::copy(&mut std::io::stdin().lock(), &mut spool)
                .map_err(|e| Error::io("<stdin>", e))?;
            out.push(Input {
                name: "<stdin>".into(),
                path: spool.path().to_path_buf(),
                gzip: false,
                _spool: Some(spool),
            });
        } else if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p.display().to_string(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    let n = f.file_name().map(|n| n.to_string_lossy().into_owned());
                    f.is_file()
                        && n.is_some_and(|n| {
                            !n.starts_with('.') && (n.ends_with(".json") || n.ends_with(".json.gz"))
                        })
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: no fixture files (*.json, *.json.gz) in this directory",
                    p.display()
                )));
            }
            out.extend(files.into_iter().map(file_input));
        } else if p.exists() {
            out.push(file_input(p.clone()));
        } else {
            return Err(Error::io(
                p.display().to_string(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
    }
    Ok(out)
}

fn file_input(path: PathBuf) -> Input {
    Input {
        name: path.display().to_string(),
        gzip: path.extension().is_some_and(|e| e == "gz"),
        path,
        _spool: None,
    }
}

pub(crate) type Reader = FixtureReader<Box<dyn BufRead>>;

impl Input {
    /// The file read (for stdin, its spool file).
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn open_raw(&self) -> Result<Box<dyn BufRead>> {
        let f = File::open(&self.path).map_err(|e| Error::io(&self.name, e))?;
        Ok(if self.gzip {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                flate2::read::MultiGzDecoder::new(BufReader::new(f)),
            ))
        } else {
            Box::new(BufReader::with_capacity(256 * 1024, f))
        })
    }

    /// A reader positioned so that its next `next_table` returns the given occurrence.
    pub(crate) fn open_at(&self, occ: &Occurrence) -> Result<Reader> {
        if self.gzip {
            let mut r = FixtureReader::new(self.open_raw()?);
            for _ in 0..occ.ordinal {
                r.next_table().map_err(|e| self.read_error(e, None))?;
            }
            return Ok(r);
        }
        let mut f = File::open(&self.path).map_err(|e| Error::io(&self.name, e))?;
        f.seek(SeekFrom::Start(occ.position.offset))
            .map_err(|e| Error::io(&self.name, e))?;
        let input: Box<dyn BufRead> = Box::new(BufReader::with_capacity(256 * 1024, f));
        Ok(FixtureReader::resume(input, occ.position))
    }

    /// Reads the whole file once: every table occurrence with its row count. Any syntax error
    /// anywhere in the file is reported here, before anything is written.
    pub(crate) fn scan(&self, index: usize) -> Result<Vec<Occurrence>> {
        let mut r = FixtureReader::new(self.open_raw()?);
        let mut out = Vec::new();
        while let Some(key) = r.next_table().map_err(|e| self.read_error(e, None))? {
            let position = r.table_position();
            let mut rows = 0;
            while r.skip_row().map_err(|e| self.read_error(e, Some(&key)))? {
                rows += 1;
            }
            out.push(Occurrence {
                input: index,
                ordinal: out.len(),
                key,
                position,
                rows,
            });
        }
        Ok(out)
    }

    pub(crate) fn read_error(&self, e: ReadError, table: Option<&str>) -> Error {
        match e {
            ReadError::Io(e) => Error::io(&self.name, e),
            ReadError::Syntax(s) => Error::Fixture {
                location: Box::new(Location {
                    file: Some(self.name.clone()),
                    line: Some(s.line),
                    column_no: Some(s.column),
                    table: table.map(str::to_owned),
                    ..Default::default()
                }),
                message: s.message,
            },
        }
    }
}
