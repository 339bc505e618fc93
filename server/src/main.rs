//! The broker node's binary: reads its config, then runs the node on a Tokio runtime sized by
//! the config's `worker_threads` (one thread per core unless given).

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
