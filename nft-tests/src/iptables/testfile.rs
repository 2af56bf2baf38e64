//! Parser for iptables' `extensions/*.t` files, following the reading rules of
//! upstream's `iptables-test.py` (1.8.9): which lines count, which binaries a file is
//! run with, how a rule line turns into a command.

use std::path::Path;

/// A client binary of the iptables-nft family, as the file name selects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Iptables,
    Ip6tables,
    Ebtables,
    Arptables,
}

impl Tool {
    /// The binaries a file runs with: `libipt_*` iptables, `libip6t_*` ip6tables,
    /// `libxt_*` both, `libebt_*` ebtables, `libarpt_*` arptables, anything else
    /// iptables (as upstream).
    pub fn for_file(path: &str) -> Vec<Tool> {
        let base = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if base.starts_with("libip6t_") {
            vec![Tool::Ip6tables]
        } else if base.starts_with("libxt_") {
            vec![Tool::Iptables, Tool::Ip6tables]
        } else if base.starts_with("libebt_") {
            vec![Tool::Ebtables]
        } else if base.starts_with("libarpt_") {
            vec![Tool::Arptables]
        } else {
            vec![Tool::Iptables]
        }
    }

    /// The name upstream's tests use (and `%` lines start with).
    pub fn name(self) -> &'static str {
        match self {
            Tool::Iptables => "iptables",
            Tool::Ip6tables => "ip6tables",
            Tool::Ebtables => "ebtables",
            Tool::Arptables => "arptables",
        }
    }

    /// The nf_tables variant of the binary.
    pub fn program(self) -> String {
        format!("{}-nft", self.name())
    }

    /// The command whose output shows the ruleset: `*-save` for iptables and
    /// ip6tables, `-L` of the table for ebtables and arptables.
    pub fn listing(self, table: Option<&str>) -> (String, Vec<String>) {
        match self {
            Tool::Iptables | Tool::Ip6tables => (format!("{}-nft-save", self.name()), vec![]),
            Tool::Ebtables | Tool::Arptables => {
                let mut args = Vec::new();
                if let Some(t) = table {
                    args.extend(["-t".to_string(), t.to_string()]);
                }
                args.push("-L".into());
                (self.program(), args)
            }
        }
    }
}

/// One meaningful line of a `.t` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Directive {
    /// `:CHAIN[,CHAIN]`: the chains the following rule lines are tried in.
    Chains(Vec<String>),
    /// `*TABLE`: the table of the following rule lines.
    Table(String),
    /// `@CMD` or `%CMD`: a shell command run as is (`iptables ...` meaning the nft
    /// variant).
    External(String),
    /// `RULE;SAVED;RESULT[;VARIANT[;ALT]]`: SAVED is `=` for "as given" and empty for
    /// failures; all but RULE are hints (the kernel is the oracle).
    Rule {
        rule: String,
        saved: String,
        expect: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number.
    pub lineno: usize,
    pub directive: Directive,
}

#[derive(Clone, Debug, Default)]
pub struct TestFile {
    pub lines: Vec<Line>,
    /// Lines that were not understood (upstream would stop or crash on them).
    pub warnings: Vec<String>,
}

impl TestFile {
    pub fn parse(text: &str) -> TestFile {
        let mut file = TestFile::default();
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let line = raw.trim_end();
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let directive = if let Some(chains) = line.strip_prefix(':') {
                Directive::Chains(chains.split(',').map(str::to_string).collect())
            } else if let Some(table) = line.strip_prefix('*') {
                Directive::Table(table.to_string())
            } else if let Some(cmd) = line.strip_prefix(['@', '%']) {
                Directive::External(cmd.to_string())
            } else {
                let items: Vec<&str> = line.split(';').collect();
                if items.len() < 3 {
                    file.warnings.push(format!(
                        "line {lineno}: not RULE;SAVED;RESULT, not run: {line}"
                    ));
                    continue;
                }
                Directive::Rule {
                    rule: items[0].to_string(),
                    saved: items[1].to_string(),
                    expect: items[2].to_string(),
                }
            };
            file.lines.push(Line { lineno, directive });
        }
        file
    }
}

/// Splits a rule into arguments as `sh` would for the quoting these files use: words
/// separated by blanks, `"..."` and `'...'` quoting, backslash escapes outside single
/// quotes. `None` if a quote is left open.
pub fn split_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => {
                            let c = chars.next()?;
                            if !matches!(c, '"' | '\\' | '$' | '`') {
                                word.push('\\');
                            }
                            word.push(c);
                        }
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let f = TestFile::parse(
            "# c\n:INPUT,FORWARD\n*nat\n-p tcp;=;OK\n\n-x;;FAIL\n@nfct x\n%iptables -I INPUT\nbad line\n",
        );
        let d: Vec<&Directive> = f.lines.iter().map(|l| &l.directive).collect();
        assert_eq!(
            d,
            [
                &Directive::Chains(vec!["INPUT".into(), "FORWARD".into()]),
                &Directive::Table("nat".into()),
                &Directive::Rule {
                    rule: "-p tcp".into(),
                    saved: "=".into(),
                    expect: "OK".into()
                },
                &Directive::Rule {
                    rule: "-x".into(),
                    saved: "".into(),
                    expect: "FAIL".into()
                },
                &Directive::External("nfct x".into()),
                &Directive::External("iptables -I INPUT".into()),
            ]
        );
        assert_eq!(f.lines[2].lineno, 4);
        assert_eq!(f.warnings.len(), 1);
        assert!(f.warnings[0].starts_with("line 9:"));
    }

    #[test]
    fn tools_by_file_name() {
        assert_eq!(
            Tool::for_file("a/libxt_tcp.t"),
            [Tool::Iptables, Tool::Ip6tables]
        );
        assert_eq!(Tool::for_file("libip6t_REJECT.t"), [Tool::Ip6tables]);
        assert_eq!(Tool::for_file("libipt_icmp.t"), [Tool::Iptables]);
        assert_eq!(Tool::for_file("libebt_ip.t"), [Tool::Ebtables]);
        assert_eq!(Tool::for_file("libarpt_MARK.t"), [Tool::Arptables]);
        assert_eq!(Tool::for_file("iptables.t"), [Tool::Iptables]);
        assert_eq!(
            Tool::Ebtables.listing(Some("nat")),
            (
                "ebtables-nft".to_string(),
                vec!["-t".into(), "nat".into(), "-L".into()]
            )
        );
        assert_eq!(Tool::Ip6tables.listing(None).0, "ip6tables-nft-save");
    }

    #[test]
    fn words_as_sh_splits_them() {
        assert_eq!(
            split_words(r#"-j LOG --log-prefix "test: " --x 'a b' c\ d"#).unwrap(),
            ["-j", "LOG", "--log-prefix", "test: ", "--x", "a b", "c d"]
        );
        assert_eq!(split_words(r#"--path "/""#).unwrap(), ["--path", "/"]);
        assert_eq!(split_words(r#"a "" b"#).unwrap(), ["a", "", "b"]);
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert!(split_words("\"open").is_none());
    }
}
