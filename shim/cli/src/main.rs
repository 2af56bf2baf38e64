fn main() {
    eprintln!("nftshim: not built yet");
    std::process::exit(1);
}
