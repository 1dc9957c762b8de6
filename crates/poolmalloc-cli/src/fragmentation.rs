//! `poolmalloc stats --fragmentation [--json]`: the seed scenario told step by step — how many
//! pools the survivors pin, the bytes they hold, which arenas cannot go back, and, once the
//! survivors are freed, what did go back — followed by each step's fragmentation report.

use poolmalloc::Fragmentation;
use poolmalloc_core::config::{FRAG_SPARSE_PERCENT, RESERVE_ARENAS};
use serde_json::Value;

use crate::stats::Step;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `n` with its digits grouped in threes, as the core's reports print them.
fn g(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// "1 arena", "3 arenas".
fn count(n: usize, what: &str) -> String {
    format!("{} {what}{}", g(n), if n == 1 { "" } else { "s" })
}

/// Plain-language lines for one step; `prev` is the step before, for what changed.
fn narrate(f: &Fragmentation, rss: usize, prev: Option<(&Fragmentation, usize)>) -> String {
    let mut out = format!(
        "  live: {} ({} bytes) in {} across {}; {} bytes mapped ({:.1} MiB), RSS {:.1} MiB\n",
        count(f.blocks_out(), "block"),
        g(f.bytes_in_blocks_out()),
        count(f.pools_in_use(), "pool"),
        count(f.arenas_mapped, "arena"),
        g(f.bytes_mapped()),
        mib(f.bytes_mapped()),
        mib(rss),
    );
    if f.pools_sparse() > 0 {
        out += &format!(
            "  pinned: {} at most {FRAG_SPARSE_PERCENT} % full hold {} out ({} bytes): {} bytes \
             stay mapped for them\n",
            count(f.pools_sparse(), "pool"),
            count(f.blocks_out_sparse(), "block"),
            g(f.bytes_out_sparse()),
            g(f.bytes_pinned()),
        );
        for (i, c) in f.classes.iter().enumerate() {
            if c.pools_sparse() > 0 {
                out += &format!(
                    "    class {i} ({}-byte blocks): {} pinned pools hold {} blocks, about {:.1} of \
                     {} per pool\n",
                    c.block_size,
                    g(c.pools_sparse()),
                    g(c.blocks_out_sparse),
                    c.blocks_out_sparse as f64 / c.pools_sparse() as f64,
                    g(c.capacity),
                );
            }
        }
        out += &format!(
            "  arenas: {} of {} cannot go back while those blocks live; freeing them would give \
             {} ({} bytes) back to the OS, {RESERVE_ARENAS} kept in reserve\n",
            g(f.arenas_could_go_back),
            g(f.arenas_mapped),
            count(f.arenas_back_if_sparse_emptied(), "arena"),
            g(f.bytes_back_if_sparse_emptied()),
        );
    } else if f.pools_in_use() > 0 {
        out +=
            &format!("  pinned: none (no pool in use is at most {FRAG_SPARSE_PERCENT} % full)\n");
    } else {
        out += &format!(
            "  pools: none in use; {} empty ({} bytes), reusable by any class of their kind\n",
            count(f.pools_empty, "pool"),
            g(f.bytes_empty_pools),
        );
    }
    if let Some((p, prev_rss)) = prev {
        let bytes = p.bytes_mapped().saturating_sub(f.bytes_mapped());
        out += &format!(
            "  since the last step: {} ({} bytes) went back to the OS, {} emptied; RSS {:.1} -> \
             {:.1} MiB\n",
            count(p.arenas_mapped.saturating_sub(f.arenas_mapped), "arena"),
            g(bytes),
            count(p.pools_in_use().saturating_sub(f.pools_in_use()), "pool"),
            mib(prev_rss),
            mib(rss),
        );
        if p.pools_sparse() > 0 && f.pools_sparse() == 0 {
            let verdict = if bytes == p.bytes_back_if_sparse_emptied() {
                "as predicted"
            } else {
                "not as predicted"
            };
            out += &format!(
                "  the last step predicted {} bytes back once its pinned pools emptied: {verdict}\n",
                g(p.bytes_back_if_sparse_emptied()),
            );
        }
    }
    out
}

/// The step-by-step demonstration, with each step's fragmentation report.
pub fn text(k: usize, steps: &[Step]) -> String {
    let mut out = format!(
        "The seed scenario on poolmalloc (k = {k}): {} one-byte objects, then free 511 of each \
         512, then the rest.\n",
        g(512 * k)
    );
    let mut prev = None;
    for (n, s) in steps.iter().enumerate() {
        out += &format!("\n== step {}: {} ==\n", n + 1, s.name);
        out += &narrate(&s.frag, s.rss, prev);
        out += &format!("\n{}", s.frag);
        prev = Some((&s.frag, s.rss));
    }
    out
}

/// The snapshot as JSON: the core's own writer (the one the C ABI prints), parsed so that it
/// can sit in the CLI's document.
pub fn frag_json(f: &Fragmentation) -> Value {
    crate::stats::parsed(|out| f.write_json(out))
}

/// `stats --json`'s document with each step's fragmentation snapshot added.
pub fn json(k: usize, steps: &[Step]) -> Value {
    let mut doc = crate::stats::json(k, steps);
    if let Some(Value::Array(out)) = doc.get_mut("steps") {
        for (v, s) in out.iter_mut().zip(steps) {
            v["fragmentation"] = frag_json(&s.frag);
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::{count, g};

    #[test]
    fn numbers_are_grouped_and_counted() {
        assert_eq!(g(0), "0");
        assert_eq!(g(999), "999");
        assert_eq!(g(1000), "1,000");
        assert_eq!(g(4_194_304), "4,194,304");
        assert_eq!(count(1, "arena"), "1 arena");
        assert_eq!(count(3145, "block"), "3,145 blocks");
    }
}
