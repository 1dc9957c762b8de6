//! `poolmalloc stats [--json]`: the seed scenario on poolmalloc, with the stats report after
//! each step. The objects come from `poolmalloc::PoolMalloc` called as a value (this binary's own
//! global allocator is System), so the report shows the scenario's blocks and nothing else.

use std::alloc::{GlobalAlloc, Layout};

use poolmalloc::{CoreStats, Fragmentation, PoolMalloc};
use poolmalloc_workloads::rss::rss_bytes;
use serde_json::{json, Value};

/// One step of the scenario and the report after it.
pub struct Step {
    pub name: &'static str,
    pub rss: usize,
    pub stats: CoreStats,
    /// The fragmentation snapshot, taken right after `stats` (`stats --fragmentation`).
    pub frag: Fragmentation,
}

/// Plays the scenario: 512·k one-byte objects, free 511 of each 512, free the rest, collect.
pub fn scenario(k: usize) -> Result<Vec<Step>, String> {
    let one = Layout::from_size_align(1, 1).expect("valid layout");
    let a = PoolMalloc;
    let mut steps = Vec::new();
    let mut objects = Vec::with_capacity(512 * k);
    for i in 0..512 * k {
        // SAFETY: a non-zero layout.
        let p = unsafe { a.alloc(one) };
        if p.is_null() {
            return Err(format!("out of memory after {i} objects"));
        }
        objects.push(p);
    }
    steps.push(Step {
        name: "allocated 512·k one-byte objects",
        rss: rss_bytes(),
        stats: poolmalloc::stats(),
        frag: poolmalloc::fragmentation(),
    });
    let mut survivors = Vec::with_capacity(k);
    for (i, &p) in objects.iter().enumerate() {
        if i % 512 == 0 {
            survivors.push(p);
        } else {
            // SAFETY: allocated above with `one`, freed once.
            unsafe { a.dealloc(p, one) };
        }
    }
    steps.push(Step {
        name: "freed 511 of each 512",
        rss: rss_bytes(),
        stats: poolmalloc::stats(),
        frag: poolmalloc::fragmentation(),
    });
    for p in survivors {
        // SAFETY: each survivor was allocated above with `one` and not freed in the loop, so it
        // is freed once, here.
        unsafe { a.dealloc(p, one) };
    }
    poolmalloc::collect();
    steps.push(Step {
        name: "freed the survivors and collect()",
        rss: rss_bytes(),
        stats: poolmalloc::stats(),
        frag: poolmalloc::fragmentation(),
    });
    Ok(steps)
}

pub fn text(k: usize, steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        out += &format!(
            "== {} (k = {k}): {} pools in use, {} bytes mapped, RSS {:.1} MiB ==\n{}\n",
            s.name,
            s.stats.pools_in_use(),
            s.stats.bytes_mapped(),
            s.rss as f64 / (1024.0 * 1024.0),
            s.stats
        );
    }
    out
}

/// The snapshot as `CoreStats::write_json` writes it (one JSON writer for every face).
pub fn stats_json(s: &CoreStats) -> Value {
    parsed(|out| s.write_json(out))
}

/// What one of the core's hand-written JSON writers writes, parsed to sit in the CLI's document.
pub fn parsed(write: impl FnOnce(&mut String) -> std::fmt::Result) -> Value {
    let mut text = String::new();
    write(&mut text).expect("writing to a String");
    serde_json::from_str(&text).expect("the core's JSON writers write JSON")
}

pub fn json(k: usize, steps: &[Step]) -> Value {
    json!({
        "scenario": {"k": k, "objects": 512 * k, "object_size": 1},
        "steps": steps.iter().map(|s| json!({
            "step": s.name,
            "rss_bytes": s.rss,
            "stats": stats_json(&s.stats),
        })).collect::<Vec<_>>(),
    })
}
