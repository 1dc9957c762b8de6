//! `poolmalloc compare`'s `service` server with rpmalloc installed as this process's
//! `#[global_allocator]`: the runtime, the connections, every request's parse and answer.

#[global_allocator]
static GLOBAL: rpmalloc::RpMalloc = rpmalloc::RpMalloc;

fn main() {
    poolmalloc_service::server_main("rpmalloc")
}
