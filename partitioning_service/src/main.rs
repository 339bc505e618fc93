use clap::Parser;
use std::path::PathBuf;

/// The MOM partitioning service.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Path of the service's TOML config file.
    #[arg(long, env = "MOM_PARTITIONING_CONFIG")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    mom_partitioning::run(mom_config::load(&args.config)?).await
}
