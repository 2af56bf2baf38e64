fn main() {
    eprintln!("nftshimd: not built yet");
    std::process::exit(1);
}
