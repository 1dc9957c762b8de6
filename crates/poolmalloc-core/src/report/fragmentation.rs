//! `Fragmentation` as text and as JSON.

use core::fmt;

use super::{comma_separated, OrNull, Thousands};
use crate::config::{
    ARENA_SIZE, FRAG_HALF_PERCENT, FRAG_SPARSE_PERCENT, MEDIUM_POOL_SIZE, POOL_SIZE, RESERVE_ARENAS,
};
use crate::fragmentation::{Band, Fragmentation, BANDS};

impl Fragmentation {
    /// The snapshot as one JSON object. Written by hand and allocation-free, so that every face
    /// (CLI, C ABI) prints the same document, whatever JSON library it has or lacks.
    pub fn write_json(&self, f: &mut impl fmt::Write) -> fmt::Result {
        write!(
            f,
            "{{\"sparse_percent\":{FRAG_SPARSE_PERCENT},\"half_percent\":{FRAG_HALF_PERCENT},\
             \"pool_size\":{POOL_SIZE},\"medium_pool_size\":{MEDIUM_POOL_SIZE},\"arena_size\":{ARENA_SIZE},\"reserve_arenas\":{RESERVE_ARENAS},\
             \"classes\":["
        )?;
        let in_use = self.classes.iter().enumerate();
        let in_use = in_use.filter(|(_, c)| c.pools_in_use() > 0);
        comma_separated(f, in_use, |f, (i, c)| {
            write!(
                f,
                "{{\"class\":{i},\"block_size\":{},\"pool_size\":{},\"capacity\":{},\"pools\":",
                c.block_size, c.pool_size, c.capacity
            )?;
            write_bands(f, &c.pools)?;
            write!(
                f,
                ",\"pools_in_use\":{},\"pools_sparse\":{},\"blocks_out\":{},\
                 \"blocks_out_sparse\":{},\"bytes_idle\":{}}}",
                c.pools_in_use(),
                c.pools_sparse(),
                c.blocks_out,
                c.blocks_out_sparse,
                c.bytes_idle
            )
        })?;
        f.write_str("],\"pools\":{\"by_band\":")?;
        write_bands(f, &self.pools_by_band())?;
        write!(
            f,
            ",\"in_use\":{},\"full\":{},\"sparse\":{},\"empty\":{}}},\
             \"blocks\":{{\"out\":{},\"out_sparse\":{}}},\
             \"bytes\":{{\"mapped\":{},\"pinned\":{},\"out_sparse\":{},\"idle\":{},\
             \"in_blocks_out\":{},\"back_if_sparse_emptied\":{},\"accounted\":{},\"warm\":{}}},\
             \"purge_in_ms\":{},\
             \"arenas\":{{\"mapped\":{},\"wholly_empty\":{},\"could_go_back\":{},\
             \"back_if_sparse_emptied\":{},\"listed\":[",
            self.pools_in_use(),
            self.pools_full(),
            self.pools_sparse(),
            self.pools_empty,
            self.blocks_out(),
            self.blocks_out_sparse(),
            self.bytes_mapped(),
            self.bytes_pinned(),
            self.bytes_out_sparse(),
            self.bytes_idle(),
            self.bytes_in_blocks_out(),
            self.bytes_back_if_sparse_emptied(),
            self.accounted_bytes(),
            self.bytes_warm,
            OrNull(self.purge_in_ms),
            self.arenas_mapped,
            self.arenas_wholly_empty,
            self.arenas_could_go_back,
            self.arenas_back_if_sparse_emptied()
        )?;
        comma_separated(f, self.arenas(), |f, a| {
            write!(
                f,
                "{{\"address\":{},\"kind\":\"{}\",\"pools_used\":{},\"pools_full\":{},\"pools_empty\":{},\
                 \"pools_sparse\":{},\"blocks_out\":{},\"could_go_back\":{}}}",
                a.address,
                a.kind.name(),
                a.pools_used,
                a.pools_full,
                a.pools_empty,
                a.pools_sparse,
                a.blocks_out,
                a.could_go_back()
            )
        })?;
        f.write_str("]},\"wasteful_pools\":[")?;
        comma_separated(f, self.wasteful_pools(), |f, p| {
            write!(
                f,
                "{{\"address\":{},\"class\":{},\"block_size\":{},\"blocks_out\":{},\
                 \"capacity\":{},\"bytes_idle\":{},\"alone_in_arena\":{}}}",
                p.address,
                p.class,
                p.block_size,
                p.blocks_out,
                p.capacity,
                p.bytes_idle,
                p.alone_in_arena
            )
        })?;
        write!(f, "],\"identity_holds\":{}}}", self.identity_holds())
    }
}

/// `{"one_block":n,...}` in band order.
fn write_bands(f: &mut impl fmt::Write, pools: &[usize; BANDS]) -> fmt::Result {
    f.write_char('{')?;
    comma_separated(f, Band::ALL.iter().zip(pools), |f, (band, n)| {
        write!(f, "\"{}\":{n}", band.name())
    })?;
    f.write_char('}')
}

impl fmt::Display for Fragmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sparse = format!("<={FRAG_SPARSE_PERCENT}%");
        let half = format!("<={FRAG_HALF_PERCENT}%");
        writeln!(
            f,
            "Fragmentation: pools in use by occupancy (blocks out of capacity); sparse = 1 block \
             or {sparse}."
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "class    size   capacity   1 block   {sparse:>5}   {half:>5}   <100%    full   \
                blocks out   idle bytes"
        )?;
        writeln!(
            f,
            "-----   -----   --------   -------   -----   -----   -----   -----   \
             -------------   ----------"
        )?;
        if self.pools_in_use() == 0 {
            writeln!(f, "(no pool in use)")?;
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.pools_in_use() == 0 {
                continue;
            }
            let b = &c.pools;
            writeln!(
                f,
                "{i:>5}   {:>5}   {:>8}   {:>7}   {:>5}   {:>5}   {:>5}   {:>5}   {:>13}   {:>10}",
                c.block_size,
                c.capacity,
                b[0],
                b[1],
                b[2],
                b[3],
                b[4],
                Thousands(c.blocks_out),
                Thousands(c.bytes_idle),
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "pinned: {} sparse pools keep {} bytes mapped for {} blocks out ({} bytes)",
            Thousands(self.pools_sparse()),
            Thousands(self.bytes_pinned()),
            Thousands(self.blocks_out_sparse()),
            Thousands(self.bytes_out_sparse()),
        )?;
        writeln!(
            f,
            "idle: {} bytes of partly-used pools hold no block out",
            Thousands(self.bytes_idle())
        )?;
        writeln!(
            f,
            "arenas: {} mapped, {} could go back if their sparse pools emptied, {} wholly empty \
             (reserve {RESERVE_ARENAS})",
            self.arenas_mapped, self.arenas_could_go_back, self.arenas_wholly_empty
        )?;
        writeln!(
            f,
            "if every sparse pool emptied: {} arenas, {} bytes, would go back to the OS",
            self.arenas_back_if_sparse_emptied(),
            Thousands(self.bytes_back_if_sparse_emptied())
        )?;
        match self.purge_in_ms {
            Some(ms) => writeln!(
                f,
                "warm: {} bytes of empty pools stay committed; the next purge pass, in {ms} ms, \
                 gives back what was empty at the last one",
                Thousands(self.bytes_warm)
            )?,
            None => writeln!(
                f,
                "warm: {} bytes of empty pools stay committed; no purge pass is due",
                Thousands(self.bytes_warm)
            )?,
        }
        if !self.identity_holds() {
            writeln!(
                f,
                "!! fragmentation identity broken: parts {} != mapped {}",
                self.accounted_bytes(),
                self.bytes_mapped()
            )?;
        }
        if !self.arenas().is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "arena (fewest blocks out first)   used   full   empty   sparse   blocks out   could go back"
            )?;
            for a in self.arenas() {
                let back = if a.could_go_back() {
                    "yes"
                } else if a.wholly_empty() {
                    "empty"
                } else {
                    "no"
                };
                writeln!(
                    f,
                    "{:<#32x}  {:>5}   {:>4}   {:>5}   {:>6}   {:>10}   {back}",
                    a.address,
                    a.pools_used,
                    a.pools_full,
                    a.pools_empty,
                    a.pools_sparse,
                    Thousands(a.blocks_out),
                )?;
            }
            let more = self.arenas_mapped - self.arenas().len();
            if more > 0 {
                writeln!(f, "... and {more} more arenas")?;
            }
        }
        if !self.wasteful_pools().is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "most wasteful pools           class    size   blocks out of capacity   idle bytes"
            )?;
            for p in self.wasteful_pools() {
                writeln!(
                    f,
                    "{:<#28x}  {:>5}   {:>5}   {:>22}   {:>10}{}",
                    p.address,
                    p.class,
                    p.block_size,
                    format!("{} of {}", p.blocks_out, p.capacity),
                    Thousands(p.bytes_idle),
                    if p.alone_in_arena {
                        "   (alone in its arena)"
                    } else {
                        ""
                    },
                )?;
            }
        }
        Ok(())
    }
}
