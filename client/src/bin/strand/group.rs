//! `strand group`: list, describe, reset the offsets of, and delete consumer groups.
//! Resetting and deleting need an Empty group (no members), like Kafka's
//! `kafka-consumer-groups`: the node accepts a commit without a member id, and a
//! deletion, only then.

use std::io::Write;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};
use strand_client::admin::{DescribeGroupResponse, COMMITTED_NONE};
use strand_client::{Admin, Client};
use strand_wire::msg::{CommittedOffset, OffsetSpec};

use crate::topic::Format;

#[derive(Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups: one line per group, `GROUP<TAB>STATE<TAB>MEMBERS`.
    /// JSON: `[{"group", "state", "members"}]`.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show a group: a summary line, then per partition committed offset, log end and lag
    /// (`-` = nothing committed), then its members and their assignments (tab-separated
    /// tables with headers), then `total_lag N` (the sum of the partitions' lag). Exits 1
    /// if the group does not exist.
    /// JSON: `{"group", "state", "generation", "assignor", "total_lag", "partitions":
    /// [{"topic", "partition", "committed", "log_end", "lag"}], "members": [{"member",
    /// "client", "assignment": ["topic/partition"]}]}` (committed null = none).
    Describe {
        group: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Set a group's committed offsets for a topic (refused while the group has members:
    /// stop its consumers first). Prints `topic partition old new` per partition (`-` = no
    /// offset was committed). Offsets from --to-offset and --shift-by are clamped to
    /// [log start, log end] (a note on stderr says which).
    ResetOffsets(ResetArgs),
    /// Delete a group's committed offsets (refused while the group has members). The group
    /// then does not exist; a new member starts from its auto.offset.reset.
    Delete { group: String },
}

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
pub(crate) struct ResetArgs {
    group: String,
    /// The topic whose offsets are reset.
    #[arg(long)]
    topic: String,
    /// Only this partition (default: every partition of the topic).
    #[arg(long)]
    partition: Option<u32>,
    /// To each partition's log start.
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's log end (skip everything written so far).
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped to [log start, log end]).
    #[arg(long, value_name = "N")]
    to_offset: Option<u64>,
    /// To the first record at or after this time: epoch milliseconds, or an RFC 3339 time
    /// (`2026-01-31T12:00:00Z`, `2026-01-31T14:00:00.250+02:00`).
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// Move the committed offset by N (negative = back), clamped to [log start, log end];
    /// each partition needs a committed offset.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Print the plan, commit nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn group(client: Client, cmd: GroupCommand) -> Result<(), String> {
    let admin = Admin::new(client);
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupCommand::List { format } => {
            let groups = admin.list_groups().await.map_err(|e| e.to_string())?;
            if format == Format::Json {
                let list =
                    groups.iter().map(|g| json!({"group": g.group_id, "state": g.state, "members": g.member_count}));
                let _ = writeln!(out, "{}", Value::Array(list.collect()));
            } else {
                for g in groups {
                    let _ = writeln!(out, "{}\t{}\t{}", g.group_id, g.state, g.member_count);
                }
            }
        }
        GroupCommand::Describe { group, format } => {
            let g = admin.describe_group(&group).await.map_err(|e| e.to_string())?;
            if g.state == "Dead" && g.members.is_empty() && g.partitions.is_empty() {
                return Err(format!("group {group} does not exist"));
            }
            let _ = match format {
                Format::Json => writeln!(out, "{}", group_json(&g)),
                Format::Text => write_group(&mut out, &g),
            };
        }
        GroupCommand::ResetOffsets(args) => reset_offsets(&admin, &mut out, args).await?,
        GroupCommand::Delete { group } => {
            admin.delete_group(&group).await.map_err(|e| e.to_string())?;
            let _ = writeln!(out, "deleted {group}");
        }
    }
    Ok(())
}

fn total_lag(g: &DescribeGroupResponse) -> u64 {
    g.partitions.iter().map(|p| p.lag).fold(0, u64::saturating_add)
}

fn group_json(g: &DescribeGroupResponse) -> Value {
    let partitions: Vec<Value> = g
        .partitions
        .iter()
        .map(|p| {
            let committed = (p.committed != COMMITTED_NONE).then_some(p.committed);
            json!({"topic": p.topic, "partition": p.partition, "committed": committed,
                   "log_end": p.log_end_offset, "lag": p.lag})
        })
        .collect();
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let parts: Vec<String> = m.assignment.iter().map(|tp| format!("{}/{}", tp.topic, tp.partition)).collect();
            json!({"member": m.member_id, "client": m.client_id, "assignment": parts})
        })
        .collect();
    json!({"group": g.group_id, "state": g.state, "generation": g.generation,
           "assignor": format!("{:?}", g.assignor).to_lowercase(), "total_lag": total_lag(g),
           "partitions": partitions, "members": members})
}

fn write_group(out: &mut impl Write, g: &DescribeGroupResponse) -> std::io::Result<()> {
    let assignor = format!("{:?}", g.assignor).to_lowercase();
    writeln!(out, "group {}\tstate {}\tgeneration {}\tassignor {assignor}", g.group_id, g.state, g.generation)?;
    writeln!(out, "topic\tpartition\tcommitted\tlog_end\tlag")?;
    for p in &g.partitions {
        let committed = if p.committed == COMMITTED_NONE { "-".to_string() } else { p.committed.to_string() };
        writeln!(out, "{}\t{}\t{committed}\t{}\t{}", p.topic, p.partition, p.log_end_offset, p.lag)?;
    }
    writeln!(out, "member\tclient\tassignment")?;
    for m in &g.members {
        let parts: Vec<String> = m.assignment.iter().map(|tp| format!("{}/{}", tp.topic, tp.partition)).collect();
        writeln!(out, "{}\t{}\t{}", m.member_id, m.client_id, parts.join(","))?;
    }
    writeln!(out, "total_lag {}", total_lag(g))
}

/// Where a reset moves one partition, before clamping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Earliest,
    Latest,
    Offset(u64),
    /// First offset with a timestamp at or after this (ms since epoch).
    Datetime(i64),
    ShiftBy(i64),
}

/// One partition's planned move.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    partition: u32,
    old: Option<u64>,
    new: u64,
    /// Set when the target was outside [log start, log end]: (asked, bound).
    clamped: Option<(i128, u64)>,
}

fn target(args: &ResetArgs) -> Result<Target, String> {
    Ok(match (args.to_earliest, args.to_latest, args.to_offset, &args.to_datetime, args.shift_by) {
        (true, ..) => Target::Earliest,
        (_, true, ..) => Target::Latest,
        (_, _, Some(n), ..) => Target::Offset(n),
        (_, _, _, Some(t), _) => Target::Datetime(parse_datetime(t)?),
        (.., Some(n)) => Target::ShiftBy(n),
        _ => return Err("one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by".to_string()),
    })
}

/// `--to-datetime`: see [`crate::time_arg::parse_time_ms`].
fn parse_datetime(text: &str) -> Result<i64, String> {
    crate::time_arg::parse_time_ms(text).map_err(|e| format!("--to-datetime {e}"))
}

/// The new offset of a partition with log `[start, end]` and committed `old`, given the
/// offset a timestamp lookup found (`at_time`, for [`Target::Datetime`]). IO-free.
fn plan_one(
    partition: u32,
    target: Target,
    start: u64,
    end: u64,
    old: Option<u64>,
    at_time: u64,
) -> Result<Planned, String> {
    let asked: i128 = match target {
        Target::Earliest => i128::from(start),
        Target::Latest => i128::from(end),
        Target::Offset(n) => i128::from(n),
        Target::Datetime(_) => i128::from(at_time),
        Target::ShiftBy(n) => match old {
            Some(old) => i128::from(old) + i128::from(n),
            None => return Err(format!("partition {partition} has no committed offset to shift from; use --to-*")),
        },
    };
    let new = asked.clamp(i128::from(start), i128::from(end));
    let new = u64::try_from(new).unwrap_or(end);
    let clamped = (new as i128 != asked).then_some((asked, new));
    Ok(Planned { partition, old, new, clamped })
}

async fn reset_offsets(admin: &Admin, out: &mut impl Write, args: ResetArgs) -> Result<(), String> {
    let target = target(&args)?;
    let err = |e: strand_client::ClientError| e.to_string();
    let g = admin.describe_group(&args.group).await.map_err(err)?;
    if !g.members.is_empty() {
        return Err(format!(
            "group {} has {} active members: offsets can only be reset when the group is Empty (stop its consumers first)",
            args.group,
            g.members.len()
        ));
    }
    let count = admin.describe_topic(&args.topic).await.map_err(err)?.partitions.len() as u32;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p >= count => {
            return Err(format!("topic {} has {count} partitions; there is no partition {p}", args.topic))
        }
        Some(p) => vec![p],
        None => (0..count).collect(),
    };
    let mut plan = Vec::with_capacity(partitions.len());
    for p in partitions {
        let start = admin.list_offset(&args.topic, p, OffsetSpec::Earliest).await.map_err(err)?;
        let end = admin.list_offset(&args.topic, p, OffsetSpec::Latest).await.map_err(err)?;
        let at_time = match target {
            Target::Datetime(ms) => admin.list_offset(&args.topic, p, OffsetSpec::Timestamp(ms)).await.map_err(err)?,
            _ => end,
        };
        let old =
            g.partitions.iter().find(|q| q.topic == args.topic && q.partition == p && q.committed != COMMITTED_NONE);
        plan.push(plan_one(p, target, start, end, old.map(|q| q.committed), at_time)?);
    }
    if !args.dry_run {
        let offsets = plan
            .iter()
            .map(|p| CommittedOffset {
                topic: args.topic.clone(),
                partition: p.partition,
                offset: p.new,
                metadata: String::new(),
            })
            .collect();
        admin.commit_group_offsets(&args.group, offsets).await.map_err(err)?;
    }
    let _ = writeln!(out, "topic\tpartition\told\tnew");
    for p in &plan {
        let old = p.old.map_or_else(|| "-".to_string(), |o| o.to_string());
        let _ = writeln!(out, "{}\t{}\t{old}\t{}", args.topic, p.partition, p.new);
        if let Some((asked, bound)) = p.clamped {
            eprintln!("note: {}/{}: offset {asked} is outside the log, clamped to {bound}", args.topic, p.partition);
        }
    }
    if args.dry_run {
        eprintln!("dry run: nothing committed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_clamps_to_the_log_and_shift_needs_a_committed_offset() {
        let plan = |t, old| plan_one(0, t, 10, 50, old, 30);
        assert_eq!(plan(Target::Earliest, None).unwrap().new, 10);
        assert_eq!(plan(Target::Latest, Some(20)).unwrap().new, 50);
        assert_eq!(plan(Target::Offset(70), None).unwrap().clamped, Some((70, 50)));
        assert_eq!(plan(Target::Offset(3), None).unwrap().new, 10);
        assert_eq!(plan(Target::Datetime(5), None).unwrap().new, 30);
        assert_eq!(plan(Target::ShiftBy(-15), Some(20)).unwrap().clamped, Some((5, 10)));
        assert_eq!(plan(Target::ShiftBy(5), Some(20)).unwrap().new, 25);
        assert!(plan(Target::ShiftBy(5), None).unwrap_err().contains("no committed offset"));
    }

    #[test]
    fn datetime_is_epoch_ms_or_rfc3339() {
        assert_eq!(parse_datetime("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_datetime("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_datetime("2023-11-15T00:13:20.5+02:00"), Ok(1_700_000_000_500));
        assert!(parse_datetime("2023-11-14T22:13:20").is_err(), "RFC 3339 needs an offset");
        assert!(parse_datetime("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
