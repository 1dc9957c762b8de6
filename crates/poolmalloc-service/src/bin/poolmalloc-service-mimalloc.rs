//! `poolmalloc compare`'s `service` server with mimalloc installed as this process's
//! `#[global_allocator]`: the runtime, the connections, every request's parse and answer.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    poolmalloc_service::server_main("mimalloc")
}
