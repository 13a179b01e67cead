//! The `chorus` binary: a node (`chorus node`), the client commands, `keygen` and `demo`.

mod cli;
mod demo;

fn main() {
    std::process::exit(cli::main());
}
