//! The `im-server` command: everything it does is in `im_server::cli`.

fn main() -> std::process::ExitCode {
    im_server::cli::main()
}
