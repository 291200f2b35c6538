//! `strand-node`: parses the command line (DESIGN §8), sets up logging and runs
//! the node until SIGTERM/SIGINT. Exit code 0 after a clean shutdown, 1 on a
//! startup or shutdown failure (e.g. etcd unreachable in cluster mode), 2 on a
//! configuration error, 78 when the host cannot run this node: a host check fails (see
//! `linux-setup/check`), a port or the data dir is held by another process, or (cluster
//! mode) another live process holds this `--node-id`.

use clap::Parser;
use strand_node::config::{Cli, NodeConfig};
use strand_node::control::ControlError;
use strand_node::hostcheck::{self, Severity};
use strand_node::server::NodeError;
use tracing_subscriber::EnvFilter;

/// `EX_CONFIG`, for a host check that failed or a `--node-id` another live process holds:
/// systemd's `RestartPreventExitStatus` keeps such a node from restart loops.
const EX_CONFIG: i32 = 78;

fn main() {
    // glommio reports a harmless iopoll-probe failure on every DMA open here (DESIGN §9);
    // keep it out of the log unless RUST_LOG asks for it.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,glommio=error"));
    // Colour only for a person at a terminal: a log file or journald must not get ANSI codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    let config = match NodeConfig::from_cli(Cli::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("strand-node: {e}");
            std::process::exit(2);
        }
    };
    if let Some(refusal) = config.exposure_refusal() {
        eprintln!("strand-node: {refusal}");
        std::process::exit(EX_CONFIG);
    }
    if !host_checks_pass(&config) {
        std::process::exit(EX_CONFIG);
    }
    if let Err(e) = strand_node::server::run(config) {
        // One line; 78 (a port, the data dir or the node id held by another process) keeps
        // systemd from a restart loop.
        // A refused node id is said as itself, not under the generic "cluster mode:" prefix.
        let line = match &e {
            NodeError::Control(taken @ ControlError::NodeIdTaken { .. }) => taken.to_string(),
            other => other.to_string(),
        };
        eprintln!("strand-node: {line}");
        std::process::exit(e.exit_code());
    }
}

/// Logs every warning and failure of the host checks; false if any failed.
fn host_checks_pass(config: &NodeConfig) -> bool {
    let findings = hostcheck::run(config);
    for f in &findings {
        match f.severity {
            Severity::Pass => tracing::debug!(check = f.name, "{}", f.detail),
            Severity::Warn => tracing::warn!(check = f.name, "{}", f.detail),
            Severity::Fail => tracing::error!(check = f.name, "{}", f.detail),
        }
    }
    let failed: Vec<_> = findings.iter().filter(|f| f.severity == Severity::Fail).collect();
    for f in &failed {
        eprintln!("strand-node: host check {} failed: {}", f.name, f.detail);
    }
    failed.is_empty()
}
