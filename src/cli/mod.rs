//! Command-line interface: argument definitions and the glue from arguments to library calls.
//! Part of the binary only, so the library never depends on clap or indicatif.
//!
//! Output rule: data (dumps, reports, SQL) on stdout; progress and messages on stderr;
//! `--quiet` silences messages, never errors.

mod defer;
mod django;
mod mask;
mod signals;
mod subset;
mod term;
mod testdb;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::time::Instant;

use dbfixtures::dump::DumpOptions;
use dbfixtures::load::{LoadOptions, Mode};
use dbfixtures::sequences::{self, ResetOptions, SequenceState, Status};
use dbfixtures::{Connection, DatabaseUrl, Error, NoProgress, Progress, Result};

#[derive(Debug, Parser)]
#[command(
    name = "dbfixtures",
    version,
    about = "Dump database rows to JSON fixtures, load them back in one transaction, and keep \
             sequences aligned with the data",
    after_help = "Exit status: 0 ok, 1 a check found drift, 2 error."
)]
pub struct Args {
    /// Database URL: postgres://user@host/db, sqlite://path or a SQLite file path
    /// [default: $DATABASE_URL, also read from .env]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Print no progress or messages on stderr (errors are still printed)
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Options file (TOML: [subset], [mask], [django] sections); flags override it
    /// [default: ./dbfixtures.toml when it exists]
    #[arg(long, global = true, value_name = "FILE", env = "DBFIXTURES_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write table rows to a JSON fixture file
    Dump(DumpArgs),
    /// Load fixture files in one transaction, then realign sequences
    Load(LoadArgs),
    /// Move every sequence just past the values in the columns it feeds
    #[command(name = "reset-sequences")]
    ResetSequences(ResetArgs),
    /// Show every sequence, the columns it feeds and whether it is safe
    Sequences(SequencesArgs),
    /// Test databases cloned from a fixture-loaded template: create, drop, prune
    Testdb(TestdbArgs),
}

#[derive(Debug, clap::Args)]
pub struct TestdbArgs {
    #[command(subcommand)]
    pub command: testdb::TestdbCommand,
}

#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// Dump only tables matching this name or pattern (`*`, `?`; `table` or `schema.table`;
    /// repeatable)
    #[arg(long = "table", short = 't', value_name = "PATTERN")]
    pub tables: Vec<String>,
    /// Leave out tables matching this pattern (repeatable)
    #[arg(long = "exclude-table", short = 'T', value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Dump only tables in this schema (repeatable)
    #[arg(long = "schema", short = 'n', value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Output: a file (`.gz` compresses), or a directory ending in `/` for one file per table
    /// [default: stdout]
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<std::path::PathBuf>,
    /// With a directory output, compress each file (`TABLE.json.gz`)
    #[arg(long)]
    pub gzip: bool,
    /// Indent rows, one column per line (default: one row per line); with --format django,
    /// dumpdata's --indent 2 layout
    #[arg(long)]
    pub pretty: bool,
    #[command(flatten)]
    pub subset: subset::SubsetArgs,
    /// Mask a column's values on the way out: TABLE.COLUMN=STRATEGY, globs allowed
    /// (`*.email=email`); repeatable, adds to and overrides the config file's [mask]. Strategies:
    /// null, redact, hash, email, first_name, last_name, full_name, phone, address, text,
    /// int:MIN..MAX, date_shift:DAYS, keep
    #[arg(long = "mask", value_name = "TABLE.COLUMN=STRATEGY")]
    pub masks: Vec<String>,
    /// Secret key of the masks: the same salt gives the same masked values [env:
    /// DBFIXTURES_MASK_SALT]
    #[arg(
        long,
        value_name = "SECRET",
        env = "DBFIXTURES_MASK_SALT",
        hide_env = true,
        hide_env_values = true
    )]
    pub mask_salt: Option<String>,
    /// PostgreSQL: read tables on N connections sharing one snapshot (same output bytes as
    /// -j 1); SQLite reads serially
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Output format: native, or django (what manage.py dumpdata writes; JSON Lines for a
    /// .jsonl output)
    #[arg(long, value_enum, default_value_t = DumpFormat::Native)]
    pub format: DumpFormat,
    /// Django model of a table whose name is not `app_label_model` (a custom db_table);
    /// repeatable, also `[django] models` in the config file
    #[arg(long = "django-model", value_name = "TABLE=APP_LABEL.MODEL", value_parser = dbfixtures::format::django::parse_model_mapping)]
    pub django_models: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpFormat {
    Native,
    Django,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Modes:\n  upsert   rows whose key exists are updated, others inserted, nothing else touched;\n           loading the same files again changes nothing\n  insert   insert only; an existing key is an error\n  replace  empty every table named in the fixtures, then insert. Refused when rows of other\n           tables still reference them. Destructive, so it only runs on a database whose name\n           (SQLite: file name) contains dev, test, local, tmp, temp, demo, sandbox, seed,\n           fixture or the word ci, unless --force is given.\n\nEverything happens in one transaction: either every row lands or none does. Sequences\nfeeding the loaded tables are realigned last, inside the same transaction."
)]
pub struct LoadArgs {
    /// Fixture files, directories (every *.json / *.json.gz inside, in name order), or - for stdin
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,
    /// What to do with rows whose key already exists
    #[arg(long, value_enum, default_value_t = LoadMode::Upsert)]
    pub mode: LoadMode,
    /// Run everything, report what would change, then roll back
    #[arg(long)]
    pub dry_run: bool,
    /// Allow --mode replace on a database whose name does not look like a dev/test one
    #[arg(long)]
    pub force: bool,
    /// First apply pending diesel migrations (directory from diesel.toml), in the same
    /// transaction; creates a missing SQLite database file
    #[arg(long)]
    pub migrate: bool,
    /// PostgreSQL: keep foreign keys and indexes in place while loading (checked row by row)
    /// instead of building them after the data
    #[arg(long)]
    pub no_defer_constraints: bool,
    /// Say which constraints were built after the data, and which tables were loaded row by row
    #[arg(long, short)]
    pub verbose: bool,
    /// Fixture format: auto (decided per file from its content), django (manage.py dumpdata
    /// output, JSON or JSON Lines) or native
    #[arg(long, value_enum, default_value_t = FixtureFormat::Auto)]
    pub format: FixtureFormat,
    /// Django model of a table whose name is not `app_label_model` (a custom db_table);
    /// repeatable, also `[django] models` in the config file
    #[arg(long = "django-model", value_name = "TABLE=APP_LABEL.MODEL", value_parser = dbfixtures::format::django::parse_model_mapping)]
    pub django_models: Vec<(String, String)>,
    /// Django fixtures: skip objects of this app or app_label.Model (repeatable, as loaddata's)
    #[arg(long, short = 'e', value_name = "APP_LABEL[.MODEL]")]
    pub exclude: Vec<String>,
    /// Django fixtures: skip fields and models that do not exist in the database (as loaddata's)
    #[arg(long, short = 'i')]
    pub ignorenonexistent: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FixtureFormat {
    Auto,
    Django,
    Native,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LoadMode {
    Upsert,
    Insert,
    Replace,
}

impl From<LoadMode> for Mode {
    fn from(m: LoadMode) -> Mode {
        match m {
            LoadMode::Upsert => Mode::Upsert,
            LoadMode::Insert => Mode::Insert,
            LoadMode::Replace => Mode::Replace,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Only sequences feeding this table (`table` or `schema.table`; repeatable)
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Show every sequence with its old and new next value, including unchanged ones
    #[arg(long, short)]
    pub verbose: bool,
    /// Change nothing; exit 1 and list the sequences whose next value would collide
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Print the statements that would run, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Never move a sequence backwards (keep gaps; deleted IDs are not reused)
    #[arg(long)]
    pub never_rewind: bool,
}

#[derive(Debug, clap::Args)]
pub struct SequencesArgs {
    /// Only sequences feeding this table (repeatable)
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Machine-readable output: a JSON array of sequences
    #[arg(long)]
    pub json: bool,
}

/// What a successful run means for the exit code.
pub enum Outcome {
    Ok,
    CheckFailed,
}

impl Outcome {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::CheckFailed => ExitCode::from(1),
        }
    }
}

/// Messages for stderr, silenced by `--quiet`.
struct Messages {
    quiet: bool,
}

impl Messages {
    fn say(&self, text: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", text.as_ref());
        }
    }
}

pub fn run(args: Args) -> Result<Outcome> {
    signals::install();
    let msg = Messages { quiet: args.quiet };
    // Read before connecting, so a broken file is reported without touching the database.
    let config = dbfixtures::config::Config::discover(args.config.as_deref())?;
    let command = match args.command {
        // testdb drop takes URLs of its own: --database-url is optional there.
        Command::Testdb(t) => return testdb::run(args.database_url.as_deref(), t.command, &msg),
        other => other,
    };
    let url = DatabaseUrl::parse(args.database_url.as_deref().unwrap_or(""))?;
    match command {
        Command::Dump(a) => {
            let mask = mask::options(&config, &a)?;
            let mut conn = Connection::open(&url, false)?;
            let opts = dump_options(&a, &url, &config, mask)?;
            // --plan describes the subset whatever the output format: the native path prints it.
            if a.format == DumpFormat::Django && !a.subset.plan {
                return django::dump(&mut conn, a, &opts, &config, &msg);
            }
            dump(&mut conn, a, &opts, &config, &msg)
        }
        Command::Load(a) => {
            // --migrate may create the SQLite file; a load that does not commit removes it again.
            let created = match &url {
                DatabaseUrl::Sqlite(p) if a.migrate && !p.exists() => Some(p.clone()),
                _ => None,
            };
            let dry_run = a.dry_run;
            let mut conn = Connection::open(&url, a.migrate)?;
            let result = load(&mut conn, a, &config, &msg);
            if let Some(path) = created.filter(|_| result.is_err() || dry_run) {
                drop(conn);
                let _ = std::fs::remove_file(&path);
            }
            result
        }
        Command::ResetSequences(a) => {
            let mut conn = Connection::open(&url, false)?;
            reset_sequences(&mut conn, &url, a, &msg)
        }
        Command::Testdb(_) => unreachable!("handled above"),
        Command::Sequences(a) => {
            let mut conn = Connection::open(&url, false)?;
            let states = sequences::inspect_with(&mut conn, &a.tables, Some(&url))?;
            let mut out = std::io::stdout().lock();
            if a.json {
                let text = serde_json::to_string_pretty(&states)
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                writeln!(out, "{text}").map_err(stdout_err)?;
            } else {
                write_table(&mut out, &states).map_err(stdout_err)?;
            }
            Ok(Outcome::Ok)
        }
    }
}

fn stdout_err(e: std::io::Error) -> Error {
    Error::Io {
        path: "<stdout>".into(),
        source: e,
    }
}

/// The dump options of both formats (`--format django` encodes the same rows differently).
fn dump_options(
    a: &DumpArgs,
    url: &DatabaseUrl,
    config: &dbfixtures::config::Config,
    mask: dbfixtures::mask::MaskOptions,
) -> Result<DumpOptions> {
    Ok(DumpOptions {
        tables: a.tables.clone(),
        exclude: a.exclude.clone(),
        schemas: a.schemas.clone(),
        pretty: a.pretty,
        subset: subset::options(&a.subset, &config.subset)?,
        mask,
        parallel: (a.jobs > 1).then(|| dbfixtures::dump::Parallel {
            jobs: usize::from(a.jobs),
            url: url.clone(),
        }),
    })
}

fn dump(
    conn: &mut Connection,
    a: DumpArgs,
    opts: &DumpOptions,
    config: &dbfixtures::config::Config,
    msg: &Messages,
) -> Result<Outcome> {
    let bars = term::Bars::for_stderr(msg.quiet);
    let progress: &dyn Progress = match &bars {
        Some(b) => b,
        None if msg.quiet => &NoProgress,
        None => &term::NotesOnly,
    };
    if a.subset.plan {
        let plan = dbfixtures::dump::subset_plan(conn, opts, progress)?;
        if a.format == DumpFormat::Django {
            django::check_plan(conn, &a, config, &plan)?;
        }
        subset::write_plan(&mut std::io::stdout().lock(), &plan).map_err(stdout_err)?;
        return Ok(Outcome::Ok);
    }
    let started = Instant::now();
    let (summary, target) = match &a.output {
        None => {
            let mut out = std::io::stdout().lock();
            let s = dbfixtures::dump::dump(conn, opts, &mut out, progress)?;
            (s, "stdout".to_string())
        }
        Some(p) if p.as_os_str().to_string_lossy().ends_with('/') || p.is_dir() => {
            let s = dbfixtures::dump::dump_to_dir(conn, opts, p, a.gzip, progress)?;
            (s, format!("{} (one file per table)", p.display()))
        }
        Some(p) => {
            let s = dbfixtures::dump::dump_to_file(conn, opts, p, progress)?;
            (s, p.display().to_string())
        }
    };
    msg.say(format!(
        "Dumped {} from {} to {target} ({}) in {:.2}s.",
        term::count(summary.rows, "row"),
        term::count(summary.tables, "table"),
        human_bytes(summary.bytes),
        started.elapsed().as_secs_f64()
    ));
    mask::warn_if_unsalted(&opts.mask, msg);
    Ok(Outcome::Ok)
}

fn load(
    conn: &mut Connection,
    a: LoadArgs,
    config: &dbfixtures::config::Config,
    msg: &Messages,
) -> Result<Outcome> {
    let django = django::load_options(&a, config)?;
    let opts = LoadOptions {
        mode: match a.mode {
            LoadMode::Upsert => Mode::Upsert,
            LoadMode::Insert => Mode::Insert,
            LoadMode::Replace => Mode::Replace,
        },
        dry_run: a.dry_run,
        force: a.force,
        migrate: a.migrate,
        no_defer_constraints: a.no_defer_constraints,
        defer_min_rows: None,
    };
    let bars = term::Bars::for_stderr(msg.quiet);
    let progress: &dyn Progress = match &bars {
        Some(b) => b,
        None => &NoProgress,
    };
    let started = Instant::now();
    let report =
        dbfixtures::format::django::load::load_paths(conn, &a.paths, &opts, &django, progress)?;
    for m in &report.migrations {
        msg.say(format!("  applied migration {m}"));
    }
    if a.verbose {
        for line in defer::describe(&report.deferred) {
            msg.say(line);
        }
    }
    for change in &report.sequences.changes {
        msg.say(format!(
            "  sequence {}: {} → {}",
            change.sequence, change.from, change.to
        ));
    }
    let counts = if opts.mode == Mode::Upsert {
        format!(
            " ({} inserted, {} updated, {} unchanged)",
            report.inserted(),
            report.updated(),
            report.unchanged()
        )
    } else {
        String::new()
    };
    let prefix = if report.dry_run {
        "Dry run, rolled back: would have loaded"
    } else {
        "Loaded"
    };
    msg.say(format!(
        "{prefix} {} into {} from {}{counts}; realigned {} in {:.2}s.",
        term::count(report.rows(), "row"),
        term::count(report.tables.len(), "table"),
        term::count(report.files, "file"),
        term::count(report.sequences.changes.len(), "sequence"),
        started.elapsed().as_secs_f64()
    ));
    Ok(Outcome::Ok)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn reset_sequences(
    conn: &mut Connection,
    url: &DatabaseUrl,
    a: ResetArgs,
    msg: &Messages,
) -> Result<Outcome> {
    if a.check {
        let states = sequences::inspect_with(conn, &a.tables, Some(url))?;
        let bad: Vec<&SequenceState> = states
            .iter()
            .filter(|s| matches!(s.status, Status::Behind | Status::Exhausted))
            .collect();
        if a.verbose {
            for s in &states {
                msg.say(format!("{}: {}", describe(s), s.status.as_str()));
            }
        }
        if bad.is_empty() {
            msg.say(match states.len() {
                1 => "The 1 sequence is safe.".to_string(),
                n => format!("All {n} sequences are safe."),
            });
            return Ok(Outcome::Ok);
        }
        // The findings are the result of the check: always printed, even with --quiet.
        for s in &bad {
            let extreme = format!(
                "column {} is {}",
                if s.increment > 0 { "max" } else { "min" },
                opt(s.column_extreme)
            );
            match s.status {
                Status::Exhausted => eprintln!(
                    "{}: exhausted: next value {} is out of the sequence's bounds ({extreme})",
                    describe(s),
                    s.next_value
                ),
                _ => eprintln!(
                    "{}: next value {} would collide ({extreme})",
                    describe(s),
                    s.next_value
                ),
            }
        }
        eprintln!(
            "{} of {} sequences are behind their data; run `dbfixtures reset-sequences`.",
            bad.len(),
            states.len()
        );
        return Ok(Outcome::CheckFailed);
    }

    let report = sequences::reset(
        conn,
        &ResetOptions {
            tables: a.tables,
            never_rewind: a.never_rewind,
            dry_run: a.dry_run,
            helper: Some(url.clone()),
        },
    )?;
    if a.dry_run {
        let mut out = std::io::stdout().lock();
        for st in &report.statements {
            writeln!(out, "{st}").map_err(stdout_err)?;
        }
    }
    for s in &report.before {
        match report.changes.iter().find(|c| c.sequence == s.sequence) {
            Some(c) => msg.say(format!("{}: {} → {}", describe(s), c.from, c.to)),
            None if a.verbose => msg.say(format!("{}: {} (unchanged)", describe(s), s.next_value)),
            None => {}
        }
    }
    let verb = if a.dry_run { "would move" } else { "moved" };
    msg.say(format!(
        "Checked {}, {verb} {}.",
        term::count(report.before.len(), "sequence"),
        report.changes.len()
    ));
    Ok(Outcome::Ok)
}

fn describe(s: &SequenceState) -> String {
    format!("{} ({})", s.sequence, s.feeds.join(", "))
}

fn opt(v: Option<i128>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn write_table(out: &mut impl Write, states: &[SequenceState]) -> std::io::Result<()> {
    let header = [
        "SEQUENCE",
        "FEEDS",
        "LAST VALUE",
        "COLUMN MAX",
        "NEXT",
        "STATUS",
    ];
    let rows: Vec<[String; 6]> = states
        .iter()
        .map(|s| {
            [
                s.sequence.clone(),
                s.feeds.join(", "),
                opt(s.last_value),
                opt(s.column_extreme),
                s.next_value.to_string(),
                s.status.as_str().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in &rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
