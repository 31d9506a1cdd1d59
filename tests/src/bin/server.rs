//! The `sapa` entry point, built inside the test package so the e2e binary can start it as a
//! real process (`CARGO_BIN_EXE_sapa-e2e-server`) and kill it with SIGKILL.

fn main() -> std::process::ExitCode {
    gateway::cli::run()
}
