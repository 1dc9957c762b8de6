//! Set-up when the library is loaded: fork handlers, the allocator's own start-up (the C
//! library's `malloc_usable_size`), the mode (`mode`), and `POOLMALLOC_STATS`.

use core::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use poolmalloc::internal::capi;

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

/// What `POOLMALLOC_STATS` asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    Text,
    Json,
}

static REPORT: AtomicUsize = AtomicUsize::new(0);

extern "C" fn init() {
    extern "C" fn prepare() {
        capi::fork_prepare();
    }
    extern "C" fn parent() {
        // SAFETY: `prepare` ran on this thread just before `fork`.
        unsafe { capi::fork_parent() }
    }
    extern "C" fn child() {
        // SAFETY: `prepare` ran on the thread that forked, which this child continues.
        unsafe { capi::fork_child() }
    }
    // SAFETY: registering handlers that stay valid for the process's life.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    capi::start();
    crate::mode::mode();
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
