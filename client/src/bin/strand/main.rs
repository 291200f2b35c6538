//! The `strand` command-line tool (DESIGN §8): topic administration, produce from
//! stdin (one message per line: a value, a key and value, or a JSON object), consume to
//! stdout (values, chosen fields, or JSON objects), alone or as a member of a consumer
//! group, and group inspection. docs/CLIENT.md ("The strand CLI") documents every flag.
//! The node address is `--bootstrap`, else `$STRAND_BOOTSTRAP`, else 127.0.0.1:7070.
//! TLS: `--tls-ca` (else `$STRAND_TLS_CA`) turns it on; `--tls-cert`/`--tls-key` (else
//! `$STRAND_TLS_CERT`/`$STRAND_TLS_KEY`) add a client certificate for mutual TLS.
//! Exit status 0 on success; otherwise a one-line reason on stderr and status 1
//! (2 for usage errors, from clap). `produce` stops at the first line not stored and
//! says which lines were; `consume --offset` outside a partition's log is an error.
//! With `STRAND_USER` and `STRAND_PASSWORD` set, every connection authenticates (SASL
//! SCRAM-SHA-256, or `STRAND_SASL_MECHANISM=SCRAM-SHA-512`).
#![forbid(unsafe_code)]

mod consume;
mod group;
mod json;
mod produce;
mod security;
mod time_arg;
mod topic;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strand_client::{Client, ClientConfig, ClientError, ClientTls, Credentials, ReadPreference, ScramMechanism};

use consume::{ConsumeArgs, ReadFromArg};
use group::GroupCommand;
use produce::ProduceArgs;
use security::{AclCommand, UserCommand};
use topic::TopicCommand;

#[derive(Parser)]
#[command(name = "strand", version, about = "Command-line client for the Strand streaming log")]
struct Cli {
    /// Address of any node's public port (comma-separated: tried in order) [default:
    /// $STRAND_BOOTSTRAP if set, else 127.0.0.1:7070].
    #[arg(long, global = true)]
    bootstrap: Option<String>,
    /// Speak TLS, trusting the CA certificates in this PEM file [default: $STRAND_TLS_CA].
    #[arg(long, global = true)]
    tls_ca: Option<PathBuf>,
    /// Mutual TLS: this client's certificate (PEM); needs --tls-key [default: $STRAND_TLS_CERT].
    #[arg(long, global = true)]
    tls_cert: Option<PathBuf>,
    /// Mutual TLS: the private key of --tls-cert (PEM) [default: $STRAND_TLS_KEY].
    #[arg(long, global = true)]
    tls_key: Option<PathBuf>,
    /// Check every node's certificate for this DNS name instead of the IP address dialed.
    #[arg(long, global = true)]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe or delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Send stdin to a topic, one message per line (the newline is not part of the
    /// message; with --key-separator a line is key SEP value; with --format json a line
    /// is a JSON object); prints the number of messages acknowledged. Stops at the first line
    /// refused (or not sendable, e.g. longer than the node's frame limit) and exits 1,
    /// naming that line and which lines were stored; non-retriable errors
    /// (MESSAGE_TOO_LARGE, CORRUPT_BATCH, INVALID_*, STORAGE_FULL) are never retried.
    Produce(ProduceArgs),
    /// Print a topic's messages to stdout: one value per line, chosen fields
    /// (--print-*), or one JSON object per line (--format json).
    Consume(ConsumeArgs),
    /// List or describe consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Create, delete or list users (needs cluster admin when the node requires auth).
    #[command(subcommand)]
    User(UserCommand),
    /// Add, remove or list ACL entries (needs cluster admin when the node requires auth).
    #[command(subcommand)]
    Acl(AclCommand),
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

/// Environment variable naming the node when `--bootstrap` is not given.
const BOOTSTRAP_ENV: &str = "STRAND_BOOTSTRAP";
/// The node address when neither `--bootstrap` nor `$STRAND_BOOTSTRAP` is given.
const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:7070";

/// The address to use and where it came from (named in connection errors, so a user who
/// set one source and got another sees which).
fn bootstrap(flag: Option<String>) -> (String, &'static str) {
    if let Some(addr) = flag {
        return (addr, "from --bootstrap");
    }
    match std::env::var(BOOTSTRAP_ENV) {
        Ok(addr) if !addr.trim().is_empty() => (addr, "from STRAND_BOOTSTRAP"),
        _ => (BOOTSTRAP_DEFAULT.to_string(), "the default; set --bootstrap or STRAND_BOOTSTRAP"),
    }
}

/// A flag, else its environment variable (unset or empty = not given).
fn flag_or_env(flag: Option<PathBuf>, env: &str) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os(env).filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// The TLS settings of the global flags (and their environment variables), if any.
fn tls(cli: &Cli) -> Result<Option<ClientTls>, String> {
    let ca = flag_or_env(cli.tls_ca.clone(), "STRAND_TLS_CA");
    let cert = flag_or_env(cli.tls_cert.clone(), "STRAND_TLS_CERT");
    let key = flag_or_env(cli.tls_key.clone(), "STRAND_TLS_KEY");
    let client = match (&cert, &key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together (mutual TLS)".to_string()),
    };
    let Some(ca) = ca else {
        return match (client, &cli.tls_server_name) {
            (None, None) => Ok(None),
            _ => Err("--tls-cert, --tls-key and --tls-server-name need --tls-ca (or STRAND_TLS_CA)".to_string()),
        };
    };
    let mut tls = ClientTls::from_files(&ca, client).map_err(|e| e.to_string())?;
    tls.server_name = cli.tls_server_name.clone();
    Ok(Some(tls))
}

/// What a connect failure likely means for TLS, appended to the error line.
fn tls_hint(reason: &str, tls_on: bool) -> &'static str {
    if tls_on && reason.contains("CertificateRequired") {
        " (the node asks for a client certificate: give --tls-cert and --tls-key)"
    } else if tls_on && reason.contains("UnknownIssuer") {
        " (the node's certificate is not signed by a CA in --tls-ca)"
    } else if tls_on && reason.contains("TLS handshake timed out") {
        " (does the node speak TLS? it needs --tls-cert)"
    } else if !tls_on && reason.contains("closed by node") {
        " (if the node speaks TLS, give --tls-ca)"
    } else {
        ""
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match &cli.command {
        Command::Produce(args) => produce::check_args(args)?,
        Command::Consume(args) => consume::check_args(args)?,
        _ => {}
    }
    let read_preference = match &cli.command {
        Command::Consume(ConsumeArgs { read_from: ReadFromArg::Nearest, .. }) => ReadPreference::Nearest,
        _ => ReadPreference::Leader,
    };
    let tls = tls(&cli)?;
    let tls_on = tls.is_some();
    let (addr, source) = bootstrap(cli.bootstrap);
    let config = ClientConfig {
        client_id: "strand-cli".to_string(),
        read_preference,
        tls,
        credentials: credentials()?,
        ..ClientConfig::new(addr.clone())
    };
    let client = Client::connect(config).await.map_err(|e| {
        let reason = match e {
            ClientError::Connect { reason, .. } => reason,
            e => e.to_string(),
        };
        format!("cannot connect to {addr} ({source}): {reason}{}", tls_hint(&reason, tls_on))
    })?;
    match cli.command {
        Command::Topic(cmd) => topic::topic(client, cmd).await.map_err(|e| e.to_string()),
        Command::Produce(args) => produce::produce(client, args).await,
        Command::Consume(args) if args.group.is_some() => consume::consume_group(client, args).await,
        Command::Consume(args) => consume::consume(client, args).await,
        Command::Group(cmd) => group::group(client, cmd).await,
        Command::User(cmd) => security::user(client, cmd).await,
        Command::Acl(cmd) => security::acl(client, cmd).await,
    }
}

/// Environment variables the CLI authenticates with.
const USER_ENV: &str = "STRAND_USER";
const PASSWORD_ENV: &str = "STRAND_PASSWORD";
const MECHANISM_ENV: &str = "STRAND_SASL_MECHANISM";

/// The credentials from the environment: none without `STRAND_USER`.
fn credentials() -> Result<Option<Credentials>, String> {
    let Ok(user) = std::env::var(USER_ENV) else { return Ok(None) };
    let password = std::env::var(PASSWORD_ENV).map_err(|_| format!("{USER_ENV} is set but {PASSWORD_ENV} is not"))?;
    let mechanism = match std::env::var(MECHANISM_ENV) {
        Ok(name) => ScramMechanism::parse(&name)
            .ok_or_else(|| format!("{MECHANISM_ENV}={name:?}: expected SCRAM-SHA-256 or SCRAM-SHA-512"))?,
        Err(_) => ScramMechanism::Sha256,
    };
    Ok(Some(Credentials { user, password, mechanism }))
}
