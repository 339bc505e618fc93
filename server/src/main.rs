//! The broker node's binary: reads its config, then runs the node on a Tokio runtime sized by
//! the config's `worker_threads` (one thread per core unless given).
//!
//! The allocator is jemalloc: it keeps freed memory for reuse for a while (its dirty-page
//! decay) where glibc's malloc hands large buffers (a fetch response, a batch's encoding)
//! back to the kernel at once, so each next one page-faults fresh zeroed pages. On this VM a
//! fresh page costs 28-34 µs; a profile of the batch row put 16% of all CPU in clearing them.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let config: mom_config::NodeConfig =
        mom_config::start_service("mom-server", "A MOM broker node.")?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads.get());
    }
    runtime
        .enable_all()
        .build()?
        .block_on(mom_server::run(config))
}
