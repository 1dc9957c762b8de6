//! `poolmalloc compare`'s `service` server with snmalloc installed as this process's
//! `#[global_allocator]`: the runtime, the connections, every request's parse and answer.

#[global_allocator]
static GLOBAL: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;

fn main() {
    poolmalloc_service::server_main("snmalloc")
}
