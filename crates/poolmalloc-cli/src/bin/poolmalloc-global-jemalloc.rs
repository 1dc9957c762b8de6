//! `poolmalloc compare`'s child for the `global` workload with jemalloc installed as this process's
//! `#[global_allocator]`: every `Box`, `Vec` and thread of the run goes through it.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    poolmalloc_workloads::global::child_main("jemalloc")
}
