use std::process::ExitCode;

fn main() -> ExitCode {
    enforcer::cli::main()
}
