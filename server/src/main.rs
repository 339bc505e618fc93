#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: mom_config::NodeConfig =
        mom_config::start_service("mom-server", "A MOM broker node.")?;
    mom_server::run(config).await
}
