//! What a build's checks add to the one alloc/free path (`frontend`), after mimalloc's
//! `track.h`: a block on its way to the program and on its way back passes through a `Hooks`
//! implementation, chosen as a type parameter.
//!
//! - `Plain`: the blocks as they are. Its calls into the core's `tools` mark blocks live and
//!   freed for valgrind (feature `valgrind`) and ASan (feature `asan`), and compile to nothing
//!   without those features, so the plain build's fast path is the bare cache pop and push.
//! - `debug::Debug` (feature `debug`): every block laid out with its requested size and
//!   forbidden bytes, and checked when it comes back (see `debug`).
//!
//! `frontend::Active` is the one the cargo features choose for `PoolMalloc` and `Heap`; the C
//! library picks `Plain` or `Debug` when it starts (`POOLMALLOC_DEBUG`).

use core::alloc::Layout;

use poolmalloc_core::{
    class_of, class_tag, is_small, large, medium_class_of, pool_class_of, tools, Class, Core,
    FreeBlock, Kind, LargeTally, PageSource,
};

use crate::bootstrap;
use crate::misuse::Misuse;

/// What a build's checks do with a block on its way to the program and back.
pub(crate) trait Hooks {
    /// True when every free must be checked against the block itself (its registry entry and
    /// its own record) even where the caller's layout already says which path it is on.
    const CHECKS_EVERY_FREE: bool;

    /// The small class whose blocks serve `size` bytes aligned to `align`; `None` for the
    /// medium classes or the large path (the fast path asks this first).
    fn class_for(size: usize, align: usize) -> Option<Class>;

    /// True when `class_for(size, align)` is a class, where the class itself is not needed.
    #[inline(always)]
    fn is_small(size: usize, align: usize) -> bool {
        Self::class_for(size, align).is_some()
    }

    /// The medium class serving a request `class_for` sends elsewhere; `None` for the large
    /// path.
    fn medium_class_for(size: usize, align: usize) -> Option<Class>;

    /// The class serving a request, small or medium; `None` for the large path.
    #[inline]
    fn pool_class_for(size: usize, align: usize) -> Option<Class> {
        Self::class_for(size, align).or_else(|| Self::medium_class_for(size, align))
    }

    /// A block of `class` just taken for a request of `size` bytes: the program's pointer.
    ///
    /// # Safety
    /// `block` is a block of at least `class.block_size()` bytes, ours to hand out, aligned as
    /// its class is, and `class == Self::class_for(size, _)`.
    unsafe fn on_alloc(block: *mut u8, class: Class, size: usize) -> *mut u8;

    /// A pointer the program gives back that lies in one of our pools, of `kind`: the start of
    /// the block to free, or the misuse (nothing changed). Hooks that need the pool's class
    /// read its tag (`class_tag`): the plain build's free reads nothing but the owner.
    ///
    /// # Safety
    /// `user` lies in one of the face's arenas of `kind` (or the bootstrap region, laid out
    /// like small pools), so its pool header is mapped.
    unsafe fn on_free(user: *mut u8, kind: Kind) -> Result<*mut u8, Misuse>;

    /// The bytes the program may use at `user`, a live block of one of our pools whose class
    /// tag is `tag`, or the misuse.
    ///
    /// # Safety
    /// As for `on_free`; `tag` is the pool's class tag.
    unsafe fn pool_size(user: *mut u8, tag: u8) -> Result<usize, Misuse>;

    /// The bytes the program may use at `user`, a block of the bootstrap region.
    ///
    /// # Safety
    /// `user` came from the bootstrap region through `on_alloc`.
    unsafe fn bootstrap_size(user: *mut u8) -> Result<usize, Misuse>;

    /// A large-path block for `layout`, counted in `tally`; null when out of memory.
    fn large_alloc<S: PageSource>(
        core: &Core<S>,
        tally: &LargeTally,
        layout: Layout,
        zeroed: bool,
    ) -> *mut u8;

    /// Frees a pointer that lies in none of `core`'s pools, given back with `layout` if the
    /// caller has one; misuse is reported and nothing freed.
    ///
    /// # Safety
    /// If `user` is a live large block of `core`, nobody uses it afterwards.
    unsafe fn large_free<S: PageSource>(
        core: &Core<S>,
        tally: &LargeTally,
        user: *mut u8,
        layout: Option<Layout>,
    );

    /// The bytes the program may use at `user`, a live large block of `core`, or the misuse.
    ///
    /// # Safety
    /// `user` lies in none of `core`'s pools and is a live block of the large path or of the C
    /// library's allocator.
    unsafe fn large_size<S: PageSource>(core: &Core<S>, user: *mut u8) -> Result<usize, Misuse>;

    /// True when `realloc` may keep a block whose new size maps to the same class.
    const RESIZES_IN_PLACE: bool;

    /// True when a free block's link is checked before it is followed (secure mode: a link
    /// that leaves its pool is reported, `Misuse::CorruptLink`, and not followed).
    const CHECKS_LINKS: bool;
}

/// The class a pool's tag names (0 and values a misused pointer's garbage may hold: none).
#[inline(always)]
pub(crate) fn class_of_tag(tag: u8) -> Option<Class> {
    (tag as usize).checked_sub(1).and_then(Class::new)
}

/// Bytes of a freed block the cache and core keep using: its free-list link.
const LINK: usize = core::mem::size_of::<FreeBlock>();

/// The plain build: blocks as they are, marked for the tools when their features are on.
/// `Plain<true>` is secure mode (`Secure`): the same, with every free-list link checked before
/// it is followed.
pub(crate) struct Plain<const CHECKS_LINKS: bool = false>;

/// Secure mode (feature `secure`, `POOLMALLOC_SECURE=1`): the plain hooks, links checked.
pub(crate) type Secure = Plain<true>;

impl<const CHECKS_LINKS: bool> Hooks for Plain<CHECKS_LINKS> {
    const CHECKS_EVERY_FREE: bool = false;
    const RESIZES_IN_PLACE: bool = true;
    const CHECKS_LINKS: bool = CHECKS_LINKS;

    #[inline(always)]
    fn class_for(size: usize, align: usize) -> Option<Class> {
        class_of(size, align)
    }

    #[inline(always)]
    fn is_small(size: usize, align: usize) -> bool {
        is_small(size, align)
    }

    #[inline]
    fn medium_class_for(size: usize, align: usize) -> Option<Class> {
        medium_class_of(size, align)
    }

    #[inline(always)]
    unsafe fn on_alloc(block: *mut u8, class: Class, _size: usize) -> *mut u8 {
        mark_live(block, class);
        block
    }

    #[inline(always)]
    unsafe fn on_free(user: *mut u8, kind: Kind) -> Result<*mut u8, Misuse> {
        if !tools::ENABLED {
            return Ok(user);
        }
        // SAFETY: the pool header is mapped (precondition).
        if let Some(class) = class_of_tag(unsafe { class_tag(user, kind) }) {
            // SAFETY: the program gave back a live block of `class` (the pool's tag says so);
            // LINK is below the smallest block.
            unsafe { tools::mark_freed(user, class.block_size(), LINK) };
        }
        Ok(user)
    }

    unsafe fn pool_size(_user: *mut u8, tag: u8) -> Result<usize, Misuse> {
        // A pool serving no class (a misused pointer) has no usable bytes.
        Ok(class_of_tag(tag).map_or(0, Class::block_size))
    }

    unsafe fn bootstrap_size(user: *mut u8) -> Result<usize, Misuse> {
        // SAFETY: a bootstrap block (precondition).
        Ok(unsafe { bootstrap::size_of(user) })
    }

    fn large_alloc<S: PageSource>(
        _core: &Core<S>,
        tally: &LargeTally,
        layout: Layout,
        zeroed: bool,
    ) -> *mut u8 {
        large::alloc(tally, layout, zeroed)
    }

    unsafe fn large_free<S: PageSource>(
        _core: &Core<S>,
        tally: &LargeTally,
        user: *mut u8,
        layout: Option<Layout>,
    ) {
        match layout {
            // A pool layout, yet in none of our pools: another heap's block, or none at all.
            Some(l) if pool_class_of(l.size(), l.align()).is_some() => {
                return crate::misuse::report(Misuse::foreign(user as usize));
            }
            // A zero-size layout's pointer is no block (`large::alloc`).
            Some(l) if l.size() == 0 => return,
            _ => {}
        }
        // SAFETY: not in our pools and not small, so a large-path block (precondition).
        unsafe { large::free(tally, user) }
    }

    unsafe fn large_size<S: PageSource>(_core: &Core<S>, user: *mut u8) -> Result<usize, Misuse> {
        // SAFETY: a live C-library block (precondition).
        Ok(unsafe { large::usable_size(user) })
    }
}

/// Tells the tools a block of `class` is live (a bootstrap block is not theirs to track).
#[inline(always)]
pub(crate) fn mark_live(block: *mut u8, class: Class) {
    if tools::ENABLED && !bootstrap::contains(block) {
        // SAFETY: a block of `class` just taken for the program (`on_alloc`'s precondition).
        unsafe { tools::mark_live(block, class.block_size()) };
    }
}
