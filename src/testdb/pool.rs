//! The background filler of a [`super::TestDbBuilder`]'s pool of ready clones: one thread per
//! builder, started by its first `create`, woken after every claim to top the pool up.
//!
//! Invariants:
//! - The thread owns its admin connection (it holds a session advisory lock while filling, which
//!   must not end up on a pooled connection).
//! - It never blocks a test: a kick is a channel send; when another filler (thread or process)
//!   holds the lock the thread does nothing, as that one re-counts after it releases the lock.
//! - Dropping the builder stops the thread between two `CREATE DATABASE` and waits for it, so a
//!   dropped builder leaves no member half-made. A builder in a `static` is never dropped: at
//!   process exit a member may be left without its comment, which the next filler or `prune`
//!   drops (see `pg.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{pg, Server, Strategy};
use crate::backend::Connection;
use crate::error::{Error, Result};

/// What the filler fills (owned copies of the builder's settings).
pub(crate) struct Job {
    pub prefix: String,
    pub key: String,
    pub strategy: Strategy,
    pub size: usize,
}

impl Job {
    fn as_pg(&self) -> pg::FillJob<'_> {
        pg::FillJob {
            prefix: &self.prefix,
            key: &self.key,
            strategy: self.strategy,
            size: self.size,
        }
    }
}

pub(crate) struct Filler {
    kick: Option<mpsc::Sender<()>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Filler {
    /// Starts the thread (PostgreSQL only: SQLite keeps no pool) and kicks it once.
    pub fn start(server: Arc<Server>, job: Job) -> Filler {
        let (tx, rx) = mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match &*server {
            Server::Pg(_) => {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name("dbfixtures-testdb-pool".into())
                    .spawn(move || run(&server, &job, &rx, &stop))
                    .ok()
            }
            Server::Sqlite(_) => None,
        };
        let filler = Filler {
            kick: Some(tx),
            stop,
            thread,
        };
        filler.kick();
        filler
    }

    /// Asks the thread to top the pool up (returns at once).
    pub fn kick(&self) {
        if let Some(tx) = &self.kick {
            let _ = tx.send(());
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.kick.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(server: &Server, job: &Job, rx: &mpsc::Receiver<()>, stop: &AtomicBool) {
    let Server::Pg(pg) = server else { return };
    let mut conn: Option<Connection> = None;
    while rx.recv().is_ok() {
        // Kicks that came while filling are one refill.
        while rx.try_recv().is_ok() {}
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = fill_once(pg, &mut conn, job, stop) {
            // A broken connection is not reused.
            conn = None;
            match e {
                // The template was pruned: the builder rebuilds it on its next create.
                Error::Database { ref message, .. } if message.contains("does not exist") => {}
                e => eprintln!("dbfixtures testdb: filling the pool of ready clones: {e}"),
            }
        }
    }
}

fn fill_once(
    pg: &pg::Server,
    conn: &mut Option<Connection>,
    job: &Job,
    stop: &AtomicBool,
) -> Result<()> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(pg.connect_admin()?),
    };
    pg.fill(c, &job.as_pg(), false, stop).map(|_| ())
}

/// Fills the pool now, on a connection of its own (`TestDbBuilder::fill_pool`).
pub(crate) fn fill_now(server: &Server, job: &Job, wait: bool) -> Result<Option<usize>> {
    match server {
        Server::Pg(pg) => {
            let mut conn = pg.connect_admin()?;
            pg.fill(&mut conn, &job.as_pg(), wait, &AtomicBool::new(false))
        }
        // No pool on SQLite (a clone is a file copy, as fast as a claim would be).
        Server::Sqlite(_) => Ok(Some(0)),
    }
}
