//! What every MOM service binary does first: read `--config`, set up logging, load the file.

use crate::{load, ConfigError};
use clap::{CommandFactory, FromArgMatches, Parser};
use serde::de::DeserializeOwned;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version)]
struct ServiceArgs {
    /// Path of the service's TOML config file.
    #[arg(long, short, env = "MOM_CONFIG")]
    config: PathBuf,
}

/// Parses the command line of binary `name`, logs to stderr at `RUST_LOG` (default info),
/// and returns the loaded config. Exits with usage help on a bad command line.
pub fn start_service<T: DeserializeOwned>(
    name: &'static str,
    about: &'static str,
) -> Result<T, ConfigError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let matches = ServiceArgs::command().name(name).about(about).get_matches();
    let args = ServiceArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    load(&args.config)
}
