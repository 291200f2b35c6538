//! `strand user ...` and `strand acl ...`: users (SCRAM verifiers derived here, never
//! sent as passwords) and ACL entries. Both need cluster admin on a node with auth on;
//! the CLI authenticates with `STRAND_USER` / `STRAND_PASSWORD` (see `main`).

use clap::{Args, Subcommand};
use strand_client::{Admin, Client};
use strand_wire::msg::{AclEntry, AclOperation, AclResource};

/// Environment variable holding a new user's password (`user create`); else a prompt.
pub const NEW_PASSWORD_ENV: &str = "STRAND_NEW_PASSWORD";

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user, or set a new password for an existing one (password from
    /// STRAND_NEW_PASSWORD, else asked for without echo).
    Create { name: String },
    /// Delete a user and its ACL entries.
    Delete { name: String },
    /// List users and their SASL mechanisms (never a secret).
    List,
}

#[derive(Subcommand)]
pub enum AclCommand {
    /// Allow a user an operation on a topic, a group or the cluster.
    Add(AclArgs),
    /// Remove an entry added with `acl add` (same flags).
    Remove(AclArgs),
    /// List every ACL entry.
    List,
}

#[derive(Args)]
pub struct AclArgs {
    /// The user the entry is for.
    #[arg(long)]
    user: String,
    /// A topic (a name prefix with --prefix).
    #[arg(long, conflicts_with_all = ["group", "cluster"])]
    topic: Option<String>,
    /// A consumer group (a name prefix with --prefix).
    #[arg(long, conflicts_with = "cluster")]
    group: Option<String>,
    /// The cluster (topic creation and deletion, users, ACLs).
    #[arg(long)]
    cluster: bool,
    /// --topic / --group is a name prefix.
    #[arg(long)]
    prefix: bool,
    /// read, write, describe or admin.
    #[arg(long)]
    allow: String,
}

pub async fn user(client: Client, cmd: UserCommand) -> Result<(), String> {
    let admin = Admin::new(client);
    match cmd {
        UserCommand::Create { name } => {
            let password = new_password(&name)?;
            admin.create_user(&name, &password).await.map_err(|e| e.to_string())?;
            println!("user {name} saved");
        }
        UserCommand::Delete { name } => {
            admin.delete_user(&name).await.map_err(|e| e.to_string())?;
            println!("user {name} deleted");
        }
        UserCommand::List => {
            for u in admin.list_users().await.map_err(|e| e.to_string())? {
                let role = if u.superuser { " superuser" } else { "" };
                println!("{}\t{}{role}", u.name, u.mechanisms.join(","));
            }
        }
    }
    Ok(())
}

fn new_password(name: &str) -> Result<String, String> {
    if let Ok(password) = std::env::var(NEW_PASSWORD_ENV) {
        return Ok(password);
    }
    let first = rpassword::prompt_password(format!("password for {name}: "))
        .map_err(|e| format!("no {NEW_PASSWORD_ENV} and cannot prompt for a password: {e}"))?;
    let again = rpassword::prompt_password("again: ").map_err(|e| format!("cannot prompt for a password: {e}"))?;
    if first != again {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

pub async fn acl(client: Client, cmd: AclCommand) -> Result<(), String> {
    let admin = Admin::new(client);
    match cmd {
        AclCommand::Add(args) => {
            let entry = entry(args)?;
            admin.alter_acl(true, entry.clone()).await.map_err(|e| e.to_string())?;
            println!("added: {}", show(&entry));
        }
        AclCommand::Remove(args) => {
            let entry = entry(args)?;
            admin.alter_acl(false, entry.clone()).await.map_err(|e| e.to_string())?;
            println!("removed: {}", show(&entry));
        }
        AclCommand::List => {
            for entry in admin.list_acls().await.map_err(|e| e.to_string())? {
                println!("{}", show(&entry));
            }
        }
    }
    Ok(())
}

fn entry(args: AclArgs) -> Result<AclEntry, String> {
    let operation = match args.allow.as_str() {
        "read" => AclOperation::Read,
        "write" => AclOperation::Write,
        "describe" => AclOperation::Describe,
        "admin" => AclOperation::Admin,
        other => return Err(format!("--allow {other:?}: expected read, write, describe or admin")),
    };
    let (resource, name) = match (args.topic, args.group, args.cluster) {
        (Some(t), None, false) => (AclResource::Topic, t),
        (None, Some(g), false) => (AclResource::Group, g),
        (None, None, true) => (AclResource::Cluster, String::new()),
        _ => return Err("give one of --topic, --group or --cluster".into()),
    };
    if args.prefix && resource == AclResource::Cluster {
        return Err("--prefix goes with --topic or --group".into());
    }
    Ok(AclEntry { principal: args.user, resource, name, prefix: args.prefix, operation })
}

fn show(e: &AclEntry) -> String {
    let op = match e.operation {
        AclOperation::Read => "read",
        AclOperation::Write => "write",
        AclOperation::Describe => "describe",
        AclOperation::Admin => "admin",
    };
    let what = match (e.resource, e.prefix) {
        (AclResource::Cluster, _) => "cluster".to_string(),
        (AclResource::Topic, false) => format!("topic {}", e.name),
        (AclResource::Topic, true) => format!("topic prefix {}", e.name),
        (AclResource::Group, false) => format!("group {}", e.name),
        (AclResource::Group, true) => format!("group prefix {}", e.name),
    };
    format!("user {} {op} {what}", e.principal)
}
