#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: mom_config::PartitioningConfig = mom_config::start_service(
        "mom-partitioning",
        "The MOM partitioning service and controller.",
    )?;
    mom_partitioning::run(config).await
}
