use anyhow::Context;
use clap::Parser;
use mom_config::AuthConfig;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

/// MOM auth service: user registration and login over HTTP.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Path of the TOML config file.
    #[arg(long, short, env = "MOM_AUTH_CONFIG")]
    config: PathBuf,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config: AuthConfig = mom_config::load(&args.config)?;
    mom_auth::run(config).await.context("mom-auth failed")
}
