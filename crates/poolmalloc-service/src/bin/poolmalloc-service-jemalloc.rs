//! `poolmalloc compare`'s `service` server with jemalloc installed as this process's
//! `#[global_allocator]`: the runtime, the connections, every request's parse and answer.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    poolmalloc_service::server_main("jemalloc")
}
