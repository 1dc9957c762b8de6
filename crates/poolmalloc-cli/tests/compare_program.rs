//! `poolmalloc compare -- CMD`: a program under every allocator found. Needs
//! `libpoolmalloc_capi.so` beside the binary (`cargo xtask test` builds it); peers' libraries are
//! used where installed (`.ci/run` installs them when it can) and reported "not installed"
//! otherwise, so every test holds either way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn poolmalloc(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolmalloc"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run poolmalloc")
}

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `compare --quick --out DIR [options] -- command`: its output and compare.json.
fn compare(
    name: &str,
    options: &[&str],
    command: &[&str],
    env: &[(&str, &str)],
) -> (Output, Value) {
    let dir = out_dir(name);
    let mut args = vec!["compare", "--quick", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(options);
    args.push("--");
    args.extend_from_slice(command);
    let o = poolmalloc(&args, env);
    let json = std::fs::read(dir.join("compare.json"))
        .unwrap_or_else(|e| panic!("no compare.json ({e}): {}", text(&o.stderr)));
    (o, serde_json::from_slice(&json).expect("valid JSON"))
}

fn names(doc: &Value) -> Vec<String> {
    doc["allocators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn row<'a>(doc: &'a Value, case: &str) -> &'a Value {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["case"] == case)
        .unwrap_or_else(|| panic!("no row {case}: {doc}"))
}

/// Every allocator has `reps` samples of every figure.
fn assert_every_allocator_timed(doc: &Value, case: &str, reps: usize) {
    for figure in ["wall", "user", "sys", "peak-rss"] {
        let r = row(doc, &format!("{case}/{figure}"));
        for a in names(doc) {
            let samples = r["results"][&a]["samples"]
                .as_array()
                .unwrap_or_else(|| panic!("{figure} on {a}: {r}"));
            assert_eq!(samples.len(), reps, "{figure} on {a}");
            assert!(samples.iter().all(|s| s.as_f64().unwrap() >= 0.0));
        }
    }
}

#[test]
fn true_runs_under_every_allocator_found() {
    let (o, doc) = compare("program-true", &[], &["true"], &[]);
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}{}", text(&o.stderr));
    let allocators = names(&doc);
    assert_eq!(allocators[..2], ["poolmalloc", "system"]);
    // Each peer is either a column or a "not installed" note naming its package.
    let notes = doc["notes"].to_string();
    for (peer, package) in [
        ("jemalloc", "libjemalloc2"),
        ("mimalloc", "libmimalloc2.0"),
        ("tcmalloc", "libtcmalloc-minimal4"),
    ] {
        let column = allocators.iter().any(|a| a == peer);
        let noted = notes.contains(&format!("not installed: {peer}")) && notes.contains(package);
        assert!(
            column != noted,
            "{peer}: column {column}, noted {noted}: {notes}"
        );
        if column {
            let lib = doc["libraries"][peer].as_str().unwrap();
            assert!(Path::new(lib).is_file(), "{lib}");
        }
    }
    assert_eq!(doc["libraries"]["system"], Value::Null);
    assert_every_allocator_timed(&doc, "true", 3);
    assert!(doc["failures"].as_array().unwrap().is_empty());
    assert!(
        stdout.contains("true/peak-rss") && stdout.contains("cores"),
        "{stdout}"
    );
}

#[test]
fn a_command_that_fails_under_the_system_allocator_fails_everywhere() {
    let (o, doc) = compare("program-exit-3", &[], &["sh", "-c", "exit 3"], &[]);
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    let failures = doc["failures"].as_array().unwrap();
    assert_eq!(failures.len(), names(&doc).len(), "{stdout}");
    for f in failures {
        assert!(
            f["message"].as_str().unwrap().contains("exit status 3"),
            "{f}"
        );
    }
    assert!(
        doc["rows"].as_array().unwrap().is_empty(),
        "no figures for failed runs"
    );
    assert!(
        stdout.contains("FAILED: sh on system: exit status 3"),
        "{stdout}"
    );
    assert!(stdout.contains("sh -c 'exit 3'"), "{stdout}");
}

#[test]
fn output_is_compared_only_when_asked() {
    // The preloaded library's path is printed, so only the system allocator's output is empty.
    let cmd = ["sh", "-c", "echo \"$LD_PRELOAD\""];
    let (o, doc) = compare("program-output", &["--reps", "1"], &cmd, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert!(doc["failures"].as_array().unwrap().is_empty());
    let (o, doc) = compare("program-check-output", &["--check-output"], &cmd, &[]);
    assert_eq!(o.status.code(), Some(1));
    let failed: Vec<&str> = doc["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["message"]
                .as_str()
                .unwrap()
                .contains("standard output differs"));
            f["allocator"].as_str().unwrap()
        })
        .collect();
    let preloaded: Vec<String> = names(&doc).into_iter().filter(|a| a != "system").collect();
    assert_eq!(failed, preloaded);
    assert_every_allocator_timed_only(&doc, "sh", "system");
}

/// Only `allocator` has figures.
fn assert_every_allocator_timed_only(doc: &Value, case: &str, allocator: &str) {
    let r = &row(doc, &format!("{case}/wall"))["results"];
    let timed: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(timed, [allocator]);
}

#[test]
fn a_missing_program_exits_127_naming_it() {
    let o = poolmalloc(&["compare", "--quick", "--", "/nonexistent/program"], &[]);
    assert_eq!(o.status.code(), Some(127));
    let err = text(&o.stderr);
    assert!(err.contains("cannot run /nonexistent/program"), "{err}");
    let o = poolmalloc(
        &["compare", "--quick", "--", "no-such-program-anywhere"],
        &[],
    );
    assert_eq!(o.status.code(), Some(127), "{}", text(&o.stderr));
}

#[test]
fn a_lib_that_does_not_exist_is_named() {
    let o = poolmalloc(
        &[
            "compare",
            "--lib",
            "jemalloc=/nonexistent/libjemalloc.so.2",
            "--",
            "true",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("--lib jemalloc=/nonexistent/libjemalloc.so.2")
            && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn peers_not_installed_are_listed_and_lib_adds_a_column() {
    let empty = out_dir("no-peer-libraries");
    std::fs::create_dir_all(&empty).unwrap();
    // poolmalloc's own library again, under another name.
    let ours = Path::new(env!("CARGO_BIN_EXE_poolmalloc"))
        .with_file_name("libpoolmalloc_capi.so")
        .display()
        .to_string();
    let lib = format!("again={ours}");
    let (o, doc) = compare(
        "program-lib",
        &["--reps", "1", "--lib", &lib],
        &["true"],
        &[("POOLMALLOC_LIB_DIRS", empty.to_str().unwrap())],
    );
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert_eq!(names(&doc), ["poolmalloc", "system", "again"]);
    assert_eq!(doc["libraries"]["again"], ours.as_str());
    for package in ["libjemalloc2", "libmimalloc2.0", "libtcmalloc-minimal4"] {
        assert!(stdout.contains(package), "{package}: {stdout}");
    }
    assert_every_allocator_timed(&doc, "true", 1);
}

#[test]
fn python_builds_and_frees_a_million_objects_under_every_allocator() {
    let script = "x = [str(i) for i in range(1_000_000)]\ndel x\nb = bytearray(64 << 20)";
    let (o, doc) = compare(
        "program-python",
        &["--reps", "1", "--env", "PYTHONMALLOC=malloc"],
        &["python3", "-c", script],
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_every_allocator_timed(&doc, "python3", 1);
    assert_eq!(
        doc["program"]["env"],
        serde_json::json!(["PYTHONMALLOC=malloc"])
    );
    // The peak is the program's own: it holds a 64 MiB buffer.
    let peak = &row(&doc, "python3/peak-rss")["results"];
    for a in names(&doc) {
        assert!(peak[&a]["median"].as_f64().unwrap() >= 64.0, "{a}: {peak}");
    }
    // poolmalloc's library served the run: its own report, from the warm-up run.
    let stats = &doc["poolmalloc_stats"];
    assert!(
        stats["arenas"]["mapped_ever"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let blocks: u64 = stats["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["blocks_out"].as_u64().unwrap())
        .sum();
    assert!(blocks > 0, "{stats}");
    assert_eq!(stats["identity_holds"], true);
    assert!(text(&o.stdout).contains("poolmalloc served the warm-up run"));
}

#[test]
fn threads_give_one_row_per_count() {
    let dir = out_dir("compare-threads");
    let o = poolmalloc(
        &[
            "compare",
            "--quick",
            "--reps",
            "1",
            "--workloads",
            "cache-thrash,xmalloc",
            "--allocators",
            "system,poolmalloc",
            "--threads",
            "1,3",
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.join("compare.json")).unwrap()).unwrap();
    let cases: Vec<&str> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["case"].as_str().unwrap())
        .collect();
    // xmalloc needs a producer and a consumer: 1 thread runs as 2. The counts reach the fresh
    // process each repetition runs in, and each row has its peak RSS beside it.
    assert_eq!(
        cases,
        [
            "cache-thrash/1t",
            "cache-thrash/1t/peak-rss",
            "cache-thrash/3t",
            "cache-thrash/3t/peak-rss",
            "xmalloc/2t",
            "xmalloc/2t/peak-rss",
            "xmalloc/3t",
            "xmalloc/3t/peak-rss",
        ]
    );
    let rows = doc["rows"].as_array().unwrap();
    let peak = rows
        .iter()
        .find(|r| r["case"] == "xmalloc/3t/peak-rss")
        .unwrap();
    assert_eq!(peak["unit"], "MiB");
    for a in ["system", "poolmalloc"] {
        let mib = peak["results"][a]["median"].as_f64().unwrap();
        // The blocks in flight and the threads' stacks: more than nothing, far less than this.
        assert!(mib > 0.0 && mib < 256.0, "{a}: {mib} MiB");
    }
    assert!(doc["cores"].as_u64().unwrap() >= 1);
}
