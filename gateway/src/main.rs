use clap::Parser;
use std::path::PathBuf;

/// The MOM gateway (REST API).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Path of the gateway's TOML config file.
    #[arg(long, env = "MOM_GATEWAY_CONFIG")]
    config: PathBuf,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    mom_gateway::run(mom_config::load(&args.config)?).await
}
