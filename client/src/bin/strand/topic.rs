//! `strand topic`: create (with config overrides), list, describe, change the config of,
//! add partitions to, and delete topics. Config keys may be given in Kafka's spelling
//! (`retention.ms`) or the node's (`retention_ms`); both name the same setting.

use std::io::Write;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use strand_client::admin::{TopicConfigValue, TopicDescription};
use strand_client::{Admin, Client};

/// Output format of the listing commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Tab-separated tables with headers.
    Text,
    /// One JSON document (field names are stable; see each command's help).
    Json,
}

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
        /// A config override, `KEY=VALUE` (repeatable). Keys: retention.ms, retention.bytes,
        /// segment.bytes, segment.ms (or retention_ms, …); values unsigned integers.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics: one line per topic, `NAME<TAB>PARTITIONS<TAB>REPLICATION`.
    /// JSON: `[{"name", "partitions", "replication_factor", "configs": [{"key", "value",
    /// "override"}]}]`.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show a topic's partitions, replicas and configs (three tab-separated tables with
    /// headers): `partition leader shard chain epoch commit log_start log_end preferred`
    /// (chain head first; offsets as the head reports them; preferred = the node the
    /// controller moves the head back to, `-` if none), then `partition replica role
    /// log_end commit lag` per chain member, asked of its own node; lag = head log end −
    /// replica log end; `-` = the node could not be asked; then `config value override`
    /// per config key (effective value, `none` = unlimited; override `yes` if the topic
    /// sets it, `no` for the node default).
    /// JSON: `{"name", "partitions": [{"partition", "leader", "shard", "chain", "epoch",
    /// "commit", "log_start", "log_end", "preferred", "replicas": [{"node", "role",
    /// "log_end", "commit", "lag", "error"}]}], "configs": [{"key", "value", "override"}]}`
    /// (null = unknown).
    ///
    /// With `--under-replicated` (NAME optional: every topic when left out): only the
    /// partitions whose chain has fewer members than the topic's replication factor, one
    /// line each, `topic partition leader chain epoch replication_factor`; nothing but the
    /// header when every chain is full. JSON: `[{"topic", "partition", "leader", "chain",
    /// "epoch", "replication_factor"}]`.
    Describe {
        /// The topic (optional with --under-replicated).
        name: Option<String>,
        /// List only partitions whose chain is shorter than the replication factor (Kafka's
        /// --under-replicated-partitions).
        #[arg(long)]
        under_replicated: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Change a topic's config overrides. The node validates them like `create` and
    /// applies them to the live partitions at once: retention at its next check
    /// (`retention_check_ms`), segment limits at the next append.
    AlterConfig {
        name: String,
        /// Set an override, `KEY=VALUE` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove an override, back to the node default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic to COUNT partitions in total (like Kafka's `--partitions`; only grows).
    /// Producers and consumers see the new partitions at their next metadata refresh; a
    /// group subscribed to the topic rebalances.
    AddPartitions {
        name: String,
        /// The new total partition count.
        #[arg(long)]
        count: u32,
    },
    /// Delete a topic and its data.
    Delete { name: String },
}

/// Kafka's spelling of each node config key, in the node's key order.
const CONFIG_KEYS: [(&str, &str); 4] = [
    ("retention.bytes", "retention_bytes"),
    ("retention.ms", "retention_ms"),
    ("segment.bytes", "segment_bytes"),
    ("segment.ms", "segment_ms"),
];

/// The node's key for `key` in either spelling, or an error listing the known keys.
pub(crate) fn node_config_key(key: &str) -> Result<&'static str, String> {
    CONFIG_KEYS.iter().find(|(kafka, node)| key == *kafka || key == *node).map(|(_, node)| *node).ok_or_else(|| {
        let known: Vec<&str> = CONFIG_KEYS.iter().map(|(k, _)| *k).collect();
        format!("unknown topic config key {key:?}: known keys are {} (or with _ for .)", known.join(", "))
    })
}

/// `KEY=VALUE` with the key mapped to the node's spelling.
pub(crate) fn parse_config(pair: &str) -> Result<(String, String), String> {
    let (key, value) = pair.split_once('=').ok_or_else(|| format!("config {pair:?} is not KEY=VALUE"))?;
    Ok((node_config_key(key.trim())?.to_string(), value.trim().to_string()))
}

pub(crate) async fn topic(client: Client, cmd: TopicCommand) -> Result<(), String> {
    let admin = Admin::new(client);
    let mut out = std::io::stdout().lock();
    let err = |e: strand_client::ClientError| e.to_string();
    match cmd {
        TopicCommand::Create { name, partitions, replication, configs } => {
            let configs = configs.iter().map(|c| parse_config(c)).collect::<Result<Vec<_>, _>>()?;
            let created =
                admin.create_topic_with_configs(&name, partitions, replication, configs).await.map_err(err)?;
            let _ = writeln!(out, "created {}\t{}", created.name, created.partitions);
        }
        TopicCommand::List { format } => {
            let topics = admin.list_topics().await.map_err(err)?;
            if format == Format::Json {
                let list: Vec<Value> = topics
                    .iter()
                    .map(|t| {
                        json!({"name": t.name, "partitions": t.partitions,
                               "replication_factor": t.replication_factor, "configs": configs_json(&t.configs)})
                    })
                    .collect();
                let _ = writeln!(out, "{}", Value::Array(list));
            } else {
                for t in topics {
                    let _ = writeln!(out, "{}\t{}\t{}", t.name, t.partitions, t.replication_factor);
                }
            }
        }
        TopicCommand::Describe { name, under_replicated: true, format } => {
            let rows = under_replicated(&admin, name.as_deref()).await?;
            let _ = match format {
                Format::Json => writeln!(out, "{}", Value::Array(rows.iter().map(UnderReplicated::json).collect())),
                Format::Text => write_under_replicated(&mut out, &rows),
            };
        }
        TopicCommand::Describe { name: None, .. } => {
            return Err("topic describe needs a topic name (or --under-replicated for every topic)".to_string());
        }
        TopicCommand::Describe { name: Some(name), under_replicated: false, format } => {
            let description = admin.describe_topic_replicas(&name).await.map_err(err)?;
            let topics = admin.list_topics().await.map_err(err)?;
            let configs = topics.into_iter().find(|t| t.name == name).map(|t| t.configs).unwrap_or_default();
            let _ = match format {
                Format::Json => writeln!(out, "{}", description_json(&description, &configs)),
                Format::Text => write_description(&mut out, &description, &configs),
            };
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                return Err("alter-config needs at least one --set KEY=VALUE or --delete KEY".to_string());
            }
            let set = set.iter().map(|c| parse_config(c)).collect::<Result<Vec<_>, _>>()?;
            let delete =
                delete.iter().map(|k| node_config_key(k).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
            admin.alter_topic_config(&name, set, delete).await.map_err(err)?;
            let _ = writeln!(out, "altered {name}");
        }
        TopicCommand::AddPartitions { name, count } => {
            let total = admin.create_partitions(&name, count).await.map_err(err)?;
            let _ = writeln!(out, "partitions {name}\t{total}");
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await.map_err(err)?;
            let _ = writeln!(out, "deleted {name}");
        }
    }
    Ok(())
}

/// One partition whose chain is shorter than its topic's replication factor.
struct UnderReplicated {
    topic: String,
    partition: u32,
    leader: u32,
    chain: Vec<u32>,
    epoch: u64,
    replication_factor: u16,
}

impl UnderReplicated {
    fn json(&self) -> Value {
        json!({"topic": self.topic, "partition": self.partition, "leader": self.leader, "chain": self.chain,
               "epoch": self.epoch, "replication_factor": self.replication_factor})
    }
}

/// The under-replicated partitions of `name` (every topic when `None`), from fresh metadata.
async fn under_replicated(admin: &Admin, name: Option<&str>) -> Result<Vec<UnderReplicated>, String> {
    let topics = admin.list_topics().await.map_err(|e| e.to_string())?;
    if let Some(name) = name.filter(|n| !topics.iter().any(|t| t.name == *n)) {
        return Err(format!("topic {name} does not exist"));
    }
    let mut rows = Vec::new();
    for t in topics.iter().filter(|t| name.is_none_or(|n| n == t.name)) {
        let described = admin.describe_topic(&t.name).await.map_err(|e| format!("{}: {e}", t.name))?;
        for p in described.partitions.iter().filter(|p| p.replicas.len() < usize::from(t.replication_factor)) {
            rows.push(UnderReplicated {
                topic: t.name.clone(),
                partition: p.partition,
                leader: p.leader_node,
                chain: p.replicas.clone(),
                epoch: p.epoch,
                replication_factor: t.replication_factor,
            });
        }
    }
    Ok(rows)
}

fn write_under_replicated(out: &mut impl Write, rows: &[UnderReplicated]) -> std::io::Result<()> {
    writeln!(out, "topic\tpartition\tleader\tchain\tepoch\treplication_factor")?;
    for r in rows {
        let chain: Vec<String> = r.chain.iter().map(u32::to_string).collect();
        let line = [r.topic.clone(), r.partition.to_string(), r.leader.to_string(), chain.join(",")];
        writeln!(out, "{}\t{}\t{}", line.join("\t"), r.epoch, r.replication_factor)?;
    }
    Ok(())
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn configs_json(configs: &[TopicConfigValue]) -> Value {
    let list = configs.iter().map(|c| json!({"key": c.key, "value": c.value, "override": c.is_override}));
    Value::Array(list.collect())
}

fn description_json(t: &TopicDescription, configs: &[TopicConfigValue]) -> Value {
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| {
            let replicas: Vec<Value> = p
                .replicas
                .iter()
                .map(|r| {
                    json!({"node": r.node_id, "role": r.role, "log_end": r.log_end_offset,
                           "commit": r.commit_offset, "lag": r.lag, "error": r.error})
                })
                .collect();
            json!({"partition": p.partition, "leader": p.leader_node, "shard": p.leader_shard, "chain": p.chain,
                   "epoch": p.epoch, "commit": p.commit_offset, "log_start": p.log_start_offset,
                   "log_end": p.log_end_offset, "preferred": p.preferred_leader, "replicas": replicas})
        })
        .collect();
    json!({"name": t.name, "partitions": partitions, "configs": configs_json(configs)})
}

fn write_description(out: &mut impl Write, t: &TopicDescription, configs: &[TopicConfigValue]) -> std::io::Result<()> {
    writeln!(out, "partition\tleader\tshard\tchain\tepoch\tcommit\tlog_start\tlog_end\tpreferred")?;
    for p in &t.partitions {
        let chain: Vec<String> = p.chain.iter().map(u32::to_string).collect();
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            p.partition,
            p.leader_node,
            p.leader_shard,
            chain.join(","),
            p.epoch,
            or_dash(p.commit_offset),
            or_dash(p.log_start_offset),
            or_dash(p.log_end_offset),
            or_dash(p.preferred_leader.map(u64::from))
        )?;
    }
    writeln!(out, "partition\treplica\trole\tlog_end\tcommit\tlag")?;
    for p in &t.partitions {
        for r in &p.replicas {
            let (end, commit, lag) = (or_dash(r.log_end_offset), or_dash(r.commit_offset), or_dash(r.lag));
            writeln!(out, "{}\t{}\t{}\t{end}\t{commit}\t{lag}", p.partition, r.node_id, r.role)?;
        }
    }
    writeln!(out, "config\tvalue\toverride")?;
    for c in configs {
        writeln!(out, "{}\t{}\t{}", c.key, c.value, if c.is_override { "yes" } else { "no" })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_map_from_kafka_names_and_unknown_ones_list_the_known() {
        assert_eq!(parse_config("retention.ms=5000"), Ok(("retention_ms".into(), "5000".into())));
        assert_eq!(parse_config("segment_bytes=1048576"), Ok(("segment_bytes".into(), "1048576".into())));
        let unknown = parse_config("cleanup.policy=compact").unwrap_err();
        assert!(unknown.contains("cleanup.policy") && unknown.contains("retention.bytes, retention.ms"), "{unknown}");
        assert!(parse_config("retention.ms").unwrap_err().contains("KEY=VALUE"));
    }
}
