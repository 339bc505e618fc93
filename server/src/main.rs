use clap::Parser;
use std::path::PathBuf;

/// A MOM broker node.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Path of the node's TOML config file.
    #[arg(long, env = "MOM_NODE_CONFIG")]
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
    let config: mom_config::NodeConfig = mom_config::load(&args.config)?;
    mom_server::run(config).await
}
