//! `nftshim exec`: put the interposer in front of a command and become that command.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

pub const LIB_NAME: &str = "libnftshim_preload.so";
/// Overrides where the interposer is looked for.
pub const ENV_PRELOAD: &str = "NFTSHIM_PRELOAD";
/// Where packages install it.
pub const SYSTEM_DIR: &str = "/usr/lib/nftshim";

/// Replaces this process with `command` (only returns on failure).
pub fn run(socket: &Path, command: &[OsString]) -> Result<ExitCode> {
    let lib = find_preload()?;
    let socket = absolute(socket)?;
    let preload = prepend_preload(&lib, std::env::var_os("LD_PRELOAD").as_deref());
    let (program, args) = command.split_first().context("no command given")?;
    let err = std::process::Command::new(program)
        .args(args)
        .env("LD_PRELOAD", preload)
        .env(nftshim_ipc::ENV_SOCKET, &socket)
        .exec();
    eprintln!("nftshim: cannot run {}: {err}", program.to_string_lossy());
    // As a shell does: 127 for a command not found, 126 for one that cannot run.
    Ok(ExitCode::from(
        if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    ))
}

/// $NFTSHIM_PRELOAD if set (it must exist), else beside this executable, else the
/// system directory.
pub fn find_preload() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_PRELOAD).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{ENV_PRELOAD}={} is not a file", p.display());
        }
        return absolute(&p);
    }
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(LIB_NAME)));
    let candidates: Vec<PathBuf> = beside_exe
        .into_iter()
        .chain([Path::new(SYSTEM_DIR).join(LIB_NAME)])
        .collect();
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => absolute(p),
        None => bail!(
            "cannot find {LIB_NAME} (looked in {}); set {ENV_PRELOAD} to its path",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `lib` first, then whatever LD_PRELOAD held (without a second copy of `lib`).
pub fn prepend_preload(lib: &Path, existing: Option<&OsStr>) -> OsString {
    let ours = lib.as_os_str().as_bytes();
    let mut out = ours.to_vec();
    let rest = existing.map(OsStr::as_bytes).unwrap_or_default();
    for item in rest
        .split(|b| *b == b':' || *b == b' ')
        .filter(|i| !i.is_empty() && *i != ours)
    {
        out.push(b':');
        out.extend_from_slice(item);
    }
    OsString::from_vec(out)
}

/// The program may change directory; the paths we hand it must not depend on ours.
fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("current directory")?
        .join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_goes_first_and_is_not_repeated() {
        let lib = Path::new("/x/libnftshim_preload.so");
        assert_eq!(
            prepend_preload(lib, None),
            OsString::from("/x/libnftshim_preload.so")
        );
        assert_eq!(
            prepend_preload(lib, Some(OsStr::new("/a.so /b.so"))),
            OsString::from("/x/libnftshim_preload.so:/a.so:/b.so")
        );
        assert_eq!(
            prepend_preload(lib, Some(OsStr::new("/a.so:/x/libnftshim_preload.so"))),
            OsString::from("/x/libnftshim_preload.so:/a.so")
        );
    }
}
