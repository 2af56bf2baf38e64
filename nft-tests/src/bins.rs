//! Where the nftshim binaries under test are.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// File name of the daemon binary.
pub const DAEMON: &str = "nftshimd";
/// File name of the interposer library.
pub const PRELOAD: &str = "libnftshim_preload.so";
/// Environment variable naming a directory holding both.
pub const ENV_BIN_DIR: &str = "NFTSHIM_BIN_DIR";

#[derive(Clone, Debug)]
pub struct Binaries {
    pub nftshimd: PathBuf,
    pub preload: PathBuf,
}

impl Binaries {
    fn in_dir(dir: &Path) -> Binaries {
        Binaries {
            nftshimd: dir.join(DAEMON),
            preload: dir.join(PRELOAD),
        }
    }

    fn missing(&self) -> Vec<&Path> {
        [self.nftshimd.as_path(), self.preload.as_path()]
            .into_iter()
            .filter(|p| !p.is_file())
            .collect()
    }

    /// For the conformance runner: explicit paths win, else `$NFTSHIM_BIN_DIR`, else the
    /// directory of the running executable (cargo puts nftshimd, the preload library and
    /// nft-conformance side by side in `target/<profile>/`).
    pub fn for_runner(
        nftshimd: Option<PathBuf>,
        preload: Option<PathBuf>,
    ) -> anyhow::Result<Binaries> {
        let dir = match std::env::var_os(ENV_BIN_DIR) {
            Some(d) => PathBuf::from(d),
            None => std::env::current_exe()?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        let default = Binaries::in_dir(&dir);
        let bins = Binaries {
            nftshimd: nftshimd.unwrap_or(default.nftshimd),
            preload: preload.unwrap_or(default.preload),
        };
        let missing = bins.missing();
        if !missing.is_empty() {
            bail!(
                "missing {} (use --nftshimd/--preload or ${ENV_BIN_DIR}, or run `cargo build --workspace`)",
                missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        Ok(bins)
    }

    /// For integration tests: `$NFTSHIM_BIN_DIR`, else `<target>/release`, else
    /// `<target>/debug`, where `<target>` is `$CARGO_TARGET_DIR` or the workspace's
    /// `target/`. Panics with instructions when none has both files.
    pub fn for_tests() -> Binaries {
        let mut candidates = Vec::new();
        if let Some(d) = std::env::var_os(ENV_BIN_DIR) {
            candidates.push(PathBuf::from(d));
        } else {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
                    manifest.parent().unwrap_or(manifest).join("target")
                });
            candidates.push(target.join("release"));
            candidates.push(target.join("debug"));
        }
        for dir in &candidates {
            let bins = Binaries::in_dir(dir);
            if bins.missing().is_empty() {
                return bins;
            }
        }
        panic!(
            "{DAEMON} and {PRELOAD} not found in {}: run `cargo build --workspace` first \
             (or point ${ENV_BIN_DIR} at a directory holding both)",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        );
    }
}
