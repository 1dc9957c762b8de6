//! `poolmalloc compare`'s child for the `global` workload with system installed as this process's
//! `#[global_allocator]`: every `Box`, `Vec` and thread of the run goes through it.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    poolmalloc_workloads::global::child_main("system")
}
