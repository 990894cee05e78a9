//! The `stagehand` binary: `stagehand serve`, and admin commands over the HTTP API.

fn main() -> std::process::ExitCode {
    stagehand::cli::main()
}
