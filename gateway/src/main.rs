#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config: mom_config::GatewayConfig =
        mom_config::start_service("mom-gateway", "The MOM gateway (REST API).")?;
    mom_gateway::run(config).await
}
