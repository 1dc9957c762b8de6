//! The `poolmalloc` binary end to end: argument errors, `stats`, and small `compare` runs
//! (debug build, so only a few workloads and allocators; `cargo xtask test` runs the full
//! `compare --quick` in release).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn poolmalloc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolmalloc"))
        .args(args)
        .output()
        .expect("run poolmalloc")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_arguments_exit_2_naming_the_value_and_the_allowed_ones() {
    for (args, bad, allowed) in [
        (
            &["compare", "--workloads", "pair,warp"][..],
            "'warp'",
            "cache-scratch",
        ),
        (
            &["compare", "--allocators", "tcmalloc"],
            "'tcmalloc'",
            "mimalloc",
        ),
        (&["compare", "--turbo"], "'--turbo'", "--allocators"),
        (&["compare", "--reps", "many"], "'many'", "whole number"),
        (&["launch"], "'launch'", "compare, stats"),
        (&["stats", "--xml"], "'--xml'", "--json"),
    ] {
        let o = poolmalloc(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(bad) && err.contains(allowed),
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

fn stats_json(k: usize) -> Value {
    let o = poolmalloc(&["stats", "--json", "--k", &k.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("stats --json prints JSON")
}

#[test]
fn stats_json_adds_up_and_follows_the_scenario() {
    let k = 64;
    let doc = stats_json(k);
    assert_eq!(doc["scenario"]["objects"], 512 * k);
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    let n = |v: &Value| v.as_u64().unwrap();
    for s in steps {
        let st = &s["stats"];
        let b = &st["bytes"];
        let parts = n(&b["in_blocks_out"])
            + n(&b["free_in_pools"])
            + n(&b["empty_pools"])
            + n(&b["pool_headers"])
            + n(&b["quantization"]);
        assert_eq!(parts, n(&b["mapped"]), "{}: parts vs mapped", s["step"]);
        assert_eq!(st["identity_holds"], true);
        let in_use: u64 = st["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| n(&c["blocks_out"]) * n(&c["block_size"]))
            .sum();
        assert_eq!(in_use, n(&b["in_blocks_out"]), "{}", s["step"]);
    }
    let in_use = |i: usize| n(&steps[i]["stats"]["bytes"]["in_blocks_out"]);
    // One-byte objects live in 8-byte blocks: all of them, then one in 512, then none.
    assert_eq!(in_use(0), 8 * 512 * k as u64);
    assert_eq!(in_use(1), 8 * k as u64);
    assert_eq!(in_use(2), 0);
    let pools = |i: usize| n(&steps[i]["stats"]["pools_in_use"]);
    assert!(pools(1) <= pools(0) && pools(1) >= 1);
}

#[test]
fn stats_text_is_the_report() {
    let o = poolmalloc(&["stats", "--k", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.matches("Small block threshold").count(), 3, "{text}");
    assert!(text.contains("freed 511 of each 512"), "{text}");
    assert!(!text.contains("identity broken"), "{text}");
}

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn compare(args: &[&str], dir: &Path) -> (String, Value) {
    let mut all = vec!["compare", "--quick", "--out", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = poolmalloc(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = std::fs::read(dir.join("compare.json")).expect("compare.json written");
    let svg = std::fs::read_to_string(dir.join("compare.svg")).expect("compare.svg written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        serde_json::from_slice(&json).expect("valid JSON"),
    )
}

#[test]
fn compare_reports_median_spread_and_ratio_to_the_best_peer() {
    let dir = out_dir("compare-pair");
    let (table, doc) = compare(
        &[
            "--workloads",
            "pair,pair-alone",
            "--allocators",
            "system,poolmalloc",
            "--reps",
            "2",
        ],
        &dir,
    );
    assert_eq!(doc["repetitions"], 2);
    assert_eq!(doc["peers"], serde_json::json!(["system"]));
    let rows = doc["rows"].as_array().unwrap();
    let cases: Vec<&str> = rows.iter().map(|r| r["case"].as_str().unwrap()).collect();
    assert_eq!(
        cases,
        [
            "pair/16",
            "pair/64",
            "pair/256",
            "pair-alone/16",
            "pair-alone/64",
            "pair-alone/256"
        ]
    );
    for r in rows {
        assert_eq!(r["best_peer"], "system");
        let pm = &r["results"]["poolmalloc"];
        let sys = &r["results"]["system"];
        assert_eq!(pm["samples"].as_array().unwrap().len(), 2);
        let (m, s) = (
            pm["median"].as_f64().unwrap(),
            sys["median"].as_f64().unwrap(),
        );
        let ratio = pm["ratio_to_best_peer"].as_f64().unwrap();
        assert!((ratio - m / s).abs() < 1e-9, "{r}");
        assert_eq!(sys["ratio_to_best_peer"], 1.0);
        assert!(table.contains(r["case"].as_str().unwrap()));
    }
    assert!(doc["failures"].as_array().unwrap().is_empty());
}

#[test]
fn compare_memory_figures_come_from_fresh_processes_and_global_from_child_binaries() {
    let dir = out_dir("compare-seed-global");
    let (table, doc) = compare(
        &[
            "--workloads",
            "seed,global",
            "--allocators",
            "poolmalloc,poolmalloc-heap,system",
            "--reps",
            "1",
        ],
        &dir,
    );
    let rows = doc["rows"].as_array().unwrap();
    let row = |case: &str| {
        rows.iter()
            .find(|r| r["case"] == case)
            .unwrap_or_else(|| panic!("no row {case}: {table}"))
    };
    // Only poolmalloc can count its pools; a fresh process per run gives each its own.
    let pools = &row("seed/pools-pinned")["results"];
    assert!(pools["poolmalloc"]["median"].as_f64().unwrap() >= 1.0);
    assert!(pools.get("system").is_none());
    for case in ["global/pair-64", "global/churn-1t"] {
        let r = &row(case)["results"];
        assert!(r["poolmalloc"]["median"].as_f64().unwrap() > 0.0);
        assert!(r["system"]["median"].as_f64().unwrap() > 0.0);
        assert!(
            r.get("poolmalloc-heap").is_none(),
            "a Heap is no global allocator"
        );
    }
    assert!(
        table.contains("not run: global on poolmalloc-heap"),
        "{table}"
    );
}
