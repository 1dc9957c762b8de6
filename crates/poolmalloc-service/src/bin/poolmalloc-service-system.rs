//! `poolmalloc compare`'s `service` server with system installed as this process's
//! `#[global_allocator]`: the runtime, the connections, every request's parse and answer.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    poolmalloc_service::server_main("system")
}
