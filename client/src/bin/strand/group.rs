//! `strand group`: list and describe consumer groups.

use std::io::Write;

use clap::Subcommand;
use strand_client::admin::{DescribeGroupResponse, COMMITTED_NONE};
use strand_client::{Admin, Client};

#[derive(Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups: one line per group, `GROUP<TAB>STATE<TAB>MEMBERS`.
    List,
    /// Show a group: a summary line, then per partition committed offset, log end and lag
    /// (`-` = nothing committed), then its members and their assignments (tab-separated
    /// tables with headers). Exits 1 if the group does not exist.
    Describe { group: String },
}

pub(crate) async fn group(client: Client, cmd: GroupCommand) -> Result<(), String> {
    let admin = Admin::new(client);
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupCommand::List => {
            for g in admin.list_groups().await.map_err(|e| e.to_string())? {
                let _ = writeln!(out, "{}\t{}\t{}", g.group_id, g.state, g.member_count);
            }
        }
        GroupCommand::Describe { group } => {
            let g = admin.describe_group(&group).await.map_err(|e| e.to_string())?;
            if g.state == "Dead" && g.members.is_empty() && g.partitions.is_empty() {
                return Err(format!("group {group} does not exist"));
            }
            let _ = write_group(&mut out, &g);
        }
    }
    Ok(())
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
    Ok(())
}
