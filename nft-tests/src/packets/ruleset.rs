//! The ruleset files of the packet suite and how each side loads and lists them.
//!
//! - `NAME.nft`: nft syntax, loaded with `nft -f`, listed with `nft list ruleset`.
//! - `NAME.ipt`: `iptables-nft-restore` input (the IPv4 part). An `NAME.ip6t` beside it,
//!   if there is one, is `ip6tables-nft-restore` input (the IPv6 part). Loaded with the
//!   unmodified restore tools (through the interposer on the nftshim side), listed with
//!   `iptables-nft-save -c` (and `ip6tables-nft-save -c`) without its `#` lines (the
//!   dates of the run) and without the base chains' counters (see
//!   [`without_policy_counters`]). `.ip6t` files are only ever read beside their `.ipt`.
//!
//! Both kinds start from `nft flush ruleset`, and the probe markers
//! (`# probes: ...`, a comment in both syntaxes) may be in any part.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::nft::{CmdOutput, NftSide};

/// The extension of the files that are rulesets.
pub const EXTENSIONS: [&str; 2] = ["nft", "ipt"];

/// Whether `path` names a ruleset of the suite (not an `.ip6t` part).
pub fn is_ruleset(path: &Path) -> bool {
    path.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| EXTENSIONS.contains(&e))
}

/// One ruleset as the suite uses it.
#[derive(Clone, Debug)]
pub struct RulesetFile {
    pub path: PathBuf,
    pub syntax: Syntax,
    /// The text of every part (for the probe markers).
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Syntax {
    Nft,
    /// The IPv4 part is the file itself; `ip6` the IPv6 part, if any.
    Iptables {
        ip6: Option<PathBuf>,
    },
}

impl RulesetFile {
    pub fn read(path: &Path) -> std::io::Result<RulesetFile> {
        let mut text = std::fs::read_to_string(path)?;
        let syntax = if path.extension().is_some_and(|e| e == "ipt") {
            let sibling = path.with_extension("ip6t");
            let ip6 = if sibling.exists() {
                text.push_str(&std::fs::read_to_string(&sibling)?);
                Some(sibling)
            } else {
                None
            };
            Syntax::Iptables { ip6 }
        } else {
            Syntax::Nft
        };
        Ok(RulesetFile {
            path: path.to_path_buf(),
            syntax,
            text,
        })
    }

    /// Empties `side`'s ruleset and loads this one; the first command that fails ends it.
    pub fn load(&self, side: &NftSide) -> CmdOutput {
        let flush = side.run(&["flush", "ruleset"]);
        if !flush.success() {
            return flush;
        }
        match &self.syntax {
            Syntax::Nft => side.run(&[OsStr::new("-f"), self.path.as_os_str()]),
            Syntax::Iptables { ip6 } => {
                let v4 = restore(side, "iptables-nft-restore", &self.path);
                match ip6 {
                    Some(p) if v4.success() => restore(side, "ip6tables-nft-restore", p),
                    _ => v4,
                }
            }
        }
    }

    /// Whether the listing shows counters that the probes move (then both sides'
    /// listings are compared): nft rulesets that use `counter`; every iptables rule
    /// has one.
    pub fn has_counters(&self) -> bool {
        match self.syntax {
            Syntax::Nft => self.text.contains("counter"),
            Syntax::Iptables { .. } => true,
        }
    }

    /// `side`'s listing in this ruleset's syntax, with the counters; Err: the failed
    /// command's output.
    pub fn listing(&self, side: &NftSide) -> Result<String, CmdOutput> {
        let mut tools: Vec<&str> = Vec::new();
        match &self.syntax {
            Syntax::Nft => {
                let out = side.run(&["list", "ruleset"]);
                return if out.success() {
                    Ok(out.stdout)
                } else {
                    Err(out)
                };
            }
            Syntax::Iptables { ip6 } => {
                tools.push("iptables-nft-save");
                if ip6.is_some() {
                    tools.push("ip6tables-nft-save");
                }
            }
        }
        let mut listed = String::new();
        for tool in tools {
            let out = side.run_program(OsStr::new(tool), &["-c"], None);
            if !out.success() {
                return Err(out);
            }
            listed.push_str(&without_policy_counters(&crate::iptables::strip_comments(
                &out.stdout,
            )));
        }
        Ok(listed)
    }
}

/// The listing without the base chains' counters (`:INPUT ACCEPT [98:6744]` becomes
/// `:INPUT ACCEPT`): they count every packet of the hook, also the IPv6 multicast
/// listener reports and such that each namespace sends on its own schedule. The rules'
/// counters stay: a rule that matches such packets has to be left out of a ruleset.
fn without_policy_counters(listing: &str) -> String {
    let mut out = String::with_capacity(listing.len());
    for line in listing.lines() {
        let line = match line.strip_prefix(':').and_then(|l| l.rsplit_once(" [")) {
            Some((chain, counters)) if counters.ends_with(']') => {
                out.push(':');
                chain
            }
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_counters_go_and_rule_counters_stay() {
        let saved = "*filter\n:INPUT ACCEPT [98:6744]\n:udp_marked - [0:0]\n\
                     [2:80] -A INPUT -p udp -j udp_marked\nCOMMIT\n";
        assert_eq!(
            without_policy_counters(saved),
            "*filter\n:INPUT ACCEPT\n:udp_marked -\n[2:80] -A INPUT -p udp -j udp_marked\nCOMMIT\n"
        );
    }

    #[test]
    fn an_ipt_file_brings_its_ip6t_part() {
        let dir = tempfile::tempdir().unwrap();
        let v4 = dir.path().join("x.ipt");
        std::fs::write(&v4, "*filter\nCOMMIT\n").unwrap();
        let alone = RulesetFile::read(&v4).unwrap();
        assert_eq!(alone.syntax, Syntax::Iptables { ip6: None });
        std::fs::write(dir.path().join("x.ip6t"), "# probes: +sctp\n").unwrap();
        let both = RulesetFile::read(&v4).unwrap();
        assert_eq!(
            both.syntax,
            Syntax::Iptables {
                ip6: Some(dir.path().join("x.ip6t"))
            }
        );
        assert!(both.text.contains("# probes: +sctp") && both.has_counters());
        assert!(is_ruleset(&v4) && !is_ruleset(&dir.path().join("x.ip6t")));
    }
}

fn restore(side: &NftSide, tool: &str, file: &Path) -> CmdOutput {
    side.run_program(OsStr::new(tool), &[file.as_os_str()], None)
}
