//! The library's mode (`poolmalloc::internal::capi::Mode`): `POOLMALLOC_DEBUG=1` → debug mode,
//! `POOLMALLOC_SECURE=1` → secure mode, else plain. Read once, at the library's first call (at
//! the latest at load, from `init`), before any block is handed out, and never changed, since a
//! block laid out in one mode must be freed in the same mode.
//!
//! The byte lives in this crate so that each entry point reads it with one instruction: a static
//! of another crate is reached through the GOT.

use core::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering};

use poolmalloc::internal::capi::Mode;
use poolmalloc::internal::{env_setting, warn_setting};

/// The mode's `u8`; 0 until decided.
static MODE: AtomicU8 = AtomicU8::new(0);

/// The library's mode: one compare on the plain path, the rest out of line.
#[inline(always)]
pub(crate) fn mode() -> Mode {
    if MODE.load(Ordering::Relaxed) == Mode::Plain as u8 {
        Mode::Plain
    } else {
        checked_or_undecided()
    }
}

#[inline(never)]
fn checked_or_undecided() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::Plain,
        2 => Mode::Secure,
        3 => Mode::Debug,
        _ => decide(),
    }
}

/// Reads `POOLMALLOC_DEBUG` and `POOLMALLOC_SECURE`. Allocates nothing: it may run inside the
/// first `malloc`.
#[cold]
#[inline(never)]
fn decide() -> Mode {
    let debug = setting(c"POOLMALLOC_DEBUG");
    let secure = setting(c"POOLMALLOC_SECURE");
    let mode = match (debug, secure) {
        (Ok(true), _) => Mode::Debug,
        (_, Ok(true)) => Mode::Secure,
        _ => Mode::Plain,
    };
    // Two threads deciding at once read the same environment: the first one's stands, and only
    // it warns.
    match MODE.compare_exchange(0, mode as u8, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => {
            for (name, value) in [("POOLMALLOC_DEBUG", debug), ("POOLMALLOC_SECURE", secure)] {
                if let Err(value) = value {
                    warn_setting(name, value, "one of 1, 0");
                }
            }
            mode
        }
        Err(_) => checked_or_undecided(),
    }
}

/// A switch's value: unset, empty or `0` is off, `1` on, anything else the bad value.
fn setting(name: &CStr) -> Result<bool, &'static [u8]> {
    match env_setting(name) {
        None | Some(b"0") => Ok(false),
        Some(b"1") => Ok(true),
        Some(other) => Err(other),
    }
}
