use std::process::ExitCode;

fn main() -> ExitCode {
    let _armed = enforcer::crash::arm();
    enforcer::cli::main()
}
