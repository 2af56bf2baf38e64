//! Compiles the C data plane (bpf/) into an eBPF object in OUT_DIR, which the crate
//! embeds. Needs clang with the BPF target and libbpf's headers (Debian: clang,
//! libbpf-dev). `-g` is required: aya refuses objects without BTF. `-mcpu=v3` gives the
//! atomic fetch-and-add that quotas use.

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "bpf/nftshim.bpf.c";
const OBJECT: &str = "nftshim.bpf.o";

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = manifest_dir.join("bpf");
    rerun_if_changed_recursive(&bpf_dir);
    println!("cargo:rerun-if-env-changed=NFTSHIM_CLANG");

    let clang = std::env::var("NFTSHIM_CLANG").unwrap_or_else(|_| "clang".to_string());
    let output = out_dir.join(OBJECT);
    let result = Command::new(&clang)
        .args([
            "-g", "-O2", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
        ])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg("-c")
        .arg(manifest_dir.join(SOURCE))
        .arg("-o")
        .arg(&output)
        .output();
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "nftshim-ebpf: `{clang}` not found. The eBPF data plane is C compiled with clang's \
                 BPF target: install clang and libbpf-dev (Debian: apt-get install clang libbpf-dev), \
                 or set NFTSHIM_CLANG to a clang binary."
            );
        }
        Err(e) => panic!("nftshim-ebpf: cannot run `{clang}`: {e}"),
        Ok(out) if !out.status.success() => {
            panic!(
                "nftshim-ebpf: `{clang}` failed to compile {SOURCE} ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(_) => {}
    }
}

fn rerun_if_changed_recursive(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rerun_if_changed_recursive(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
