//! `strand-node`: parses the command line (DESIGN §8), sets up logging and runs
//! the node until SIGTERM/SIGINT. Exit code 0 after a clean shutdown, 1 on a
//! startup or shutdown failure, 2 on a configuration error.

use clap::Parser;
use strand_node::config::{Cli, NodeConfig};
use tracing_subscriber::EnvFilter;

fn main() {
    // glommio reports a harmless iopoll-probe failure on every DMA open here (DESIGN §9);
    // keep it out of the log unless RUST_LOG asks for it.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,glommio=error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let config = match NodeConfig::from_cli(Cli::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("strand-node: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = strand_node::shard::node::run(config) {
        tracing::error!(error = %e, "strand-node failed");
        std::process::exit(1);
    }
}
