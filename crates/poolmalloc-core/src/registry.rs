//! The arena registry: a two-level radix tree over arena-aligned addresses that answers "is this
//! address in one of our arenas, and whose?" without reading any memory we do not own (CPython
//! ≥ 3.10's `arena_map`). Its leaves also hold each arena's header, so arenas carry no metadata
//! inside themselves and the ownership test and the header are one lookup.
//!
//! The registry is global and shared by every core: each slot records the id of the core owning
//! its arena. Its memory comes straight from the OS layer (the top level is a static, the leaves
//! are anonymous mappings that are never unmapped), never from the allocator it serves.
//!
//! Concurrency: leaves are installed with a compare-exchange and never removed, so a lookup is two
//! acquire loads. A slot's `owner` is written by the owning core under its arena lock (set after
//! the header is ready, cleared before the arena is unmapped); the header itself is only touched
//! under that lock. The registry keeps std's atomics even in loom builds (`sync::unmodelled` says
//! why): it lives for the whole process and its leaves are zero-filled OS memory.

use core::cell::UnsafeCell;
use core::ptr;

use crate::config::Kind;
use crate::config::{
    ADDRESS_BITS, ARENA_BITS, REGISTRY_LEAF_BITS, REGISTRY_LEAF_LEN, REGISTRY_TOP_LEN,
};
use crate::layout::ArenaHeader;
use crate::os;
use crate::sync::atomic::Ordering;
use crate::sync::unmodelled::{AtomicPtr, AtomicUsize};

/// One arena's entry: its owner and kind, and its header.
pub(crate) struct ArenaSlot {
    /// `id << 1 | kind` for the arena mapped here (core `id`, `Kind` as its index); 0 while
    /// none is. One word, so a free that asks the registry whose an address is learns, with the
    /// same load, where the address's pool header is.
    owner: AtomicUsize,
    /// Guarded by the owning core's arena lock (A1 in `lib.rs`).
    pub header: UnsafeCell<ArenaHeader>,
}

impl ArenaSlot {
    /// Id of the core owning the arena mapped here; 0 while none does.
    #[cfg(test)]
    pub fn owner(&self) -> usize {
        self.owner.load(Ordering::Acquire) >> 1
    }

    /// The kind of the arena mapped here (meaningful while `owner` is not 0).
    #[inline]
    pub fn kind(&self) -> Kind {
        match self.owner.load(Ordering::Acquire) & 1 {
            0 => Kind::Small,
            _ => Kind::Medium,
        }
    }

    /// Publishes (or, with owner 0, withdraws) the arena of `kind`. Called under the owner's
    /// arena lock.
    pub fn set_owner(&self, owner: usize, kind: Kind) {
        let word = if owner == 0 {
            0
        } else {
            owner << 1 | kind as usize
        };
        self.owner.store(word, Ordering::Release);
    }
}

struct Leaf {
    slots: [ArenaSlot; REGISTRY_LEAF_LEN],
}

pub(crate) struct Registry {
    top: [AtomicPtr<Leaf>; REGISTRY_TOP_LEN],
}

// SAFETY: slots are reached through `&'static` references; their owners are atomics and their
// headers are only touched under the owning core's arena lock.
unsafe impl Sync for Registry {}

/// The one registry of the process.
pub(crate) static REGISTRY: Registry = Registry {
    top: [const { AtomicPtr::new(ptr::null_mut()) }; REGISTRY_TOP_LEN],
};

/// Top-level and leaf index of an address, or `None` outside the covered address space.
#[inline(always)]
fn split(addr: usize) -> Option<(usize, usize)> {
    if addr >> ADDRESS_BITS != 0 {
        return None;
    }
    let arena = addr >> ARENA_BITS;
    Some((arena >> REGISTRY_LEAF_BITS, arena & (REGISTRY_LEAF_LEN - 1)))
}

impl Registry {
    /// The slot covering `addr`, if its leaf exists.
    #[inline]
    pub fn lookup(&self, addr: usize) -> Option<&'static ArenaSlot> {
        let (top, index) = split(addr)?;
        let leaf = self.top[top].load(Ordering::Acquire);
        if leaf.is_null() {
            return None;
        }
        // SAFETY: published leaves are mapped for the life of the process (R1) and zeroed memory
        // is a valid `Leaf` (null pointers, zero counts).
        Some(unsafe { &(*leaf).slots[index] })
    }

    /// The slot covering `addr`, mapping its leaf first if needed; `None` if the OS refuses.
    pub fn lookup_or_create(&'static self, addr: usize) -> Option<&'static ArenaSlot> {
        let (top, _) = split(addr)?;
        if self.top[top].load(Ordering::Acquire).is_null() {
            let bytes = core::mem::size_of::<Leaf>();
            let fresh = os::map_anonymous(bytes)?.as_ptr().cast::<Leaf>();
            if self.top[top]
                .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // SAFETY: another thread installed its leaf first; ours was never published.
                unsafe { os::unmap(fresh.cast(), bytes) };
            }
        }
        self.lookup(addr)
    }

    /// Id of the core owning the arena that holds `addr`; 0 if no core does.
    #[cfg(test)]
    pub fn owner_of(&self, addr: usize) -> usize {
        self.lookup(addr).map_or(0, ArenaSlot::owner)
    }

    /// The kind of the arena holding `addr` when core `id` (not 0) owns it; `None` otherwise.
    #[inline(always)]
    pub fn kind_if_owned_by(&self, addr: usize, id: usize) -> Option<Kind> {
        let slot = self.lookup(addr)?;
        match slot.owner.load(Ordering::Acquire) ^ id << 1 {
            0 => Some(Kind::Small),
            1 => Some(Kind::Medium),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Kind, ARENA_SIZE};

    #[test]
    fn unknown_addresses_have_no_owner() {
        assert_eq!(REGISTRY.owner_of(0), 0);
        assert_eq!(REGISTRY.owner_of(usize::MAX), 0);
        assert_eq!(REGISTRY.owner_of(1usize << ADDRESS_BITS), 0);
        let local = 5u64;
        assert_eq!(REGISTRY.owner_of(&local as *const u64 as usize), 0);
    }

    #[test]
    fn slots_are_per_arena() {
        // An address range no test maps: the top of the covered space.
        let a = (1usize << ADDRESS_BITS) - 4 * ARENA_SIZE;
        let slot = REGISTRY.lookup_or_create(a).expect("leaf");
        let same = REGISTRY.lookup(a + ARENA_SIZE - 1).unwrap();
        let next = REGISTRY.lookup(a + ARENA_SIZE).unwrap();
        assert!(ptr::eq(slot, same));
        assert!(!ptr::eq(slot, next));
        slot.set_owner(77, Kind::Medium);
        assert_eq!(REGISTRY.owner_of(a + 100), 77);
        assert_eq!(REGISTRY.owner_of(a + ARENA_SIZE), 0);
        assert_eq!(REGISTRY.kind_if_owned_by(a + 100, 77), Some(Kind::Medium));
        assert_eq!(REGISTRY.kind_if_owned_by(a + 100, 78), None);
        assert_eq!(REGISTRY.kind_if_owned_by(a + ARENA_SIZE, 77), None);
        slot.set_owner(0, Kind::Small);
    }
}
