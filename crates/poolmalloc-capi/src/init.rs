//! Set-up when the library is loaded: fork handlers, the C library's `malloc_usable_size` for
//! blocks that are not ours, and `POOLMALLOC_STATS`.

use core::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

use poolmalloc::raw;

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

/// glibc's own `malloc_usable_size` (ours interposes the symbol), or 0 if not found.
static LIBC_USABLE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// What `POOLMALLOC_STATS` asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    Text,
    Json,
}

static REPORT: AtomicUsize = AtomicUsize::new(0);

extern "C" fn init() {
    extern "C" fn prepare() {
        raw::fork_prepare();
    }
    extern "C" fn parent() {
        // SAFETY: `prepare` ran on this thread just before `fork`.
        unsafe { raw::fork_parent() }
    }
    extern "C" fn child() {
        // SAFETY: `prepare` ran on the thread that forked, which this child continues.
        unsafe { raw::fork_child() }
    }
    // SAFETY: registering handlers that stay valid for the process's life; RTLD_NEXT finds the
    // next `malloc_usable_size` after this library, glibc's.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
        let f = libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr());
        LIBC_USABLE_SIZE.store(f as usize, Ordering::Relaxed);
    }
    // `POOLMALLOC_DEBUG` is decided now if no allocation has decided it yet.
    #[cfg(feature = "debug")]
    crate::debug::enabled();
    if let Some(report) = report_from_env() {
        REPORT.store(report as usize + 1, Ordering::Relaxed);
        // SAFETY: registers a plain function for exit.
        unsafe { libc::atexit(report_at_exit) };
    }
}

/// Reads `POOLMALLOC_STATS`; an unknown value is named in a one-line warning and ignored.
fn report_from_env() -> Option<Report> {
    // SAFETY: getenv's result is a NUL-terminated string or null, read before anything can
    // change the environment (library set-up).
    let value = unsafe {
        let v = libc::getenv(c"POOLMALLOC_STATS".as_ptr());
        if v.is_null() {
            return None;
        }
        CStr::from_ptr(v)
    };
    match value.to_bytes() {
        b"" | b"0" => None,
        b"1" => Some(Report::Text),
        b"json" => Some(Report::Json),
        other => {
            let shown = String::from_utf8_lossy(other);
            write_stderr(&format!(
                "poolmalloc: POOLMALLOC_STATS={shown} is not one of 1, json, 0; ignored\n"
            ));
            None
        }
    }
}

extern "C" fn report_at_exit() {
    match REPORT.load(Ordering::Relaxed) {
        1 => write_stderr(&text_report()),
        2 => write_stderr(&format!("{}\n", json_report())),
        _ => {}
    }
}

pub(crate) fn text_report() -> String {
    format!(
        "poolmalloc stats (pid {})\n{}",
        std::process::id(),
        poolmalloc::stats()
    )
}

pub(crate) fn json_report() -> String {
    let mut json = String::new();
    // Writing into a String cannot fail.
    let _ = poolmalloc::stats().write_json(&mut json);
    json
}

pub(crate) fn write_stderr(text: &str) {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writes initialised bytes of `rest` to fd 2.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

/// The C library's usable size of one of its blocks (0 if glibc's function was not found).
///
/// # Safety
/// `ptr` is a live block of the C library's allocator.
pub(crate) unsafe fn libc_usable_size(ptr: *mut c_void) -> usize {
    let f = LIBC_USABLE_SIZE.load(Ordering::Relaxed);
    if f == 0 {
        return 0;
    }
    // SAFETY: non-zero values are glibc's `malloc_usable_size`, stored by `init`.
    let f: unsafe extern "C" fn(*mut c_void) -> usize = unsafe { core::mem::transmute(f) };
    // SAFETY: `ptr` is a live C-library block (precondition).
    unsafe { f(ptr) }
}
