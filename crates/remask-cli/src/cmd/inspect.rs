//! `remask inspect <what>`: dispatcher for the commands that show what a mask does.

use clap::Subcommand;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Subcommand)]
pub enum What {
    /// Print an attention mask as characters and its tile map.
    Attention(super::inspect_attention::Args),
    /// Show MLM masking on examples, or its statistics over a corpus (--json).
    Masking(super::inspect_masking::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Attention(a) => super::inspect_attention::run(a),
        What::Masking(a) => super::inspect_masking::run(a),
    }
}
