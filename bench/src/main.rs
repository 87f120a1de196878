//! The `im-bench` command: run one scenario and print its table, or (as a child of another
//! `im-bench`) run one share of a scenario and report it on standard output.

use clap::Parser;
use im_bench::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.global.share.is_some() {
        return im_bench::procs::run_child(cli).await;
    }
    let table = im_bench::run(cli).await?;
    println!("{table}");
    Ok(())
}
