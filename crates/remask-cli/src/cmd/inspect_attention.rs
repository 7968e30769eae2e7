//! `remask inspect attention`: show what an attention mask does on one row.

use remask::attention::show::{one_row_batch, render_mask, render_tiles};
use remask::attention::AttentionMaskSpec;

#[derive(clap::Args)]
pub struct Args {
    /// padding | causal | document | sliding | prefix
    #[arg(long, default_value = "causal")]
    pub mask: String,
    /// T: positions in the row.
    #[arg(long, default_value_t = 32)]
    pub seq: usize,
    /// Split the row's real tokens into this many near-equal documents (document mask).
    #[arg(long)]
    pub docs: Option<usize>,
    /// Comma-separated lengths: the documents' lengths for the document mask (the rest is
    /// padding), otherwise the row's one real length (the rest is padding).
    #[arg(long, value_delimiter = ',')]
    pub lengths: Vec<usize>,
    /// Sliding-window width.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Prefix length (prefix mask); default half the row.
    #[arg(long)]
    pub prefix: Option<usize>,
    /// Causal inside documents / one-sided sliding window.
    #[arg(long)]
    pub causal: bool,
    /// Tile edge of the BlockMask.
    #[arg(long, default_value_t = 8)]
    pub tile: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.seq > 0, "--seq must be at least 1");
    anyhow::ensure!(args.tile > 0, "--tile must be at least 1");
    let spec = match args.mask.as_str() {
        "padding" => AttentionMaskSpec::Padding,
        "causal" => AttentionMaskSpec::Causal,
        "document" => AttentionMaskSpec::Document {
            causal: args.causal,
        },
        "sliding" => AttentionMaskSpec::SlidingWindow {
            window: args.window,
            causal: args.causal,
        },
        "prefix" => AttentionMaskSpec::PrefixLm,
        m => {
            anyhow::bail!("unknown --mask `{m}`; use padding, causal, document, sliding or prefix")
        }
    };
    let is_doc = matches!(spec, AttentionMaskSpec::Document { .. });
    let (length, doc_lengths) = if is_doc {
        if let Some(n) = args.docs {
            anyhow::ensure!(
                args.lengths.is_empty(),
                "give either --docs or --lengths, not both"
            );
            anyhow::ensure!(
                n >= 1 && n <= args.seq,
                "--docs must be between 1 and --seq"
            );
            let lens: Vec<usize> = (0..n)
                .map(|i| (i + 1) * args.seq / n - i * args.seq / n)
                .collect();
            (args.seq, lens)
        } else if args.lengths.is_empty() {
            (args.seq, vec![args.seq])
        } else {
            (args.lengths.iter().sum(), args.lengths.clone())
        }
    } else {
        anyhow::ensure!(
            args.docs.is_none(),
            "--docs applies to --mask document only"
        );
        anyhow::ensure!(
            args.lengths.len() <= 1,
            "--lengths takes one value (the row's real length) for this mask"
        );
        (
            args.lengths.first().copied().unwrap_or(args.seq),
            Vec::new(),
        )
    };
    let batch = one_row_batch(
        args.seq,
        length,
        &doc_lengths,
        args.prefix.unwrap_or(args.seq / 2),
    )?;
    let mask = spec.block_mask(&batch, args.tile);
    let (e, p, f) = mask.tile_counts();
    println!(
        "attention mask {spec:?}, T = {}, real tokens = {length}, tile = {}",
        args.seq, args.tile
    );
    if is_doc {
        println!("documents: {doc_lengths:?}");
    }
    if matches!(spec, AttentionMaskSpec::PrefixLm) {
        println!("prefix: {}", batch.prefix_lengths[0]);
    }
    println!("rows = queries, columns = keys; # may attend, . may not\n");
    print!("{}", render_mask(&mask, 0, 0));
    println!(
        "\ntiles ({}x{}): # full, + partial, . empty\n",
        args.tile, args.tile
    );
    print!("{}", render_tiles(&mask, 0, 0));
    println!(
        "\n{e} empty, {p} partial, {f} full tiles; sparsity {:.3}, density {:.3}",
        mask.sparsity(),
        mask.density()
    );
    Ok(())
}
