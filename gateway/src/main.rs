//! The `sapa` binary: parses the command line and runs it (see `gateway::cli`).

fn main() -> std::process::ExitCode {
    gateway::cli::run()
}
