//! What the `poolmalloc` command shares with its small helper binaries (the commands themselves
//! are in `main.rs` and its modules).

pub mod launch;
