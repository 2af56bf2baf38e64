fn main() {
    eprintln!("nft-conformance: not built yet");
    std::process::exit(1);
}
