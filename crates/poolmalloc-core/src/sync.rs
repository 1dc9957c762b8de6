//! The core's shared-state primitives, swapped for loom's under `cfg(poolmalloc_loom)` so the loom
//! models explore every interleaving of the lock protocol (tokio's `loom` module, in small).

#[cfg(not(poolmalloc_loom))]
pub(crate) use parking_lot::{Mutex, MutexGuard};

#[cfg(poolmalloc_loom)]
pub(crate) use loom_mutex::{Mutex, MutexGuard};

#[cfg(poolmalloc_loom)]
mod loom_mutex {
    /// loom's mutex behind parking_lot's signature (`lock` returns the guard directly).
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .expect("a loom model thread panicked while holding a core lock")
        }
    }
}

/// Defines a function that is `const` in normal builds and plain under loom, whose primitives
/// cannot be built in a const context (the global allocator's core is a `static`).
macro_rules! const_fn_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(poolmalloc_loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(poolmalloc_loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}
pub(crate) use const_fn_unless_loom;
