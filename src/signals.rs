//! The stop signals of `train`, `finetune` and `sweep`: SIGINT (Ctrl-C), SIGTERM (`kill`,
//! Slurm's `scancel`, a job's time limit, preemption), SIGHUP (the terminal closed) and SIGUSR1
//! (what `sbatch --signal=B:USR1@60` sends ahead of the time limit) all ask the run to save its
//! training state at the next step boundary and exit with [`INTERRUPTED_STATUS`]; a sweep passes
//! the stop on to its running trials (see `sweep::jobs`).
//!
//! A second signal leaves at once with the same status through `_exit(2)`: it runs no exit
//! handlers, because libtorch's static destructors running under threads that are still
//! computing (the final evaluation, say) crash the process (SIGSEGV, or a panic `Invalid
//! (backend, op) pair`). Every file a run writes is written atomically, so the last saved state
//! stays whole. The handler itself only swaps an atomic, writes to a pipe or to stderr and calls
//! `_exit`, all async-signal-safe (signal-safety(7)); a thread reads the pipe and prints the
//! notice through the log writer, so that progress bars do not draw over it.

use std::{
    io::{Read, Write},
    os::fd::FromRawFd,
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
};

/// The exit status of a run (or sweep) stopped by a signal after saving its state: resumable
/// with `train --resume DIR` (or the same `sweep` command). 128 + SIGINT, as a shell reports a
/// Ctrl-C, whichever of the signals below stopped it.
pub const INTERRUPTED_STATUS: u8 = 130;

/// The signals handled, with their names.
pub const STOP_SIGNALS: [(libc::c_int, &str); 4] =
    [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP"), (libc::SIGUSR1, "SIGUSR1")];

/// Set by the first stop signal.
static STOP: AtomicBool = AtomicBool::new(false);
/// The write end of the notice pipe, or -1.
static NOTICE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        const MSG: &[u8] = b"\nsecond stop signal: exiting now; the last saved state is kept\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a static buffer.
        unsafe {
            libc::write(libc::STDERR_FILENO, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(libc::c_int::from(INTERRUPTED_STATUS));
        }
    }
    let fd = NOTICE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; `byte` lives for the call.
        unsafe {
            libc::write(fd, (&raw const byte).cast(), 1);
        }
    }
}

fn name(signal: libc::c_int) -> &'static str {
    STOP_SIGNALS.iter().find(|(s, _)| *s == signal).map_or("a stop signal", |(_, n)| n)
}

/// Installs the handler for the [`STOP_SIGNALS`] (SIGHUP only where it is not ignored, as
/// `nohup` leaves it) and returns the flag the first one sets: training saves its state after
/// the current step and returns [`crate::Error::Interrupted`]. Call once, from `main`; a
/// signal that cannot be handled is logged as a warning (it then ends the process as before).
pub fn install() -> &'static AtomicBool {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 fills the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
        // SAFETY: the read end was just opened and is owned by this File alone.
        let mut notices = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        NOTICE_FD.store(fds[1], Ordering::SeqCst);
        let spawned = std::thread::Builder::new().name("stop-signals".into()).spawn(move || {
            let mut byte = [0u8];
            while notices.read_exact(&mut byte).is_ok() {
                let _ = writeln!(
                    crate::report::progress::LogWriter,
                    "\n{}: saving the training state after this step (a second signal quits at once)",
                    name(libc::c_int::from(byte[0]))
                );
            }
        });
        if spawned.is_err() {
            NOTICE_FD.store(-1, Ordering::SeqCst);
        }
    }
    for (signal, signal_name) in STOP_SIGNALS {
        // SAFETY: sigaction with a zeroed struct (no flags but SA_RESTART, empty mask) and a
        // handler that is async-signal-safe (see the module documentation).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if signal == libc::SIGHUP && libc::sigaction(signal, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                tracing::warn!("no {signal_name} handler ({}): that signal will lose the epoch in progress", std::io::Error::last_os_error());
            }
        }
    }
    &STOP
}
