//! `strand topic`: create, list, describe and delete topics.

use std::io::Write;

use clap::Subcommand;
use strand_client::admin::TopicDescription;
use strand_client::{Admin, Client, ClientError};

#[derive(Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long)]
        partitions: u32,
        /// Replicas per partition (chain length).
        #[arg(long, default_value_t = 1)]
        replication: u16,
    },
    /// List topics: one line per topic, `NAME<TAB>PARTITIONS<TAB>REPLICATION`.
    List,
    /// Show a topic's partitions and replicas (two tab-separated tables with headers):
    /// `partition leader shard chain epoch commit log_start log_end` (chain head first;
    /// offsets as the head reports them), then
    /// `partition replica role log_end commit lag` per chain member, asked of its own
    /// node; lag = head log end − replica log end; `-` = the node could not be asked.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
}

pub(crate) async fn topic(client: Client, cmd: TopicCommand) -> Result<(), ClientError> {
    let admin = Admin::new(client);
    let mut out = std::io::stdout().lock();
    match cmd {
        TopicCommand::Create { name, partitions, replication } => {
            let created = admin.create_topic(&name, partitions, replication).await?;
            let _ = writeln!(out, "created {}\t{}", created.name, created.partitions);
        }
        TopicCommand::List => {
            for t in admin.list_topics().await? {
                let _ = writeln!(out, "{}\t{}\t{}", t.name, t.partitions, t.replication_factor);
            }
        }
        TopicCommand::Describe { name } => {
            let description = admin.describe_topic_replicas(&name).await?;
            let _ = write_description(&mut out, &description);
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            let _ = writeln!(out, "deleted {name}");
        }
    }
    Ok(())
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn write_description(out: &mut impl Write, t: &TopicDescription) -> std::io::Result<()> {
    writeln!(out, "partition\tleader\tshard\tchain\tepoch\tcommit\tlog_start\tlog_end")?;
    for p in &t.partitions {
        let chain: Vec<String> = p.chain.iter().map(u32::to_string).collect();
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            p.partition,
            p.leader_node,
            p.leader_shard,
            chain.join(","),
            p.epoch,
            or_dash(p.commit_offset),
            or_dash(p.log_start_offset),
            or_dash(p.log_end_offset)
        )?;
    }
    writeln!(out, "partition\treplica\trole\tlog_end\tcommit\tlag")?;
    for p in &t.partitions {
        for r in &p.replicas {
            let (end, commit, lag) = (or_dash(r.log_end_offset), or_dash(r.commit_offset), or_dash(r.lag));
            writeln!(out, "{}\t{}\t{}\t{end}\t{commit}\t{lag}", p.partition, r.node_id, r.role)?;
        }
    }
    Ok(())
}
