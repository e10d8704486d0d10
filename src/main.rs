//! The `rstreams` command line: `rstreams topic ...`, `produce`, `consume` and `group ...` work
//! the embedded store in a data directory; `bench` runs benchmarks (see `rstreams --help`).

mod bench;
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
