//! `poolmalloc run`: the command runs with the C library preloaded, prints poolmalloc's report
//! when it exits, and its exit status passes through. Needs `libpoolmalloc_capi.so` beside the
//! binary, which a workspace build (`cargo xtask test`) provides.

use std::process::{Command, Output};

fn poolmalloc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolmalloc"))
        .args(args)
        .output()
        .expect("run poolmalloc")
}

#[test]
fn run_true_prints_a_report() {
    let out = poolmalloc(&["run", "--", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Small block threshold = 512"), "{stderr}");
    assert!(stderr.contains("# arenas allocated total"), "{stderr}");
}

#[test]
fn run_passes_the_exit_status_through() {
    let out = poolmalloc(&["run", "--stats", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let killed = poolmalloc(&["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.code(), Some(128 + 15));
}

#[test]
fn run_json_reports_what_poolmalloc_served() {
    let out = poolmalloc(&[
        "run",
        "--json",
        "--",
        "python3",
        "-c",
        "x = [str(i) for i in range(10000)]",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json = stderr
        .lines()
        .find(|l| l.starts_with("{\"classes\":"))
        .expect("a JSON report");
    assert!(json.contains("\"identity_holds\":true"), "{json}");
    assert!(
        !json.contains("\"mapped_ever\":0,"),
        "poolmalloc served nothing: {json}"
    );
}

#[test]
fn run_rejects_bad_arguments() {
    let none = poolmalloc(&["run"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("run needs a command"));
    let bad = poolmalloc(&["run", "--loud", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2));
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        text.contains("'--loud'") && text.contains("--stats, --json"),
        "{text}"
    );
    let missing = poolmalloc(&["run", "--", "/nonexistent/program"]);
    assert_eq!(missing.status.code(), Some(127));
}
