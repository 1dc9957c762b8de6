//! What tests need to know of this build: in debug mode (feature `debug`) every block carries a
//! header and pads, so a request lands in a bigger class, fewer requests fit the pools, and a
//! block never stays in place on realloc.
// Each test binary uses part of this.
#![allow(dead_code)]

use poolmalloc_core::config::SMALL_REQUEST_THRESHOLD;
use poolmalloc_core::Class;

pub const DEBUG: bool = cfg!(feature = "debug");

/// Bytes debug mode adds to every small request.
#[cfg(feature = "debug")]
const EXTRA: usize = poolmalloc_core::config::DEBUG_EXTRA;
#[cfg(not(feature = "debug"))]
const EXTRA: usize = 0;

/// The largest request (alignment 8) the pools serve in this build; larger ones go large.
pub const LARGEST_SMALL: usize = SMALL_REQUEST_THRESHOLD - EXTRA;

/// The class a request lands in, in this build: small or medium.
pub fn class_in_this_build(size: usize, align: usize) -> Class {
    poolmalloc_core::pool_class_of(size + EXTRA, align).unwrap()
}
