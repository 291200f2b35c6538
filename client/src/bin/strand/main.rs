//! The `strand` command-line tool (DESIGN §8): topic administration, produce from
//! stdin (one message per line), consume to stdout (one value per line), alone or
//! as a member of a consumer group, and group inspection.
//! Exit status 0 on success; otherwise a one-line reason on stderr and status 1
//! (2 for usage errors, from clap). `produce` stops at the first line not stored and
//! says which lines were; `consume --offset` outside a partition's log is an error.
#![forbid(unsafe_code)]

mod consume;
mod group;
mod produce;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strand_client::{Client, ClientConfig, ReadPreference};

use consume::{ConsumeArgs, ReadFromArg};
use group::GroupCommand;
use produce::ProduceArgs;
use topic::TopicCommand;

#[derive(Parser)]
#[command(name = "strand", version, about = "Command-line client for the Strand streaming log")]
struct Cli {
    /// Address of any node's public port.
    #[arg(long, default_value = "127.0.0.1:7070", global = true)]
    bootstrap: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe or delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Send stdin to a topic, one message per line (the newline is not part of the
    /// message); prints the number of messages acknowledged. Stops at the first line
    /// refused (or not sendable, e.g. longer than the node's frame limit) and exits 1,
    /// naming that line and which lines were stored; non-retriable errors
    /// (MESSAGE_TOO_LARGE, CORRUPT_BATCH, INVALID_*, STORAGE_FULL) are never retried.
    Produce(ProduceArgs),
    /// Print a topic's messages to stdout, one value per line.
    Consume(ConsumeArgs),
    /// List or describe consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => fail(&reason),
    }
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("strand: {reason}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> Result<(), String> {
    let read_preference = match &cli.command {
        Command::Consume(ConsumeArgs { read_from: ReadFromArg::Nearest, .. }) => ReadPreference::Nearest,
        _ => ReadPreference::Leader,
    };
    let config = ClientConfig {
        client_id: "strand-cli".to_string(),
        read_preference,
        ..ClientConfig::new(cli.bootstrap.clone())
    };
    let client = Client::connect(config).await.map_err(|e| e.to_string())?;
    match cli.command {
        Command::Topic(cmd) => topic::topic(client, cmd).await.map_err(|e| e.to_string()),
        Command::Produce(args) => produce::produce(client, args).await,
        Command::Consume(args) if args.group.is_some() => consume::consume_group(client, args).await,
        Command::Consume(args) => consume::consume(client, args).await,
        Command::Group(cmd) => group::group(client, cmd).await,
    }
}
