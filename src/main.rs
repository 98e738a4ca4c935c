//! The `mm-status-sync` binary: parse the command line, run the command, map the outcome to an exit code.

fn main() {
    std::process::exit(mm_status_sync::cli::main());
}
