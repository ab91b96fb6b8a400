//! Signals, for the binary only: an interrupted run ends like any other failed run, with one
//! message and exit code 2.
//!
//! - SIGINT / SIGTERM: print one error line and exit 2 at once. Nothing is committed: a load's
//!   transaction only commits when its last statement succeeded, and the server rolls back an
//!   open transaction whose connection goes away (a backend busy in a long statement notices when
//!   the statement ends). Waiting for the main thread instead would wait for that statement.
//!   A dump's unfinished temporary files are deleted first, so no partial output is left.
//! - SIGXFSZ (the file-size limit, `ulimit -f`): ignored, so the write that crosses the limit
//!   fails with EFBIG and is reported as an I/O error naming the file, and the dump's temporary
//!   file is removed, instead of the process being killed with a half-written file left behind.

pub(crate) fn install() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN runs no handler code; done once, at
    // start-up, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Fails only when a handler is already installed, which is never the case here.
    let _ = ctrlc::set_handler(|| {
        // A dump's `-o FILE` must not leave its temporary file behind either.
        dbfixtures::dump::remove_unfinished_files();
        eprintln!("error: interrupted: stopped before committing anything");
        std::process::exit(2);
    });
}
