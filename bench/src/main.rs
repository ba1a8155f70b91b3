//! `switchboard-bench`: see the crate's README.

use std::process::ExitCode;

use clap::Parser as _;
use switchboard_bench::{Load, cli::Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config();

    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads as usize)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let plan = match config.load {
        Load::Duration(d) => format!("{:.1} s", d.as_secs_f64()),
        Load::Requests(n) => format!("{n} requests"),
    };
    let warmup = if config.warmup.is_zero() {
        String::new()
    } else {
        format!(" after a {:.1} s warmup", config.warmup.as_secs_f64())
    };
    eprintln!(
        "switchboard-bench: POST {}/v1/messages, {} connections, {} thread(s), {plan}{warmup}",
        config.url.trim_end_matches('/'),
        config.concurrency,
        cli.threads,
    );

    let report = match runtime.block_on(run(config)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("switchboard-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };

    for sample in &report.error_samples {
        eprintln!("error: {sample}");
    }
    if cli.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }

    if report.accepted == 0 {
        eprintln!(
            "switchboard-bench: no request was accepted ({} made, {} errors)",
            report.requests,
            report.errors()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
