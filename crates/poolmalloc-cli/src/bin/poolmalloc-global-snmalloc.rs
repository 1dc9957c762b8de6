//! `poolmalloc compare`'s child for the `global` workload with snmalloc installed as this process's
//! `#[global_allocator]`: every `Box`, `Vec` and thread of the run goes through it.

#[global_allocator]
static GLOBAL: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;

fn main() {
    poolmalloc_workloads::global::child_main("snmalloc")
}
