//! `CoreStats` as text (after CPython's `sys._debugmallocstats()`) and as JSON.

use core::fmt;

use super::{comma_separated, OrNull, Thousands};
use crate::config::{
    Kind, ARENA_SIZE, MEDIUM_REQUEST_THRESHOLD, NB_MEDIUM_SIZE_CLASSES, NB_SMALL_SIZE_CLASSES,
    SMALL_REQUEST_THRESHOLD,
};
use crate::stats::CoreStats;

impl CoreStats {
    /// The snapshot as one JSON object: every field, and the derived byte counts the text report
    /// prints. Written by hand so that faces without a JSON library (the C ABI) share it; it
    /// allocates nothing of its own.
    pub fn write_json(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str("{\"classes\":[")?;
        let in_use = self.classes.iter().enumerate();
        let in_use = in_use.filter(|(_, c)| c.pools() > 0);
        comma_separated(f, in_use, |f, (i, c)| {
            write!(
                f,
                "{{\"class\":{i},\"block_size\":{},\"pool_size\":{},\"pools_used\":{},\"pools_full\":{},\
                 \"pools_owned\":{},\"blocks_out\":{},\"free_in_pools\":{}}}",
                c.block_size,
                c.pool_size,
                c.pools_used,
                c.pools_full,
                c.pools_owned,
                c.blocks_out,
                c.free_in_pools
            )
        })?;
        let a = &self.arenas;
        write!(
            f,
            "],\"arenas\":{{\"mapped\":{},\"mapped_ever\":{},\"released\":{},\"high_water\":{},\
             \"map_failures\":{},\"wholly_empty\":{},\"medium\":{}}},\"pools_empty\":{},\
             \"medium_pools_empty\":{},\"pools_in_use\":{},\
             \"large\":{{\"allocs_total\":{},\"live\":{},\"live_bytes\":{}}},",
            a.mapped,
            a.mapped_ever,
            a.released,
            a.high_water,
            a.map_failures,
            a.wholly_empty,
            self.arenas_of_kind[Kind::Medium as usize],
            self.pools_empty.iter().sum::<usize>(),
            self.pools_empty[Kind::Medium as usize],
            self.pools_in_use(),
            self.large.allocs_total,
            self.large.live,
            self.large.live_bytes
        )?;
        let p = &self.purge;
        write!(
            f,
            "\"purge\":{{\"delay_ms\":{},\"purger\":\"{}\",\"warm_bytes\":{},\"next_in_ms\":{},\
             \"passes\":{},\"purges\":{},\"purged_bytes\":{},\"wakeups\":{}}},",
            p.delay_ms,
            if p.by_thread { "thread" } else { "calls" },
            p.warm_bytes,
            OrNull(p.next_in_ms),
            a.purge_passes,
            a.purges,
            a.purged_bytes,
            p.wakeups
        )?;
        write!(
            f,
            "\"bytes\":{{\"mapped\":{},\"in_blocks_out\":{},\"free_in_pools\":{},\
             \"empty_pools\":{},\"pool_headers\":{},\"quantization\":{},\"accounted\":{}}},\
             \"identity_holds\":{}}}",
            self.bytes_mapped(),
            self.bytes_in_blocks_out(),
            self.bytes_free_in_pools(),
            self.bytes_empty_pools(),
            self.bytes_pool_headers(),
            self.bytes_quantization(),
            self.accounted_bytes(),
            self.identity_holds()
        )
    }
}

impl fmt::Display for CoreStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Small block threshold = {SMALL_REQUEST_THRESHOLD}, in {NB_SMALL_SIZE_CLASSES} size classes; \
             medium up to {MEDIUM_REQUEST_THRESHOLD}, in {NB_MEDIUM_SIZE_CLASSES}."
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "class    size   num pools   full pools   blocks out   avail blocks"
        )?;
        writeln!(
            f,
            "-----   -----   ---------   ----------   ----------   ------------"
        )?;
        for (i, c) in self.classes.iter().enumerate() {
            if c.pools() == 0 {
                continue;
            }
            writeln!(
                f,
                "{:>5}   {:>5}   {:>9}   {:>10}   {:>10}   {:>12}",
                i,
                c.block_size,
                c.pools(),
                c.pools_full,
                c.blocks_out,
                c.free_in_pools
            )?;
        }
        writeln!(f)?;
        let a = &self.arenas;
        let line = |f: &mut fmt::Formatter<'_>, label: &str, n: usize| {
            writeln!(f, "{label:<40}= {:>21}", Thousands(n))
        };
        line(f, "# arenas allocated total", a.mapped_ever)?;
        line(f, "# arenas reclaimed", a.released)?;
        line(f, "# arenas highwater mark", a.high_water)?;
        line(f, "# arenas allocated current", a.mapped)?;
        line(
            f,
            "# of which medium arenas",
            self.arenas_of_kind[Kind::Medium as usize],
        )?;
        line(f, "# arena map failures", a.map_failures)?;
        line(
            f,
            &format!("{} arenas * {} bytes/arena", a.mapped, ARENA_SIZE),
            self.bytes_mapped(),
        )?;
        writeln!(f)?;
        line(f, "# bytes in allocated blocks", self.bytes_in_blocks_out())?;
        line(f, "# bytes in available blocks", self.bytes_free_in_pools())?;
        for kind in Kind::ALL {
            let n = self.pools_empty[kind as usize];
            let label = format!("{n} unused pools * {} bytes", kind.pool_size());
            line(f, &label, n * kind.pool_size())?;
        }
        line(f, "# bytes lost to pool headers", self.bytes_pool_headers())?;
        line(f, "# bytes lost to quantization", self.bytes_quantization())?;
        line(f, "Total", self.accounted_bytes())?;
        if !self.identity_holds() {
            writeln!(
                f,
                "!! accounting identity broken: parts {} != mapped {}",
                self.accounted_bytes(),
                self.bytes_mapped()
            )?;
        }
        writeln!(f)?;
        let p = &self.purge;
        match (p.delay_ms, p.next_in_ms) {
            (0, _) => writeln!(f, "Memory goes back to the OS at once (purge delay 0).")?,
            (d, None) => writeln!(
                f,
                "Empty pools wait {d} ms before they go back to the OS ({}); none waits now.",
                if p.by_thread {
                    "purger thread"
                } else {
                    "in allocator calls"
                }
            )?,
            (d, Some(next)) => writeln!(
                f,
                "Empty pools wait {d} ms before they go back to the OS ({}); the next pass is \
                 due in {next} ms.",
                if p.by_thread {
                    "purger thread"
                } else {
                    "in allocator calls"
                }
            )?,
        }
        line(f, "# bytes warm (empty pools, committed)", p.warm_bytes)?;
        line(f, "# purge passes", a.purge_passes)?;
        line(f, "# ranges purged (system calls)", a.purges)?;
        line(f, "# bytes purged", a.purged_bytes)?;
        line(f, "# purger thread wake-ups", p.wakeups)?;
        writeln!(f)?;
        line(f, "# large-path blocks live", self.large.live)?;
        line(f, "# large-path bytes live", self.large.live_bytes)?;
        line(f, "# large-path requests served", self.large.allocs_total)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_is_well_formed_and_complete() {
        let core = crate::Core::new(crate::MemPages::new(1));
        let p = core.alloc(core::alloc::Layout::from_size_align(24, 8).unwrap());
        let mut json = String::new();
        core.stats().write_json(&mut json).unwrap();
        assert!(
            json.starts_with("{\"classes\":[{\"class\":2,\"block_size\":24,\"pool_size\":16384,"),
            "{json}"
        );
        assert!(json.contains("\"mapped\":1,") && json.ends_with("\"identity_holds\":true}"));
        let opens = json.matches(['{', '[']).count();
        let closes = json.matches(['}', ']']).count();
        assert_eq!(opens, closes, "{json}");
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe {
            core.dealloc(p, core::alloc::Layout::from_size_align(24, 8).unwrap())
                .unwrap()
        };
    }
}
