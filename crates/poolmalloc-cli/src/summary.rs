//! From repeated samples to the table's figures: median, spread and ratio to the best peer.

use poolmalloc_workloads::Unit;

use crate::column::Column;

/// The column whose ratio the goal is about.
pub const GOAL_COLUMN: &str = "poolmalloc";

/// The samples of one allocator on one case, and what the table shows of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell<K> {
    pub allocator: K,
    pub samples: Vec<f64>,
    pub median: f64,
    /// Interquartile range / median: how far apart the middle half of the repetitions landed
    /// (robust to one repetition that hit a busy moment, which interleaving already spreads).
    pub spread: f64,
    pub min: f64,
    pub max: f64,
    /// median / the best peer's median; `None` when the best peer's median is too small for a
    /// ratio to mean anything (see `RATIO_FLOOR`).
    pub ratio: Option<f64>,
}

/// One case (a row of the table).
#[derive(Clone, Debug, PartialEq)]
pub struct Row<K> {
    pub case: String,
    pub unit: Unit,
    pub cells: Vec<Cell<K>>,
    /// The peer (not poolmalloc) with the lowest median.
    pub best_peer: Option<K>,
}

impl<K: Column> Row<K> {
    pub fn cell(&self, a: &K) -> Option<&Cell<K>> {
        self.cells.iter().find(|c| c.allocator == *a)
    }

    /// poolmalloc's ratio to the best peer, which the goal is about.
    pub fn goal_ratio(&self) -> Option<f64> {
        self.cells
            .iter()
            .find(|c| c.allocator.name() == GOAL_COLUMN)
            .and_then(|c| c.ratio)
    }
}

pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `p` quantile, interpolating linearly between order statistics.
pub fn quantile(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let h = (v.len() - 1) as f64 * p;
    let (i, frac) = (h.floor() as usize, h - h.floor());
    match v.get(i + 1) {
        // (Equal neighbours or `frac` 0 take `v[i]` as it is: ∞ − ∞ and 0 × ∞ would be NaN.)
        Some(&next) if frac > 0.0 && next != v[i] => v[i] + frac * (next - v[i]),
        _ => v[i],
    }
}

/// Interquartile range over the median (0 for one sample, a zero median, or quartiles that are
/// both "never"; infinite when only the upper one is; NaN for an infinite median over a finite
/// lower quartile).
pub fn spread(samples: &[f64]) -> f64 {
    let m = median(samples);
    let (q1, q3) = (quantile(samples, 0.25), quantile(samples, 0.75));
    if m > 0.0 && samples.len() > 1 && q1 != q3 {
        (q3 - q1) / m
    } else {
        0.0
    }
}

/// The smallest best-peer median a ratio is taken against. Resident sizes below half a MiB
/// are the noise of a process's own pages (stacks, libc, page rounding), not the allocator's;
/// times to release below the poll's interval are the poll's own granularity.
fn ratio_floor(unit: Unit) -> f64 {
    match unit {
        Unit::MiB => 0.5,
        Unit::Ms => poolmalloc_workloads::memory::POLL.as_secs_f64() * 1e3,
        Unit::NsPerOp | Unit::Pools | Unit::Seconds | Unit::Us => f64::MIN_POSITIVE,
    }
}

/// A cell's median over the best peer's. An infinite median is "never" (within the workload's
/// limit): never against a peer that did is as bad as a ratio gets (∞, whatever the floor);
/// anything against peers that all never did is 0; never against never has no ratio.
fn ratio(median: f64, best: f64, floor: f64) -> Option<f64> {
    match (median.is_finite(), best.is_finite()) {
        (true, true) => (best >= floor).then(|| median / best),
        (false, true) => Some(f64::INFINITY),
        (true, false) => Some(0.0),
        (false, false) => None,
    }
}

/// Builds a row from each allocator's samples (in table order). Lower is better for every unit.
pub fn summarize<K: Column>(case: &str, unit: Unit, samples: Vec<(K, Vec<f64>)>) -> Row<K> {
    let mut cells: Vec<Cell<K>> = samples
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(allocator, samples)| Cell {
            allocator,
            median: median(&samples),
            spread: spread(&samples),
            min: samples.iter().copied().fold(f64::INFINITY, f64::min),
            max: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            samples,
            ratio: None,
        })
        .collect();
    let best_peer = cells
        .iter()
        .filter(|c| !c.allocator.is_poolmalloc())
        .min_by(|a, b| a.median.total_cmp(&b.median))
        .map(|c| (c.allocator.clone(), c.median));
    if let Some((_, best)) = best_peer {
        for c in &mut cells {
            c.ratio = ratio(c.median, best, ratio_floor(unit));
        }
    }
    Row {
        case: case.to_string(),
        unit,
        cells,
        best_peer: best_peer.map(|(a, _)| a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolmalloc_workloads::AllocatorId::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        // Quartiles of 9, 10, 11 are 9.5 and 10.5.
        assert!((spread(&[9.0, 10.0, 11.0]) - 0.1).abs() < 1e-12);
        // One outlier of five moves neither quartile: 2nd and 4th order statistics.
        assert!((spread(&[10.0, 30.0, 9.0, 11.0, 10.0]) - 0.1).abs() < 1e-12);
        assert_eq!(spread(&[5.0]), 0.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
    }

    #[test]
    fn ratio_is_to_the_best_peer_never_to_poolmalloc() {
        let row = summarize(
            "pair/64",
            Unit::NsPerOp,
            vec![
                (PoolMalloc, vec![1.0, 1.0, 1.0]),
                (System, vec![8.0, 8.0, 8.0]),
                (Jemalloc, vec![4.0, 5.0, 3.0]),
                (Mimalloc, vec![5.0]),
                (PoolMallocHeap, vec![]),
            ],
        );
        assert_eq!(row.best_peer, Some(Jemalloc));
        assert_eq!(row.cell(&PoolMalloc).unwrap().ratio, Some(0.25));
        assert_eq!(row.cell(&System).unwrap().ratio, Some(2.0));
        assert_eq!(row.cell(&Jemalloc).unwrap().ratio, Some(1.0));
        assert!(row.cell(&PoolMallocHeap).is_none(), "no samples, no cell");
    }

    #[test]
    fn no_ratio_without_a_positive_peer() {
        let row = summarize(
            "seed/pools-pinned",
            Unit::Pools,
            vec![(PoolMalloc, vec![4.0])],
        );
        assert_eq!(row.best_peer, None);
        assert_eq!(row.cell(&PoolMalloc).unwrap().ratio, None);
        let row = summarize(
            "memory/after-trim",
            Unit::MiB,
            vec![(PoolMalloc, vec![0.9]), (System, vec![0.004])],
        );
        assert_eq!(row.best_peer, Some(System));
        assert_eq!(row.cell(&PoolMalloc).unwrap().ratio, None);
    }

    #[test]
    fn never_is_the_worst_time_and_has_a_ratio_only_against_a_time() {
        let never = f64::INFINITY;
        // Released at once against peers that never did: 0×; never against never: none.
        let row = summarize(
            "memory/released-ms",
            Unit::Ms,
            vec![
                (PoolMalloc, vec![0.02, 0.03, 0.02]),
                (PoolMallocHeap, vec![never, never, never]),
                (Jemalloc, vec![never, never, never]),
                (Mimalloc, vec![never, 40.0, never]),
            ],
        );
        assert_eq!(row.best_peer, Some(Jemalloc));
        assert_eq!(row.cell(&PoolMalloc).unwrap().ratio, Some(0.0));
        assert_eq!(row.cell(&PoolMallocHeap).unwrap().ratio, None);
        assert_eq!(row.cell(&Jemalloc).unwrap().spread, 0.0);
        let mi = row.cell(&Mimalloc).unwrap();
        assert_eq!(mi.median, never);
        assert_eq!((mi.min, mi.max), (40.0, never));
        // Never against a peer that did, even at once (under the floor): ∞, the goal missed.
        let row = summarize(
            "memory/released-ms",
            Unit::Ms,
            vec![
                (PoolMalloc, vec![never, never, never]),
                (System, vec![0.01, 0.01, 0.02]),
                (Mimalloc, vec![30.0, 31.0, 29.0]),
            ],
        );
        assert_eq!(row.best_peer, Some(System));
        assert_eq!(row.goal_ratio(), Some(f64::INFINITY));
        assert_eq!(row.cell(&Mimalloc).unwrap().ratio, None, "under the floor");
        // Times over the floor: plain ratios.
        let row = summarize(
            "memory/released-ms",
            Unit::Ms,
            vec![(PoolMalloc, vec![10.0]), (Mimalloc, vec![40.0])],
        );
        assert_eq!(row.goal_ratio(), Some(0.25));
    }

    #[test]
    fn quartiles_of_never() {
        let never = f64::INFINITY;
        assert_eq!(quantile(&[1.0, never, never], 0.5), never);
        assert_eq!(quantile(&[1.0, 2.0, never], 0.5), 2.0);
        assert_eq!(spread(&[never, never, never]), 0.0);
        assert_eq!(spread(&[1.0, 2.0, never]), never);
        assert_eq!(spread(&[1.0, never, never]), 0.0);
        assert!(spread(&[1.0, 2.0, never, never]).is_nan());
    }
}
