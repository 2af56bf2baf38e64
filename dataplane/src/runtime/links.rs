//! Pinned TCX links: each attached link is pinned as `link-<ifindex>-<ingress|egress>`
//! in the namespace's pin directory, so that its program stays attached (and packets
//! stay filtered) when nftshimd stops or dies. A starting worker adopts the pinned
//! links and moves them to its programs with `BPF_LINK_UPDATE`: never detached in
//! between, never attached twice.

use std::io;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::SchedClassifierLink;

use crate::compile::Direction;

fn file_name(ifindex: u32, dir: Direction) -> String {
    let d = match dir {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    format!("link-{ifindex}-{d}")
}

fn parse_name(name: &str) -> Option<(u32, Direction)> {
    let rest = name.strip_prefix("link-")?;
    let (ifindex, d) = rest.split_once('-')?;
    let dir = match d {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => return None,
    };
    Some((ifindex.parse().ok()?, dir))
}

/// Where the link of (ifindex, dir) is pinned.
pub fn pin_path(dir: &Path, ifindex: u32, direction: Direction) -> PathBuf {
    dir.join(file_name(ifindex, direction))
}

/// Pins a freshly attached link (replacing a stale pin of a link that is gone).
pub fn pin(
    link: SchedClassifierLink,
    dir: &Path,
    ifindex: u32,
    direction: Direction,
) -> Result<SchedClassifierLink, String> {
    let path = pin_path(dir, ifindex, direction);
    unpin(&path).map_err(|e| format!("removing a stale pin: {e}"))?;
    let fd: FdLink = link
        .try_into()
        .map_err(|e| format!("not a TCX link: {e}"))?;
    let pinned = fd.pin(&path).map_err(|e| format!("pinning: {e}"))?;
    SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|e| e.to_string())
}

/// Removes a pin (the link detaches when its last fd closes).
pub fn unpin(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The links pinned in `dir` by an earlier worker (an earlier nftshimd), by interface
/// and direction. Pins that do not hold a TCX link are removed.
pub fn adopt(dir: &Path) -> Vec<((u32, Direction), SchedClassifierLink)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(key) = parse_name(&name.to_string_lossy()) else {
            continue;
        };
        let link = PinnedLink::from_pin(e.path())
            .map_err(|e| e.to_string())
            .and_then(|p| {
                SchedClassifierLink::try_from(FdLink::from(p)).map_err(|e| e.to_string())
            });
        match link {
            Ok(link) => out.push((key, link)),
            Err(err) => {
                tracing::warn!(path = %e.path().display(), error = %err, "dropping a pin that is not a TCX link");
                let _ = unpin(&e.path());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for key in [(1, Direction::Ingress), (4242, Direction::Egress)] {
            assert_eq!(parse_name(&file_name(key.0, key.1)), Some(key));
        }
        assert_eq!(parse_name("ct_table"), None);
        assert_eq!(parse_name("link-x-ingress"), None);
    }
}
