//! `strand-bench` binary: parses flags, runs the benchmark, prints the summary table and
//! writes the optional JSON and SVG outputs; `strand-bench suite` runs the limits and the
//! standard workloads (see [`strand_bench::suite`]). Exit code 0 on a completed (or CTRL-C'd)
//! run, 1 when the run (or, for the suite, one of its workload runs) could not be carried
//! out, 2 on bad flags (clap).
#![forbid(unsafe_code)]

use clap::Parser;
use strand_bench::config::{Args, Command};
use strand_bench::run::{run, BenchError};
use strand_bench::suite::{self, SuiteArgs};
use strand_bench::{plot, report};

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => fail(&BenchError::Io(e)),
    };
    match &args.command {
        Some(Command::Suite(suite_args)) => {
            run_suite(&runtime, suite_args);
            return;
        }
        Some(Command::Rtt(rtt)) => {
            match strand_bench::limits::loopback_rtt(rtt.count, rtt.size) {
                Ok(r) => println!(
                    "loopback rtt ({} B, {} round trips): p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
                    r.size, r.count, r.p50_us, r.p99_us, r.p999_us, r.max_us
                ),
                Err(e) => fail(&BenchError::Io(e)),
            }
            return;
        }
        None => {}
    }
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

fn run_suite(runtime: &tokio::runtime::Runtime, args: &SuiteArgs) {
    let report = match runtime.block_on(suite::run_suite(args)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("strand-bench suite: {e}");
            std::process::exit(1);
        }
    };
    print!("{}", suite::suite_table(&report));
    if let Some(path) = &args.json {
        if let Err(e) = suite::write_json(&report, path) {
            eprintln!("strand-bench suite: {e}");
            std::process::exit(1);
        }
    }
    if report.has_failed_runs() {
        eprintln!("strand-bench suite: some workload runs failed (see the notes under the table)");
        std::process::exit(1);
    }
}

fn fail(error: &BenchError) -> ! {
    match error.code() {
        Some(code) => eprintln!("strand-bench: {error} ({code:?})"),
        None => eprintln!("strand-bench: {error}"),
    }
    std::process::exit(1);
}
