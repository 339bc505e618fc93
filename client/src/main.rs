//! `mom`: command-line tool for the MOM REST gateway.

mod access_commands;
mod list_commands;
mod publish_file;

use access_commands::AccessCommand;
use anyhow::{bail, Context};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use list_commands::ListCommand;
use mom_client::{
    Connection, DeliveryStream, ExchangeKind, MailboxName, PublishOptions, Puller, StreamOptions,
    Transport,
};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "mom",
    version,
    about = "Talk to a MOM message broker through its REST gateway"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Base URL of the gateway.
    #[arg(
        long,
        env = "MOM_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// User name to register or log in as.
    #[arg(long, env = "MOM_USER", global = true)]
    user: Option<String>,
    /// Password of that user.
    #[arg(long, env = "MOM_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,
    /// Bearer token (from `mom login`) to use instead of logging in with user and password.
    #[arg(long, env = "MOM_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print results as JSON (messages as one JSON object per line) for scripts.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create the user given by --user and --password.
    Register,
    /// Log in and print the bearer token.
    Login,
    /// Show whether the gateway is up and how many broker nodes it sees.
    Health,
    /// Declare an exchange.
    DeclareExchange {
        name: String,
        /// How the exchange routes messages.
        #[arg(long, default_value = "direct", value_parser = exchange_kind_parser())]
        kind: ExchangeKind,
    },
    /// Delete an exchange.
    DeleteExchange { name: String },
    /// Declare a queue.
    DeclareQueue { name: String },
    /// Delete a queue with its messages and bindings.
    DeleteQueue { name: String },
    /// Bind a queue to an exchange.
    Bind {
        exchange: String,
        queue: String,
        routing_key: String,
    },
    /// Remove a binding.
    Unbind {
        exchange: String,
        queue: String,
        routing_key: String,
    },
    /// Publish a message to an exchange, or (with --file) one message per line of a file.
    Publish {
        exchange: String,
        routing_key: String,
        /// The message; not given with --file.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        payload: Option<String>,
        /// Drop the message if it is not consumed within this many milliseconds.
        #[arg(long, conflicts_with = "file")]
        ttl_ms: Option<u64>,
        /// Publish every line of this file (`-` for standard input) as a message, in
        /// batches, with a progress line.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        message: MessageOpts,
    },
    /// Print (and ack) messages of a queue.
    Consume {
        queue: String,
        #[command(flatten)]
        opts: ConsumeOpts,
    },
    /// Print how many messages a queue holds.
    Depth { queue: String },
    /// Declare a topic.
    DeclareTopic {
        name: String,
        /// Keep every message this long (also with no subscriber), so that new
        /// subscriptions can start in the past (`subscribe --from-earliest`).
        #[arg(long)]
        retention_ms: Option<u64>,
    },
    /// Delete a topic.
    DeleteTopic { name: String },
    /// Publish a message to every subscriber of a topic.
    PublishTopic {
        topic: String,
        payload: String,
        /// Drop the message if it is not consumed within this many milliseconds.
        #[arg(long)]
        ttl_ms: Option<u64>,
        #[command(flatten)]
        message: MessageOpts,
    },
    /// Create a subscription to a topic (if needed) and print (and ack) its messages.
    Subscribe {
        topic: String,
        subscriber: String,
        /// A new subscription starts with every message the topic retains.
        #[arg(long, conflicts_with = "from_time_ms")]
        from_earliest: bool,
        /// A new subscription starts with the retained messages published at this time (ms
        /// since the Unix epoch) or later.
        #[arg(long)]
        from_time_ms: Option<u64>,
        #[command(flatten)]
        opts: ConsumeOpts,
    },
    /// Delete a subscription.
    Unsubscribe { topic: String, subscriber: String },
    /// List exchanges, queues, topics, bindings, subscriptions, nodes, partitions,
    /// permissions or users.
    #[command(subcommand)]
    List(ListCommand),
    #[command(flatten)]
    Access(AccessCommand),
    /// Print a shell completion script (e.g. `mom completions bash > /etc/bash_completion.d/mom`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
struct ConsumeOpts {
    /// How many messages to print.
    #[arg(long, default_value_t = 1, conflicts_with = "follow")]
    count: u32,
    /// Keep printing messages as they arrive, until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
    /// Leave the messages unacked (they are delivered again once their lease runs out).
    #[arg(long)]
    no_ack: bool,
    /// Give up if no message arrives within this many seconds.
    #[arg(long, default_value_t = 20)]
    wait_secs: u64,
    /// Have the gateway push messages (its gRPC stream) instead of pulling them.
    #[arg(long)]
    stream: bool,
    /// With --stream: at most this many messages unacked at once (the gateway's default: 100).
    #[arg(long, requires = "stream")]
    prefetch: Option<u32>,
    /// With --stream: Server-Sent Events over the REST API instead of gRPC.
    #[arg(long, requires = "stream")]
    sse: bool,
}

/// Where `consume` and `subscribe` get messages: pulls, or the gateway's stream.
enum Source {
    Pull(Puller),
    Stream(DeliveryStream),
}

impl Source {
    /// Pulls sized to what will be printed, or a stream.
    fn of(conn: &Connection, mailbox: MailboxName, opts: &ConsumeOpts) -> Source {
        if opts.stream {
            let prefetch = opts
                .prefetch
                .or((!opts.follow).then_some(opts.count.clamp(1, 1_000)));
            let options = StreamOptions {
                prefetch,
                transport: if opts.sse {
                    Transport::Sse
                } else {
                    Transport::Grpc
                },
                ..Default::default()
            };
            return Source::Stream(conn.stream_from(mailbox, options));
        }
        Source::Pull(sized(conn.puller(mailbox), opts))
    }

    fn mailbox(&self) -> &MailboxName {
        match self {
            Source::Pull(puller) => puller.mailbox(),
            Source::Stream(stream) => stream.mailbox(),
        }
    }

    async fn next_timeout(
        &mut self,
        wait: Duration,
    ) -> Result<Option<mom_client::Delivery>, mom_client::ClientError> {
        match self {
            Source::Pull(puller) => puller.next_timeout(wait).await,
            Source::Stream(stream) => stream.next_timeout(wait).await,
        }
    }

    async fn ack(&self, delivery: &mom_client::Delivery) -> Result<bool, mom_client::ClientError> {
        match self {
            Source::Pull(puller) => puller.ack(delivery).await,
            Source::Stream(stream) => stream.ack(delivery).await,
        }
    }
}

/// What a published message carries besides its payload.
#[derive(Args)]
struct MessageOpts {
    /// A header of the message, as `name=value` (repeatable; names are 1-128 characters of
    /// `[A-Za-z0-9._-]`). Not with --file.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The payload's content type, e.g. `application/json`. Not with --file.
    #[arg(long)]
    content_type: Option<String>,
    /// Keep the message from consumers for this many milliseconds (delayed delivery). Not
    /// with --file.
    #[arg(long)]
    delay_ms: Option<u64>,
}

impl MessageOpts {
    fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.content_type.is_none() && self.delay_ms.is_none()
    }

    fn options(&self, ttl_ms: Option<u64>) -> PublishOptions {
        PublishOptions {
            ttl: ttl(ttl_ms),
            delay: self.delay_ms.map(Duration::from_millis),
            headers: self.headers.iter().cloned().collect(),
            content_type: self.content_type.clone(),
            ..Default::default()
        }
    }
}

/// `name=value` of `--header`; the value may be empty, the name may not.
fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

fn exchange_kind_parser() -> impl TypedValueParser<Value = ExchangeKind> {
    PossibleValuesParser::new(["direct", "topic", "fanout"]).try_map(|s| s.parse::<ExchangeKind>())
}

impl Global {
    fn credentials(&self) -> anyhow::Result<(&str, &str)> {
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => Ok((user, password)),
            _ => bail!("--user (MOM_USER) and --password (MOM_PASSWORD) are required"),
        }
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        if let Some(token) = &self.token {
            return Ok(Connection::with_token(self.url.as_str(), token.as_str()));
        }
        let (user, password) = self.credentials()?;
        Connection::connect(&self.url, user, password)
            .await
            .with_context(|| format!("logging in as {user:?} at {}", self.url))
    }
}

fn ttl(ttl_ms: Option<u64>) -> Option<Duration> {
    ttl_ms.map(Duration::from_millis)
}

/// Prints one delivery: its payload, or (`--json`) the whole delivery as one JSON line.
fn print_delivery(delivery: &mom_client::Delivery, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(delivery)?);
    } else {
        println!("{}", delivery.payload);
    }
    Ok(())
}

/// Prints `opts.count` messages from `puller` (or, with `--follow`, every message until
/// Ctrl-C), acking each unless told not to.
async fn print_messages(mut puller: Source, opts: &ConsumeOpts, json: bool) -> anyhow::Result<()> {
    let wait = Duration::from_secs(opts.wait_secs);
    // Listening from here on: a Ctrl-C while a message is being printed or acked is not lost.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut got = 0;
    while opts.follow || got < opts.count {
        let next = tokio::select! {
            next = puller.next_timeout(wait) => next?,
            _ = interrupts.recv() => return Ok(()),
        };
        let Some(delivery) = next else {
            if opts.follow {
                continue;
            }
            bail!(
                "no message arrived in {} within {} s (got {got} of {})",
                puller.mailbox(),
                opts.wait_secs,
                opts.count
            );
        };
        print_delivery(&delivery, json)?;
        got += 1;
        if !opts.no_ack && !puller.ack(&delivery).await? {
            eprintln!("warning: ack of message {} was stale", delivery.message_id);
        }
    }
    Ok(())
}

/// A puller that leases no more messages than it will print.
fn sized(puller: Puller, opts: &ConsumeOpts) -> Puller {
    if opts.follow {
        return puller;
    }
    puller.with_batch_size(opts.count.clamp(1, 100))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Register => {
            let (user, password) = g.credentials()?;
            Connection::register(&g.url, user, password).await?;
            println!("registered {user}");
        }
        Command::Login => println!("{}", g.connect().await?.token()),
        Command::Health => {
            let health = Connection::with_token(g.url.as_str(), "").health().await?;
            println!("{} ({} nodes)", health.status, health.nodes);
        }
        Command::DeclareExchange { name, kind } => {
            g.connect().await?.declare_exchange(name, *kind).await?;
            println!("exchange {name} ({kind}) declared");
        }
        Command::DeleteExchange { name } => {
            g.connect().await?.delete_exchange(name).await?;
            println!("exchange {name} deleted");
        }
        Command::DeclareQueue { name } => {
            g.connect().await?.declare_queue(name).await?;
            println!("queue {name} declared");
        }
        Command::DeleteQueue { name } => {
            g.connect().await?.delete_queue(name).await?;
            println!("queue {name} deleted");
        }
        Command::Bind {
            exchange,
            queue,
            routing_key,
        } => {
            g.connect()
                .await?
                .bind(exchange, queue, routing_key)
                .await?;
            println!("bound {queue} to {exchange} with {routing_key:?}");
        }
        Command::Unbind {
            exchange,
            queue,
            routing_key,
        } => {
            g.connect()
                .await?
                .unbind(exchange, queue, routing_key)
                .await?;
            println!("unbound {queue} from {exchange} with {routing_key:?}");
        }
        Command::Publish {
            exchange,
            routing_key,
            payload,
            ttl_ms,
            file,
            message,
        } => {
            let conn = g.connect().await?;
            if let Some(file) = file {
                if !message.is_empty() {
                    bail!("--header, --content-type and --delay-ms do not go with --file");
                }
                return publish_file::run(&conn, exchange, routing_key, file).await;
            }
            let options = message.options(*ttl_ms);
            let payload = payload.as_deref().unwrap_or_default();
            let published = conn
                .publish_with(exchange, routing_key, payload, options)
                .await?;
            if g.json {
                println!("{}", serde_json::to_string(&published)?);
            } else {
                println!(
                    "published {} to {} queue(s)",
                    published.message_id, published.routed
                );
            }
        }
        Command::Consume { queue, opts } => {
            let conn = g.connect().await?;
            let source = Source::of(&conn, MailboxName::Queue(queue.clone()), opts);
            print_messages(source, opts, g.json).await?;
        }
        Command::Depth { queue } => {
            let depth = g.connect().await?.queue_depth(queue).await?;
            println!("ready {} leased {}", depth.ready, depth.leased);
        }
        Command::DeclareTopic { name, retention_ms } => {
            let conn = g.connect().await?;
            match retention_ms {
                Some(ms) => {
                    conn.declare_topic_with_retention(name, Duration::from_millis(*ms))
                        .await?
                }
                None => conn.declare_topic(name).await?,
            }
            println!("topic {name} declared");
        }
        Command::DeleteTopic { name } => {
            g.connect().await?.delete_topic(name).await?;
            println!("topic {name} deleted");
        }
        Command::PublishTopic {
            topic,
            payload,
            ttl_ms,
            message,
        } => {
            let conn = g.connect().await?;
            let published = conn
                .publish_topic_with(topic, payload.as_str(), message.options(*ttl_ms))
                .await?;
            println!(
                "published {} to {} subscriber(s)",
                published.message_id, published.routed
            );
        }
        Command::Subscribe {
            topic,
            subscriber,
            from_earliest,
            from_time_ms,
            opts,
        } => {
            let conn = g.connect().await?;
            let start = match (from_earliest, from_time_ms) {
                (true, _) => mom_client::SubscriptionStart::Earliest,
                (_, Some(ms)) => mom_client::SubscriptionStart::Time(
                    std::time::UNIX_EPOCH + Duration::from_millis(*ms),
                ),
                _ => mom_client::SubscriptionStart::Latest,
            };
            let subscription = conn.subscribe_from(topic, subscriber, &start).await?;
            let source = Source::of(&conn, subscription.mailbox().clone(), opts);
            print_messages(source, opts, g.json).await?;
        }
        Command::Unsubscribe { topic, subscriber } => {
            g.connect().await?.unsubscribe(topic, subscriber).await?;
            println!("unsubscribed {subscriber} from {topic}");
        }
        Command::List(command) => list_commands::run(g.connect().await?, command, g.json).await?,
        Command::Access(command) => access_commands::run(g.connect().await?, command).await?,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "mom", &mut std::io::stdout());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mom: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_consume_defaults_and_kinds() {
        let cli = Cli::try_parse_from(["mom", "consume", "q"]).unwrap();
        let Command::Consume { queue, opts } = cli.command else {
            panic!("not consume")
        };
        assert_eq!(
            (queue.as_str(), opts.count, opts.no_ack, opts.wait_secs),
            ("q", 1, false, 20)
        );

        let cli =
            Cli::try_parse_from(["mom", "declare-exchange", "e", "--kind", "fanout"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::DeclareExchange {
                kind: ExchangeKind::Fanout,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["mom", "declare-exchange", "e", "--kind", "nope"]).is_err());
    }

    #[test]
    fn parses_grants() {
        let cli =
            Cli::try_parse_from(["mom", "grant", "bob", "queue", "orders.*", "read", "write"])
                .unwrap();
        let Command::Access(AccessCommand::Grant {
            grantee,
            permissions,
            ..
        }) = cli.command
        else {
            panic!("not grant")
        };
        assert_eq!((grantee.as_str(), permissions.len()), ("bob", 2));
        // The grantee does not take the place of the global --user.
        let cli = Cli::try_parse_from([
            "mom", "--user", "alice", "grant", "bob", "queue", "q", "read",
        ])
        .unwrap();
        assert_eq!(cli.global.user.as_deref(), Some("alice"));
        let cli =
            Cli::try_parse_from(["mom", "--password", "mine", "create-user", "bob", "theirs"])
                .unwrap();
        assert_eq!(cli.global.password.as_deref(), Some("mine"));
        assert!(Cli::try_parse_from(["mom", "grant", "bob", "queue", "q"]).is_err());
        assert!(Cli::try_parse_from(["mom", "grant", "bob", "cake", "q", "read"]).is_err());
    }

    #[test]
    fn parses_headers_and_content_type_of_a_publish() {
        let cli = Cli::try_parse_from([
            "mom",
            "publish",
            "ex",
            "k",
            "hi",
            "--header",
            "trace-id=t-1",
            "--header",
            "empty=",
            "--header",
            "eq=a=b",
            "--content-type",
            "text/plain",
        ])
        .unwrap();
        let Command::Publish { message, .. } = cli.command else {
            panic!("not publish")
        };
        let options = message.options(Some(5));
        assert_eq!(options.headers["trace-id"], "t-1");
        assert_eq!(options.headers["empty"], "");
        assert_eq!(options.headers["eq"], "a=b");
        assert_eq!(options.content_type.as_deref(), Some("text/plain"));
        assert_eq!(options.ttl, Some(Duration::from_millis(5)));
        for bad in ["novalue", "=v"] {
            assert!(
                Cli::try_parse_from(["mom", "publish", "ex", "k", "hi", "--header", bad]).is_err(),
                "{bad}"
            );
        }
        let cli =
            Cli::try_parse_from(["mom", "publish-topic", "t", "hi", "--header", "a=1"]).unwrap();
        assert!(
            matches!(cli.command, Command::PublishTopic { message, .. } if !message.is_empty())
        );
    }

    #[test]
    fn global_options_go_after_the_subcommand_too() {
        let cli = Cli::try_parse_from(["mom", "depth", "q", "--url", "http://x:1", "--user", "u"])
            .unwrap();
        assert_eq!(cli.global.url, "http://x:1");
        assert_eq!(cli.global.user.as_deref(), Some("u"));
    }
}
