//! Debug mode's large blocks: requests past the small threshold (or over-aligned) still go to
//! the system allocator through the core's large path, laid out like small debug blocks —
//! header, `DEBUG_PAD` forbidden bytes on each side — at `prefix` bytes into a bigger block:
//! ```text
//! | prefix - DEBUG_PREFIX | size | state | 0xFD × DEBUG_PAD | caller's bytes | 0xFD × PAD |
//! ^ the system's block                                      ^ the caller's, aligned
//! ```
//! The system may unmap or reuse a large block the moment it is freed, so its state word cannot
//! tell a double free, and the bytes before a pointer that is not ours may not be mapped at all.
//! So every live large block is in `LIVE`, a table keyed by the caller's address that also holds
//! what it was allocated with and which core (global, or which `Heap`) it belongs to; a freed
//! one goes to a ring of the `DEBUG_RECENT_FREES` latest. A free finds its pointer in the table
//! (checked, freed), in the ring (double free), or nowhere (foreign or interior pointer).
//!
//! The table is an open-addressing hash table (linear probing, backward-shift deletion) in its
//! own mapping, doubled when half full. Its lock is the allocator's own (a futex word), since it
//! is taken while serving a request.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use poolmalloc_core::config::{
    DEBUG_LARGE_MIN_SLOTS, DEBUG_PAD, DEBUG_PREFIX, DEBUG_RECENT_FREES, MAX_SMALL_ALIGN,
};
use poolmalloc_core::{large as system, os, Core, ForkAwareMutex, LargeTally, PageSource};

use super::{check_pads, kill, lay_out, live_size};
use crate::misuse::{report, DebugBlock, Misuse};

/// A live large block.
#[derive(Clone, Copy)]
struct Entry {
    /// The caller's pointer; 0 marks an empty slot.
    user: usize,
    size: usize,
    align: usize,
    /// The address of the core whose large path served it.
    owner: usize,
}

const EMPTY: Entry = Entry {
    user: 0,
    size: 0,
    align: 0,
    owner: 0,
};

struct Table {
    live: Slots,
    /// The latest frees, `(user, size)`, oldest overwritten first.
    recent: [(usize, usize); DEBUG_RECENT_FREES],
    next_recent: usize,
}

/// The live blocks: `cap` slots in a mapping of their own (null before the first large block).
struct Slots {
    slots: *mut Entry,
    cap: usize,
    len: usize,
}

// SAFETY: the table owns its mapping; it is reached only through `LIVE`'s lock.
unsafe impl Send for Table {}

/// The table, behind the allocator's own lock: a futex word (waiting allocates nothing) that the
/// forking thread passes through in its fork window.
static LIVE: ForkAwareMutex<Table> = ForkAwareMutex::new(Table {
    live: Slots {
        slots: ptr::null_mut(),
        cap: 0,
        len: 0,
    },
    recent: [(0, 0); DEBUG_RECENT_FREES],
    next_recent: 0,
});

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    f(&mut LIVE.lock())
}

/// `pthread_atfork` prepare: no other thread may hold the table's lock across the fork.
pub(crate) fn fork_prepare() {
    LIVE.lock_for_fork();
}

/// `pthread_atfork` parent: releases what `fork_prepare` took.
///
/// # Safety
/// `fork_prepare` ran on this thread just before `fork`.
pub(crate) unsafe fn fork_parent() {
    // SAFETY: locked by this thread through `fork_prepare` (precondition); the window is closed.
    unsafe { LIVE.unlock_after_fork() }
}

/// `pthread_atfork` child: the lock back to unlocked.
///
/// # Safety
/// In the child of a `fork` whose forking thread ran `fork_prepare`; this is the only thread.
pub(crate) unsafe fn fork_child() {
    // SAFETY: forwarded precondition.
    unsafe { LIVE.reset_in_child() }
}

impl Slots {
    fn home(&self, user: usize) -> usize {
        // Fibonacci hashing: large blocks are at least 16-byte aligned, so mix the high bits in.
        (user.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) & (self.cap - 1)
    }

    /// The slot holding `user`, or the empty slot where it would go.
    fn probe(&self, user: usize) -> usize {
        let mut i = self.home(user);
        loop {
            // SAFETY: `i < cap` and the mapping holds `cap` slots; a table with `len < cap`
            // always has an empty slot, so the probe ends.
            let slot = unsafe { *self.slots.add(i) };
            if slot.user == user || slot.user == 0 {
                return i;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    fn get(&self, user: usize) -> Option<Entry> {
        if self.cap == 0 {
            return None;
        }
        // SAFETY: `probe` returns a slot index below `cap`.
        let slot = unsafe { *self.slots.add(self.probe(user)) };
        (slot.user == user).then_some(slot)
    }

    /// Adds a live block; false when the table could not grow (no memory).
    fn insert(&mut self, entry: Entry) -> bool {
        if 2 * (self.len + 1) > self.cap && !self.grow() {
            return false;
        }
        let i = self.probe(entry.user);
        // SAFETY: `i < cap`.
        unsafe { self.slots.add(i).write(entry) };
        self.len += 1;
        true
    }

    /// Doubles the table into a new mapping.
    fn grow(&mut self) -> bool {
        let cap = (2 * self.cap).max(DEBUG_LARGE_MIN_SLOTS);
        let bytes = cap * size_of::<Entry>();
        let Some(fresh) = os::map_anonymous(bytes) else {
            return false;
        };
        let fresh = Slots {
            slots: fresh.as_ptr().cast(),
            cap,
            len: 0,
        };
        let old = core::mem::replace(self, fresh);
        for i in 0..old.cap {
            // SAFETY: `i < old.cap`, inside the old mapping.
            let entry = unsafe { *old.slots.add(i) };
            if entry.user != 0 {
                let j = self.probe(entry.user);
                // SAFETY: `j < cap`.
                unsafe { self.slots.add(j).write(entry) };
                self.len += 1;
            }
        }
        if old.cap != 0 {
            // SAFETY: the old mapping is the table's own, and nothing refers to it any more.
            unsafe { os::unmap(old.slots.cast(), old.cap * size_of::<Entry>()) };
        }
        true
    }

    /// Removes the block at slot `i`, shifting later entries of its probe run back.
    fn remove_at(&mut self, mut i: usize) {
        let mask = self.cap - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            // SAFETY: `j < cap`.
            let next = unsafe { *self.slots.add(j) };
            if next.user == 0 {
                break;
            }
            // `next` may fill the hole at `i` only if its home is not cyclically in (i, j].
            let home = self.home(next.user);
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                // SAFETY: `i < cap`.
                unsafe { self.slots.add(i).write(next) };
                i = j;
            }
        }
        // SAFETY: `i < cap`.
        unsafe { self.slots.add(i).write(EMPTY) };
        self.len -= 1;
    }
}

impl Table {
    fn remember_free(&mut self, user: usize, size: usize) {
        self.recent[self.next_recent] = (user, size);
        self.next_recent = (self.next_recent + 1) % DEBUG_RECENT_FREES;
    }

    /// The requested size of `user` if it is among the recent frees.
    fn recently_freed(&self, user: usize) -> Option<usize> {
        self.recent
            .iter()
            .find(|&&(freed, _)| freed == user)
            .map(|&(_, size)| size)
    }
}

fn owner_of<S: PageSource>(core: &Core<S>) -> usize {
    core as *const Core<S> as usize
}

/// Bytes before the caller's: the header and front pad, rounded up to the alignment.
fn prefix(align: usize) -> usize {
    DEBUG_PREFIX.max(align)
}

/// The system block's layout for a debug block of `size` bytes aligned to `align`.
fn system_layout(size: usize, align: usize) -> Option<Layout> {
    let total = prefix(align).checked_add(size)?.checked_add(DEBUG_PAD)?;
    Layout::from_size_align(total, align.max(MAX_SMALL_ALIGN)).ok()
}

/// A large debug block of `layout.size()` bytes from `core`'s large path; null when out of
/// memory.
pub(crate) fn alloc<S: PageSource>(core: &Core<S>, tally: &LargeTally, layout: Layout) -> *mut u8 {
    let (size, align) = (layout.size(), layout.align());
    let Some(system) = system_layout(size, align) else {
        return ptr::null_mut();
    };
    let Some(block) = NonNull::new(system::alloc(tally, system, false)) else {
        return ptr::null_mut();
    };
    // SAFETY: the prefix lies inside the block just allocated.
    let user = unsafe { block.as_ptr().add(prefix(align)) };
    let entry = Entry {
        user: user as usize,
        size,
        align,
        owner: owner_of(core),
    };
    if !with_table(|t| t.live.insert(entry)) {
        // SAFETY: allocated above with this layout; nobody has seen it.
        unsafe { system::free(tally, block.as_ptr()) };
        return ptr::null_mut();
    }
    // SAFETY: the header, pads and bytes fill the block from `user - DEBUG_PREFIX` on, which is
    // ours; `user` is aligned to at least MAX_SMALL_ALIGN.
    unsafe { lay_out(user, size, DEBUG_PAD) }
}

/// What the table says of `user`: its live entry of `core`, or the misuse.
fn find<S: PageSource>(core: &Core<S>, user: *mut u8, remove: bool) -> Result<Entry, Misuse> {
    let addr = user as usize;
    with_table(|t| match t.live.get(addr) {
        Some(entry) if entry.owner == owner_of(core) => {
            // SAFETY: the table holds only live blocks, whose headers and pads are mapped.
            unsafe {
                let size = live_size(user, DebugBlock::Large)?;
                if size != entry.size {
                    return Err(Misuse::HeaderOverwritten {
                        addr,
                        block: DebugBlock::Large,
                    });
                }
                check_pads(user, DebugBlock::Large, size, DEBUG_PAD)?;
            }
            if remove {
                t.live.remove_at(t.live.probe(addr));
                t.remember_free(addr, entry.size);
            }
            Ok(entry)
        }
        // Another heap's block: as foreign to this one as any other pointer.
        Some(_) => Err(Misuse::foreign(addr)),
        None => Err(match t.recently_freed(addr) {
            Some(size) => Misuse::LargeDoubleFree { addr, size },
            None => Misuse::foreign(addr),
        }),
    })
}

/// Checks and frees a pointer that is in none of `core`'s pools: a large debug block of `core`,
/// or misuse (reported, nothing freed). `layout_size` is what the caller's layout said, if it
/// had one.
///
/// # Safety
/// If `user` is a live large block of `core`, the program does not use it afterwards.
pub(crate) unsafe fn free<S: PageSource>(
    core: &Core<S>,
    tally: &LargeTally,
    user: *mut u8,
    layout_size: Option<usize>,
) {
    let entry = match find(core, user, true) {
        Ok(entry) => entry,
        Err(misuse) => return report(misuse),
    };
    if let Some(layout_size) = layout_size.filter(|&s| s != entry.size) {
        report(Misuse::LargeSizeMismatch {
            addr: entry.user,
            layout_size,
            block_size: entry.size,
        });
    }
    // `alloc` made the block at `prefix` bytes into a system block.
    // SAFETY: the table held the block live and checked, and no longer holds it, so no other
    // free can reach it; its system block starts `prefix` bytes before it.
    unsafe {
        kill(user, entry.size + DEBUG_PAD);
        system::free(tally, user.sub(prefix(entry.align)));
    }
}

/// The requested size of a live large debug block of `core`, or the misuse (nothing changes).
pub(crate) fn usable_size<S: PageSource>(core: &Core<S>, user: *mut u8) -> Result<usize, Misuse> {
    find(core, user, false).map(|entry| entry.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The table against a shadow set: inserts and removals of keys that collide often (few
    /// distinct keys, many probe runs), through several doublings.
    #[test]
    fn slots_agree_with_a_shadow_set() {
        let mut slots = Slots {
            slots: ptr::null_mut(),
            cap: 0,
            len: 0,
        };
        let mut shadow = HashSet::new();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..60_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let user = (1 + rng as usize % 3_000) * 16;
            if shadow.remove(&user) {
                let i = slots.probe(user);
                assert_eq!(slots.get(user).map(|e| e.size), Some(user / 16));
                slots.remove_at(i);
            } else {
                let entry = Entry {
                    user,
                    size: user / 16,
                    align: 16,
                    owner: 1,
                };
                assert!(slots.insert(entry));
                shadow.insert(user);
            }
            if step % 5_000 == 0 {
                assert_eq!(slots.len, shadow.len());
                for k in 1..=3_000 {
                    let user = k * 16;
                    assert_eq!(
                        slots.get(user).is_some(),
                        shadow.contains(&user),
                        "{user:#x}"
                    );
                }
            }
        }
        assert!(slots.cap >= 2 * DEBUG_LARGE_MIN_SLOTS, "the table grew");
        // SAFETY: the table's own mapping, unused from here on.
        unsafe { os::unmap(slots.slots.cast(), slots.cap * size_of::<Entry>()) };
    }
}
