//! `dbfixtures testdb create|drop|prune`: the template-and-clone test databases of
//! `dbfixtures::testdb` for test suites in other languages. `create` prints the new database's
//! URL on stdout (without password: pass it through PGPASSWORD or ~/.pgpass).
//!
//! `create` exits as soon as the URL is printed, so the pool of ready clones cannot be filled by
//! a thread of it: it starts the hidden `testdb fill` with the same arguments as a detached
//! process (null stdio, not waited for; the server URL goes through its environment, not its
//! command line), which tops the pool up for the next `create` of any process and exits.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Subcommand;

use dbfixtures::testdb::{self, PruneOptions, TestDbBuilder};
use dbfixtures::{Error, Result};

use clap::ValueEnum;

use super::{stdout_err, LoadMode, Messages, Outcome};

#[derive(Debug, Subcommand)]
pub enum TestdbCommand {
    /// Make a database loaded with the fixtures (cloned from a template built once) and print
    /// its URL
    Create(CreateArgs),
    /// Drop databases made by `testdb create`
    Drop(DropArgs),
    /// Remove leaked clones and old templates that nothing uses
    Prune(PruneArgs),
    /// Top the pool of ready clones up (started by `create` in the background)
    #[command(hide = true)]
    Fill(CreateArgs),
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The template is keyed by a hash of dbfixtures' version, the server version, every \
                  migration and fixture file and the load mode: change a byte and a new one is \
                  built. Names: PREFIX_t_KEY (templates), PREFIX_c_KEY_PID_N (clones), \
                  PREFIX_p_KEY_PID_N (free ready clones of the pool); PREFIX defaults to the \
                  --database-url's database (SQLite: file) name."
)]
pub struct CreateArgs {
    /// Fixture files or directories loaded into the template
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Apply the diesel migrations (directory found as `load --migrate` finds it) to the
    /// template first
    #[arg(long)]
    pub migrate: bool,
    /// The migrations directory to apply (implies --migrate)
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// How fixtures are loaded into the template
    #[arg(long, value_enum, default_value_t = LoadMode::Upsert)]
    pub mode: LoadMode,
    /// Name prefix of the template and clones [default: the URL's database name]
    #[arg(long)]
    pub prefix: Option<String>,
    /// Free ready clones to keep on the server (PostgreSQL; 0: no pool; SQLite keeps none)
    /// [default: $DBFIXTURES_TESTDB_POOL, else 4]
    #[arg(long, value_name = "N")]
    pub pool: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct DropArgs {
    /// URLs printed by `testdb create`
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Only what was created with this prefix [default: the URL's database name]
    #[arg(long, conflicts_with = "all")]
    pub prefix: Option<String>,
    /// Everything `testdb` created on the server, whatever its prefix
    #[arg(long)]
    pub all: bool,
    /// Remove clones and templates at least this old (30s, 10m, 2h, 7d); clones whose owner
    /// process on this host has exited go at any age
    #[arg(long, value_name = "AGE", default_value = "1h")]
    pub older_than: String,
    /// List what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(url: Option<&str>, command: TestdbCommand, msg: &Messages) -> Result<Outcome> {
    let server = || url.ok_or(Error::NoDatabaseUrl);
    match command {
        TestdbCommand::Create(a) => {
            let server = server()?;
            let (b, migrations) = builder(server, &a)?;
            // This process exits at once: the clone belongs to the test suite that ran it.
            #[cfg(unix)]
            let b = b.owner_pid(std::os::unix::process::parent_id());
            // The detached `testdb fill` below tops the pool up; a thread of this process would
            // be cut off when it exits, possibly holding the fillers' lock as that one starts.
            let b = b.fill_in_background(false);
            let db = b.create()?;
            if db.built_template() {
                let (template, _) = b.template()?;
                msg.say(format!("built template {template}"));
            }
            let url = db.keep();
            {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{url}").map_err(stdout_err)?;
                out.flush().map_err(stdout_err)?;
            }
            if b.pool_size()? > 0 && matches!(url, dbfixtures::DatabaseUrl::Postgres(_)) {
                spawn_filler(server, &a, migrations.as_deref(), msg);
            }
            Ok(Outcome::Ok)
        }
        TestdbCommand::Fill(a) => {
            let (b, _) = builder(server()?, &a)?;
            // Started right after a `create`, this may find the fillers' lock still held (by
            // a filler finishing, or whose backend is still exiting) or a busy server refusing
            // a first attempt. It tries again for a few seconds: nobody waits for it, and an
            // empty pool only means the next `create` clones directly.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let pid = std::process::id();
            loop {
                let result = b.top_up_pool();
                let retry = std::time::Instant::now() < deadline;
                // These lines reach only DBFIXTURES_TESTDB_FILL_LOG (see `spawn_filler`).
                match result {
                    Ok(Some(n)) => {
                        eprintln!("testdb fill ({pid}): pool topped up, {n} made");
                        break;
                    }
                    Ok(None) if retry => {}
                    Err(e) if retry => eprintln!("testdb fill ({pid}): {e}; trying again"),
                    Ok(None) => {
                        eprintln!("testdb fill ({pid}): the fillers' lock stayed taken; gave up");
                        break;
                    }
                    Err(e) => return Err(e),
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Ok(Outcome::Ok)
        }
        TestdbCommand::Drop(a) => {
            for u in &a.urls {
                testdb::drop_database(u)?;
                msg.say(format!("dropped {}", dbfixtures::DatabaseUrl::parse(u)?));
            }
            Ok(Outcome::Ok)
        }
        TestdbCommand::Prune(a) => {
            let server = server()?;
            let prefix = match (a.all, a.prefix) {
                (true, _) => None,
                (false, Some(p)) => Some(p),
                (false, None) => Some(testdb::default_prefix(server)?),
            };
            let opts = PruneOptions {
                prefix,
                older_than: testdb::parse_duration(&a.older_than)?,
                dry_run: a.dry_run,
            };
            let report = testdb::prune(server, &opts)?;
            let mut out = std::io::stdout().lock();
            for name in &report.removed {
                writeln!(out, "{name}").map_err(stdout_err)?;
            }
            for name in &report.in_use {
                msg.say(format!("kept {name}: in use"));
            }
            let verb = if a.dry_run { "would remove" } else { "removed" };
            msg.say(format!(
                "{verb} {}, kept {} in use and {} younger than {}.",
                report.removed.len(),
                report.in_use.len(),
                report.kept,
                a.older_than
            ));
            Ok(Outcome::Ok)
        }
    }
}

/// The builder `create` and `fill` use, and the migrations directory it was given.
fn builder(server: &str, a: &CreateArgs) -> Result<(TestDbBuilder, Option<PathBuf>)> {
    let mut b = TestDbBuilder::new(server)
        .fixtures(a.paths.iter().cloned())
        .mode(a.mode.into());
    let migrations = match (&a.migrations, a.migrate) {
        (Some(d), _) => Some(d.clone()),
        (None, true) => Some(dbfixtures::migrate::find_from_current_dir(
            dbfixtures::DatabaseUrl::parse(server)?.backend(),
        )?),
        (None, false) => None,
    };
    if let Some(d) = &migrations {
        b = b.migrations(d);
    }
    if let Some(p) = &a.prefix {
        b = b.prefix(p);
    }
    if let Some(n) = a.pool {
        b = b.pool(n);
    }
    Ok((b, migrations))
}

/// Starts `dbfixtures testdb fill` with `create`'s arguments, detached: null stdio (so that a
/// caller reading `create`'s output sees its end when `create` exits), never waited for. The
/// server URL (it may hold a password) goes through the environment, not the command line.
fn spawn_filler(
    server: &str,
    a: &CreateArgs,
    migrations: Option<&std::path::Path>,
    msg: &Messages,
) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut c = Command::new(exe);
    c.args(["--quiet", "testdb", "fill", "--mode"]).arg(
        a.mode
            .to_possible_value()
            .expect("no skipped variants")
            .get_name(),
    );
    if let Some(d) = migrations {
        c.arg("--migrations").arg(d);
    }
    if let Some(p) = &a.prefix {
        c.args(["--prefix", p]);
    }
    if let Some(n) = a.pool {
        c.arg("--pool").arg(n.to_string());
    }
    c.arg("--").args(&a.paths);
    // Its messages go nowhere unless DBFIXTURES_TESTDB_FILL_LOG names a file to append them to
    // (nobody reads them otherwise; a filler that fails only leaves the pool short).
    let log = std::env::var_os("DBFIXTURES_TESTDB_FILL_LOG").and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    c.env("DATABASE_URL", server)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.map_or_else(Stdio::null, Stdio::from));
    // The clone is already printed: a filler that cannot start only means the next `create`
    // clones directly.
    if let Err(e) = c.spawn() {
        msg.say(format!("could not start the pool filler: {e}"));
    }
}
