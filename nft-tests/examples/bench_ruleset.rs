//! Prints the benchmark's ruleset of N rules (`nft -f` input), for profiling the
//! control plane by hand: `cargo run -p nft-tests --release --example bench_ruleset -- 10000`.

use nft_tests::bench::ruleset::{render, Spec};

fn main() {
    let rules = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    print!(
        "{}",
        render(Spec {
            rules,
            conntrack: std::env::args().any(|a| a == "--conntrack")
        })
    );
}
