//! Project tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `bench`: the notebook's comparison end to end: generate the dataset, write it as the
//!   notebook's `.npy`, build each engine and save it, load it back, query it, and print (or
//!   write as JSON) load, query and total times, the headline query's labels, recall, build time
//!   and index size.
//!
//! Every flag is declared in [`cli`]; each task lives in its own module.

mod bench;
mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.task {
        cli::Task::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            std::process::ExitCode::FAILURE
        }
    }
}
