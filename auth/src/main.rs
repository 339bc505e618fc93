//! The `mom-auth` binary: reads its config file (`--config`), sets up logging and runs the
//! service until SIGINT/SIGTERM. Exits non-zero if the service cannot start or fails.

use anyhow::Context;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config: mom_config::AuthConfig = mom_config::start_service(
        "mom-auth",
        "The MOM auth service: users, logins, tokens and user administration.",
    )?;
    mom_auth::run(config).await.context("mom-auth failed")
}
