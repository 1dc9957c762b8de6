//! What a column of `compare`'s table is: an allocator of the built-in workloads' table
//! ([`AllocatorId`]) or one a program runs under (`compare -- CMD`'s [`Preload`]).

use std::path::PathBuf;

use poolmalloc_workloads::AllocatorId;

/// A column of the table.
pub trait Column: Clone + PartialEq {
    fn name(&self) -> &str;
    /// poolmalloc's own columns; every other column is a peer.
    fn is_poolmalloc(&self) -> bool;
}

impl Column for AllocatorId {
    fn name(&self) -> &str {
        AllocatorId::name(*self)
    }
    fn is_poolmalloc(&self) -> bool {
        AllocatorId::is_poolmalloc(*self)
    }
}

/// An allocator a program runs under: a library to preload, or none (the system allocator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preload {
    pub name: String,
    pub lib: Option<PathBuf>,
}

impl Column for Preload {
    fn name(&self) -> &str {
        &self.name
    }
    fn is_poolmalloc(&self) -> bool {
        self.name == "poolmalloc"
    }
}

/// The column without a library.
pub const SYSTEM: &str = "system";
