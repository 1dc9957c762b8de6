//! `poolmalloc compare`'s `service` server with poolmalloc installed as this process's
//! `#[global_allocator]`: the runtime, the connections, every request's parse and answer.

#[global_allocator]
static GLOBAL: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;

fn main() {
    poolmalloc_service::server_main("poolmalloc")
}
