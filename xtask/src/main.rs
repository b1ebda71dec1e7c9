//! Project tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `bench`: the notebook's comparison end to end: generate the dataset, write it as the
//!   notebook's `.npy`, build each engine and save it, load it back, query it, and print (or
//!   write as JSON) load, query and total times, the headline query's labels, recall, build time
//!   and index size; `--sweep` adds knob sweeps and peak memory, `--gallery/--queries` the
//!   user's own data, `--report DIR` an HTML report.
//! - `peers`: the same data through Python hnswlib, annoy, faiss and usearch, merged into the
//!   bench's JSON, with a table of ratios ours/theirs.
//! - `distributed`: the gallery sharded over a local two-node Ray cluster, beside each engine
//!   unsharded, merged into the bench's JSON.
//! - `verdict`: `bench --sweep` and `peers` several times, alternating which goes first, with
//!   the median and range of each ratio ours/theirs.
//! - `build-time`: one of our engines' build against a peer's, alternating rounds.
//! - `engines`: the engine registry, with every engine's parameters and defaults.
//! - `report`: report.html again from a bench JSON.
//! - `screenshot`: renders report.html in headless Chromium to a PNG.
//!
//! Every flag is declared in [`cli`]; each task lives in its own module.

mod bench;
mod build_time;
mod cli;
mod distributed;
#[cfg(test)]
mod fixtures;
mod machine;
mod peers;
mod progress;
mod report_html;
mod screenshot;
mod stats;
mod verdict;

use clap::Parser;

/// The registry, as `cargo xtask engines` prints it.
fn engines_table() -> String {
    let mut out = String::new();
    for kind in search_engines::ENGINES {
        out += &format!("{}: {}\n", kind.name, kind.about);
        out += &format!("  knob: {}\n", kind.knob.unwrap_or("none (exact)"));
        for p in kind.params {
            out += &format!(
                "  --param {}.{}={:<10} {}\n",
                kind.name, p.name, p.default, p.about
            );
        }
    }
    out
}

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.task {
        cli::Task::Bench(args) => bench::run(&args),
        cli::Task::Peers(args) => peers::run(&args),
        cli::Task::Verdict(args) => verdict::run(&args),
        cli::Task::BuildTime(args) => build_time::run(&args),
        cli::Task::Engines => {
            print!("{}", engines_table());
            Ok(())
        }
        cli::Task::Distributed(args) => distributed::run(&args),
        cli::Task::Report(args) => report_html::run(&args),
        cli::Task::Screenshot(args) => screenshot::run(&args),
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
