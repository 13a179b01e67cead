//! The `chorus` binary: a node (`chorus node`), the client commands, `keygen`, `demo` and `bench`.

/// Prints a line to stdout like `println!`, but ends the process quietly (exit 0) when stdout
/// is closed, as in `chorus ls | head`, instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, $($arg)*).and_then(|()| stdout.flush()).is_err() {
            std::process::exit(0);
        }
    }};
}

mod cli;

fn main() {
    std::process::exit(cli::main());
}
