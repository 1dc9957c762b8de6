//! poolmalloc's benches live in `benches/workloads.rs` (criterion; `cargo bench -p
//! poolmalloc-benches`) and `instructions.sh` (instruction counts under valgrind). The workloads
//! themselves are in `poolmalloc-workloads`; this library is empty.
