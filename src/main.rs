//! The `rstreams` command line: `rstreams topic ...`, `produce`, `consume` and `group ...` work
//! the embedded store in a data directory; `bench` runs benchmarks (see `rstreams --help`).

mod bench;
mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
