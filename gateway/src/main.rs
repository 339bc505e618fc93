//! The gateway's binary: reads its config and serves the REST API.
//!
//! jemalloc for the same reason as the broker node's (server/src/main.rs): request bodies of
//! batches and the gRPC buffers behind them are large, and glibc's malloc returns such
//! buffers to the kernel at once, so each next one page-faults fresh zeroed pages.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config: mom_config::GatewayConfig =
        mom_config::start_service("mom-gateway", "The MOM gateway (REST API).")?;
    mom_gateway::run(config).await
}
