//! `strand-bench` binary: parses flags, runs the benchmark, prints the summary table and
//! writes the optional JSON and SVG outputs. Exit code 0 on a completed (or CTRL-C'd)
//! run, 1 when the run could not be carried out, 2 on bad flags (clap).
#![forbid(unsafe_code)]

use clap::Parser;
use strand_bench::config::Args;
use strand_bench::run::{run, BenchError};
use strand_bench::{plot, report};

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => fail(&BenchError::Io(e)),
    };
    let report = match runtime.block_on(run(&args)) {
        Ok(report) => report,
        Err(e) => fail(&e),
    };
    print!("{}", report::summary_table(&report));
    if let Some(path) = &args.json {
        if let Err(e) = report::write_json(&report, path) {
            fail(&BenchError::Io(e));
        }
    }
    if let Some(path) = &args.plot {
        let title = format!("strand-bench {}: latency by percentile", report.config.name);
        let r = &report.results;
        if let Err(e) = plot::write_svg(path, &title, &[("publish", &r.publish), ("end-to-end", &r.end_to_end)]) {
            fail(&BenchError::Plot(e));
        }
    }
}

fn fail(error: &BenchError) -> ! {
    match error.code() {
        Some(code) => eprintln!("strand-bench: {error} ({code:?})"),
        None => eprintln!("strand-bench: {error}"),
    }
    std::process::exit(1);
}
