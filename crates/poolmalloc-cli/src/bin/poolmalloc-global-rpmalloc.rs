//! `poolmalloc compare`'s child for the `global` workload with rpmalloc installed as this process's
//! `#[global_allocator]`: every `Box`, `Vec` and thread of the run goes through it.

#[global_allocator]
static GLOBAL: rpmalloc::RpMalloc = rpmalloc::RpMalloc;

fn main() {
    poolmalloc_workloads::global::child_main("rpmalloc")
}
