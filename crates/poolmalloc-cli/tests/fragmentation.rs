//! `poolmalloc stats --fragmentation`: the seed scenario step by step, in JSON (every number
//! checked against the same step's stats report) and as text.

use std::process::{Command, Output};

use serde_json::Value;

/// Enough objects for two arenas' worth of one-byte blocks, so one arena goes back at the end.
const K: usize = 300;

fn poolmalloc(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_poolmalloc"))
        .args(args)
        .output()
        .expect("run poolmalloc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn n(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not a whole number"))
}

#[test]
fn json_steps_agree_with_the_stats_report() {
    let o = poolmalloc(&["stats", "--fragmentation", "--json", "--k", &K.to_string()]);
    let doc: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    for s in steps {
        let (st, fr) = (&s["stats"], &s["fragmentation"]);
        assert_eq!(fr["identity_holds"], true, "{}", s["step"]);
        assert_eq!(n(&fr["pools"]["in_use"]), n(&st["pools_in_use"]));
        assert_eq!(n(&fr["pools"]["empty"]), n(&st["pools_empty"]));
        assert_eq!(n(&fr["arenas"]["mapped"]), n(&st["arenas"]["mapped"]));
        assert_eq!(n(&fr["bytes"]["mapped"]), n(&st["bytes"]["mapped"]));
        let by_class = |doc: &Value, key: &str| -> Vec<(u64, u64)> {
            doc["classes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (n(&c["class"]), n(&c[key])))
                .collect()
        };
        assert_eq!(by_class(fr, "blocks_out"), by_class(st, "blocks_out"));
    }

    // After freeing 511 of each 512: every pool in use is pinned by survivors.
    let (st, fr) = (&steps[1]["stats"], &steps[1]["fragmentation"]);
    let pools = n(&st["pools_in_use"]);
    assert!(pools > 0);
    assert_eq!(n(&fr["pools"]["sparse"]), pools);
    assert_eq!(
        n(&fr["bytes"]["pinned"]),
        pools * n(&fr["pool_size"]),
        "pinned bytes are whole pools"
    );
    assert_eq!(n(&fr["blocks"]["out_sparse"]), n(&fr["blocks"]["out"]));
    let live = n(&st["classes"][0]["blocks_out"]);
    assert_eq!(live, K as u64, "one survivor of each 512");
    let mapped = n(&fr["arenas"]["mapped"]);
    assert!(mapped >= 2, "the scenario spans arenas");
    assert_eq!(n(&fr["arenas"]["could_go_back"]), mapped);
    let predicted = n(&fr["bytes"]["back_if_sparse_emptied"]);
    assert_eq!(
        predicted,
        (mapped - n(&fr["reserve_arenas"])) * n(&fr["arena_size"])
    );

    // After freeing the survivors: exactly the predicted bytes went back.
    let last = &steps[2]["fragmentation"];
    assert_eq!(n(&last["pools"]["in_use"]), 0);
    assert_eq!(
        n(&fr["bytes"]["mapped"]) - n(&last["bytes"]["mapped"]),
        predicted
    );
    assert_eq!(n(&last["arenas"]["mapped"]), n(&last["reserve_arenas"]));
}

#[test]
fn text_tells_the_scenario_step_by_step() {
    let o = poolmalloc(&["stats", "--fragmentation", "--k", &K.to_string()]);
    let text = String::from_utf8(o.stdout).unwrap();
    let step = |i: usize| -> &str {
        let start = text
            .find(&format!("== step {i}:"))
            .unwrap_or_else(|| panic!("step {i} in:\n{text}"));
        let end = text[start + 1..]
            .find("== step ")
            .map_or(text.len(), |e| start + 1 + e);
        &text[start..end]
    };
    assert!(step(1).contains("pinned: none"), "{}", step(1));
    let two = step(2);
    assert!(
        two.contains(&format!("live: {K} blocks")) && two.contains("pools at most"),
        "{two}"
    );
    assert!(
        two.contains("cannot go back while those blocks live"),
        "{two}"
    );
    assert!(two.contains("Fragmentation:") && two.contains("most wasteful pools"));
    let three = step(3);
    assert!(three.contains("pools: none in use"), "{three}");
    assert!(three.contains(": as predicted"), "{three}");
}
