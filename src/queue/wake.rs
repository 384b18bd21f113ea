//! Waking a worker blocked in `recv` on its queue socket.
//!
//! nfq 0.2.5 keeps its socket's fd private, so a worker cannot poll it alongside a stop signal.
//! Instead the main thread sends the worker thread a signal whose handler does nothing and is
//! installed without `SA_RESTART`: the blocked `recv` returns `EINTR` and the worker sees the
//! stop flag.

use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::thread::JoinHandle;

/// The signal used to interrupt workers.
const WAKE_SIGNAL: libc::c_int = libc::SIGUSR1;

extern "C" fn ignore(_: libc::c_int) {}

/// Installs the no-op handler (once, before workers start).
pub fn install() -> io::Result<()> {
    // SAFETY: sigaction is a plain C struct; all-zero is a valid starting value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = 0; // no SA_RESTART: blocked syscalls return EINTR
    // SAFETY: action is fully initialised and the handler is async-signal-safe (it does nothing).
    let rc = unsafe { libc::sigaction(WAKE_SIGNAL, &raw const action, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Interrupts `thread` if it is blocked in a syscall.
pub fn wake<T>(thread: &JoinHandle<T>) {
    // SAFETY: the handle is not joined yet, so its pthread_t names a live (or just finished but
    // unjoined) thread, which pthread_kill accepts.
    unsafe { libc::pthread_kill(thread.as_pthread_t(), WAKE_SIGNAL) };
}
