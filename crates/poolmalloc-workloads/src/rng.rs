//! A seeded SplitMix64 generator: sizes and orders are random but the same on every run, so two
//! allocators (and two runs) see exactly the same requests.

/// SplitMix64 (Steele, Lea, Flood 2014): one add and two multiplies per number.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` by multiply-shift on 32 random bits; the bias is at most
    /// `span / 2³²`, negligible for the spans used here (sizes, slots, shuffles of 10⁶).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(lo <= hi);
        let span = (hi - lo) as u64 + 1;
        lo + (((self.next_u64() >> 32) * span) >> 32) as usize
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i);
            items.swap(i, j);
        }
    }

    /// `0..n` in random order.
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..n as u32).collect();
        self.shuffle(&mut order);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn range_stays_in_bounds_and_reaches_both_ends() {
        let mut rng = Rng::new(7);
        let (mut lo_seen, mut hi_seen) = (false, false);
        for _ in 0..100_000 {
            let x = rng.range(8, 512);
            assert!((8..=512).contains(&x), "{x}");
            lo_seen |= x == 8;
            hi_seen |= x == 512;
        }
        assert!(lo_seen && hi_seen);
    }

    #[test]
    fn permutation_holds_every_index_once() {
        let mut order = Rng::new(3).permutation(1000);
        assert_ne!(order, (0..1000).collect::<Vec<u32>>(), "not shuffled");
        order.sort_unstable();
        assert_eq!(order, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn same_seed_same_numbers() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(11);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(11);
        assert!(a.iter().all(|&x| x == r.next_u64()));
    }
}
