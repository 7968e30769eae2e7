//! The `remask` binary; see the library target (`src/lib.rs`).

fn main() {
    remask_cli::main();
}
