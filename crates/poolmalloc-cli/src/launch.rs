//! The launcher of `poolmalloc compare -- CMD`'s runs (`poolmalloc-exec REPORT LIB -- CMD
//! [ARGS..]`): starts CMD with LIB preloaded (`-`: nothing), waits for it with `wait4`, and
//! writes its exit status, wall time, user and system time and peak RSS to the file REPORT.
//!
//! It is a binary of its own, and a small one, because Linux counts in a program's peak RSS the
//! memory of the process that started it (the memory it had when it called `exec`): `compare`
//! itself links every allocator and has a few MiB resident, this launcher much less.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The launcher's file name, beside `poolmalloc`.
pub const LAUNCHER: &str = "poolmalloc-exec";

/// The LIB argument for "nothing preloaded" (the system allocator).
pub const NO_LIBRARY: &str = "-";

/// What one run measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The exit code, or 128 + the signal that ended the run, as shells give it.
    pub code: i32,
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
    /// Bytes: the largest resident set of the program and of the children it waited for.
    pub peak_rss: u64,
}

impl Report {
    /// `code wall_ns user_ns sys_ns peak_rss_bytes`.
    pub fn to_line(&self) -> String {
        format!(
            "{} {} {} {} {}\n",
            self.code,
            self.wall.as_nanos(),
            self.user.as_nanos(),
            self.sys.as_nanos(),
            self.peak_rss
        )
    }

    pub fn from_line(line: &str) -> Option<Report> {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        match f[..] {
            [code, wall, user, sys, peak_rss] => Some(Report {
                code: i32::try_from(code).ok()?,
                wall: Duration::from_nanos(wall),
                user: Duration::from_nanos(user),
                sys: Duration::from_nanos(sys),
                peak_rss,
            }),
            _ => None,
        }
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// Runs the command and writes its report; returns the launcher's exit status: 0, or 127 when
/// the command cannot be run (the reason is on stderr) or the report cannot be written.
pub fn exec(report: &Path, lib: &str, command: &[String]) -> i32 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("{LAUNCHER}: no command");
        return 127;
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    match lib {
        NO_LIBRARY => cmd.env_remove("LD_PRELOAD"),
        lib => cmd.env("LD_PRELOAD", lib),
    };
    let started = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot run {program}: {e}");
            return 127;
        }
    };
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: all-zero bytes are a valid `rusage` (integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child, not yet reaped (`Child::wait` is never called, and
        // dropping a `Child` does not reap it); both pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            eprintln!("waiting for {program}: {e}");
            return 127;
        }
    }
    let figures = Report {
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        },
        wall: started.elapsed(),
        user: timeval(usage.ru_utime),
        sys: timeval(usage.ru_stime),
        // ru_maxrss is in KiB on Linux.
        peak_rss: usage.ru_maxrss as u64 * 1024,
    };
    match std::fs::write(report, figures.to_line()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot write {}: {e}", report.display());
            127
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back() {
        let r = Report {
            code: 139,
            wall: Duration::from_nanos(1500),
            user: Duration::from_micros(20),
            sys: Duration::from_micros(30),
            peak_rss: 4096,
        };
        assert_eq!(Report::from_line(&r.to_line()), Some(r));
        assert_eq!(Report::from_line("3 1500\n"), None);
        assert_eq!(Report::from_line("3 x 1 1 1\n"), None);
    }

    #[test]
    fn exec_reports_the_status_and_the_peak() {
        let path = std::env::temp_dir().join(format!("pm-launch-test-{}", std::process::id()));
        let cmd = ["sh", "-c", "exit 5"].map(String::from);
        assert_eq!(exec(&path, NO_LIBRARY, &cmd), 0);
        let r = Report::from_line(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(r.code, 5);
        assert!(r.peak_rss > 0 && r.wall > Duration::ZERO, "{r:?}");
        let missing = ["/nonexistent/program".to_string()];
        assert_eq!(exec(&path, NO_LIBRARY, &missing), 127);
        let _ = std::fs::remove_file(&path);
    }
}
