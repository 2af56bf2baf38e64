//! Parser for nftables' `tests/py` `*.t` files, following the reading rules of
//! upstream's `nft-test.py` (which lines count, how set and object lines turn into
//! commands) so that the same commands are replayed.

/// What a line says the outcome should be (a hint only: the kernel is the oracle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Ok,
    Fail,
}

impl Expect {
    fn parse(s: &str) -> Option<Expect> {
        match s.trim_end() {
            "ok" => Some(Expect::Ok),
            "fail" => Some(Expect::Fail),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDecl {
    pub family: String,
    pub name: String,
    pub chains: Vec<String>,
}

/// One meaningful line of a `.t` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Directive {
    /// `:NAME;SPEC` declares a chain that tables may list.
    Chain { name: String, spec: String },
    /// `*FAMILY;TABLE;CHAIN[,CHAIN]` creates a table with those chains.
    Table(TableDecl),
    /// `!NAME TYPE...;ok|fail`: `keyword` is `set` or `map`, `body` the text between
    /// the braces of `add set|map FAMILY TABLE NAME { body }`.
    Set {
        name: String,
        keyword: &'static str,
        body: String,
        expect: Expect,
    },
    /// `?SET ELEMENTS;ok|fail`.
    Elements {
        set: String,
        elements: String,
        expect: Expect,
    },
    /// `%NAME type KIND SPEC;ok|fail`: `add KIND FAMILY TABLE NAME SPEC`.
    Object {
        name: String,
        kind: String,
        spec: String,
        expect: Expect,
    },
    /// `RULE;ok|fail[;CANONICAL]`.
    Rule {
        rule: String,
        expect: Expect,
        canonical: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number.
    pub lineno: usize,
    /// The line as written, without its newline.
    pub text: String,
    pub directive: Directive,
}

#[derive(Clone, Debug, Default)]
pub struct TestFile {
    pub lines: Vec<Line>,
    /// Lines that were not understood (upstream warns and skips them too).
    pub warnings: Vec<String>,
    /// Rule lines marked `-` (known broken upstream), not run.
    pub disabled: usize,
}

impl TestFile {
    pub fn parse(text: &str) -> TestFile {
        let mut file = TestFile::default();
        for (idx, raw) in text.lines().enumerate() {
            let lineno = idx + 1;
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let directive = match parse_line(line) {
                Parsed::Directive(d) => d,
                Parsed::Disabled => {
                    file.disabled += 1;
                    continue;
                }
                Parsed::Malformed(why) => {
                    file.warnings.push(format!("line {lineno}: {why}: {line}"));
                    continue;
                }
            };
            file.lines.push(Line {
                lineno,
                text: line.to_string(),
                directive,
            });
        }
        file
    }
}

enum Parsed {
    Directive(Directive),
    Disabled,
    Malformed(&'static str),
}

fn parse_line(line: &str) -> Parsed {
    let body = &line[1..];
    match line.as_bytes()[0] {
        b'*' => {
            let parts: Vec<&str> = body.trim_end().split(';').collect();
            if parts.len() < 3 {
                return Parsed::Malformed("table line needs FAMILY;TABLE;CHAINS");
            }
            Parsed::Directive(Directive::Table(TableDecl {
                family: parts[0].to_string(),
                name: parts[1].to_string(),
                chains: parts[2].split(',').map(str::to_string).collect(),
            }))
        }
        b':' => {
            let mut parts = body.trim_end().splitn(3, ';');
            let name = parts.next().unwrap_or_default().to_string();
            let spec = parts.next().unwrap_or_default().to_string();
            Parsed::Directive(Directive::Chain { name, spec })
        }
        b'!' => {
            let parts: Vec<&str> = body.trim_end().split(';').collect();
            let Some(expect) = parts.get(1).and_then(|s| Expect::parse(s)) else {
                return Parsed::Malformed("set line needs ;ok or ;fail");
            };
            match set_command(parts[0]) {
                Some((name, keyword, body)) => Parsed::Directive(Directive::Set {
                    name,
                    keyword,
                    body,
                    expect,
                }),
                None => Parsed::Malformed("set line needs NAME type|typeof TYPE"),
            }
        }
        b'?' => {
            let parts: Vec<&str> = body.trim_end().split(';').collect();
            let Some(expect) = parts.get(1).and_then(|s| Expect::parse(s)) else {
                return Parsed::Malformed("element line needs ;ok or ;fail");
            };
            let (set, elements) = parts[0].split_once(' ').unwrap_or((parts[0], ""));
            // Upstream splits on ',' and joins with ", ": the same list for nft.
            let elements = elements.split(',').collect::<Vec<_>>().join(", ");
            Parsed::Directive(Directive::Elements {
                set: set.to_string(),
                elements,
                expect,
            })
        }
        b'%' => {
            // An object spec may contain ';' inside braces: cut after the last '}'.
            let (spec, result) = match line.rfind('}') {
                Some(brace) => (&line[1..=brace], line.get(brace + 2..).unwrap_or("")),
                None => {
                    let mut parts = body.trim_end().splitn(2, ';');
                    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
                }
            };
            let Some(expect) = Expect::parse(result.split(';').next().unwrap_or("")) else {
                return Parsed::Malformed("object line needs ;ok or ;fail");
            };
            match object_command(spec) {
                Some((name, kind, spec)) => Parsed::Directive(Directive::Object {
                    name,
                    kind,
                    spec,
                    expect,
                }),
                None => Parsed::Malformed("object line needs NAME type KIND"),
            }
        }
        _ => {
            let parts: Vec<&str> = line.split(';').collect();
            let expect = match parts.get(1).and_then(|s| Expect::parse(s)) {
                Some(e) if parts.len() <= 3 => e,
                _ => return Parsed::Malformed("rule line needs RULE;ok|fail[;CANONICAL]"),
            };
            if line.starts_with('-') {
                return Parsed::Disabled;
            }
            Parsed::Directive(Directive::Rule {
                rule: parts[0].to_string(),
                expect,
                canonical: parts.get(2).map(|c| c.trim_end().to_string()),
            })
        }
    }
}

/// Turns `NAME type T [. T]... [: D [. D]...] [timeout X] [flags F]` into
/// (name, "set"|"map", brace body) exactly as upstream's `set_process` does.
fn set_command(spec: &str) -> Option<(String, &'static str, String)> {
    // Upstream splits on single spaces; so do we, to build the same command.
    let tokens: Vec<&str> = spec.split(' ').collect();
    let tok = |i: usize| tokens.get(i).copied();
    let name = tok(0)?.to_string();
    let typeof_ = tok(1)? == "typeof";
    let mut set_type = format!("{} {}", tok(1)?, tok(2)?);
    let mut data = String::new();
    let mut timeout = String::new();
    let mut flags = String::new();
    let mut i = 3;
    if typeof_ && tok(i) == Some("id") {
        set_type.push_str(" id");
        i += 1;
    }
    while tok(i) == Some(".") {
        set_type.push_str(&format!(" . {}", tok(i + 1)?));
        i += 2;
    }
    while tok(i) == Some(":") {
        data = tok(i + 1)?.to_string();
        i += 2;
    }
    while tok(i) == Some(".") {
        data.push_str(&format!(" . {}", tok(i + 1)?));
        i += 2;
    }
    if typeof_ && tok(i) == Some("mark") {
        data.push_str(" mark");
        i += 1;
    }
    if tokens.len() == i + 2 && tok(i) == Some("timeout") {
        timeout = format!("timeout {};", tok(i + 1)?);
        i += 2;
    }
    // Upstream warns about anything else left over, and adds the set all the same.
    if tokens.len() == i + 2 && tok(i) == Some("flags") {
        flags = format!("flags {}; ", tok(i + 1)?);
    }
    if data.is_empty() {
        Some((name, "set", format!("{set_type};{timeout} {flags}")))
    } else {
        Some((
            name,
            "map",
            format!("{set_type} : {data};{timeout} {flags}"),
        ))
    }
}

/// `NAME type KIND [SPEC...]` with `ct helper|timeout|expectation` as two-word kinds,
/// as upstream's `obj_process` reads it.
fn object_command(spec: &str) -> Option<(String, String, String)> {
    let mut tokens: Vec<&str> = spec.split(' ').collect();
    let name = tokens.first()?.to_string();
    let mut kind = tokens.get(2)?.to_string();
    if kind == "ct" {
        if let Some(sub @ ("helper" | "timeout" | "expectation")) = tokens.get(3).copied() {
            kind = format!("ct {sub}");
            tokens[3] = "";
        }
    }
    let rest = tokens.get(3..).map(|t| t.join(" ")).unwrap_or_default();
    Some((name, kind, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Directive {
        let f = TestFile::parse(line);
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
        f.lines.into_iter().next().expect("a directive").directive
    }

    #[test]
    fn tables_and_chains() {
        assert_eq!(
            one("*netdev;test-netdev;ingress,egress"),
            Directive::Table(TableDecl {
                family: "netdev".into(),
                name: "test-netdev".into(),
                chains: vec!["ingress".into(), "egress".into()],
            })
        );
        assert_eq!(
            one(":ingress;type filter hook ingress device lo priority 0"),
            Directive::Chain {
                name: "ingress".into(),
                spec: "type filter hook ingress device lo priority 0".into()
            }
        );
    }

    #[test]
    fn rules_with_and_without_canonical_form() {
        assert_eq!(
            one("ct state 8;ok;ct state new"),
            Directive::Rule {
                rule: "ct state 8".into(),
                expect: Expect::Ok,
                canonical: Some("ct state new".into())
            }
        );
        assert_eq!(
            one("ct state xxx;fail"),
            Directive::Rule {
                rule: "ct state xxx".into(),
                expect: Expect::Fail,
                canonical: None
            }
        );
    }

    #[test]
    fn comments_disabled_and_malformed_lines() {
        let f = TestFile::parse("# c\n\n-meta foo;ok\nno verdict here\nx;maybe\na;ok;b;c\n");
        assert!(f.lines.is_empty());
        assert_eq!(f.disabled, 1);
        assert_eq!(f.warnings.len(), 3);
        assert!(f.warnings[0].starts_with("line 4:"));
    }

    #[test]
    fn sets_build_upstreams_commands() {
        assert_eq!(
            one("!set1 type ipv4_addr timeout 60s;ok"),
            Directive::Set {
                name: "set1".into(),
                keyword: "set",
                body: "type ipv4_addr;timeout 60s; ".into(),
                expect: Expect::Ok
            }
        );
        assert_eq!(
            one("!set3 type ipv4_addr . ipv4_addr . inet_service flags interval;ok"),
            Directive::Set {
                name: "set3".into(),
                keyword: "set",
                body: "type ipv4_addr . ipv4_addr . inet_service; flags interval; ".into(),
                expect: Expect::Ok
            }
        );
        assert_eq!(
            one("!map1 typeof ct id : meta mark;ok"),
            Directive::Set {
                name: "map1".into(),
                keyword: "map",
                body: "typeof ct id : meta mark; ".into(),
                expect: Expect::Ok
            }
        );
        assert_eq!(
            one("?set1 192.168.3.4 timeout 30s, 10.2.1.1;ok"),
            Directive::Elements {
                set: "set1".into(),
                elements: "192.168.3.4 timeout 30s,  10.2.1.1".into(),
                expect: Expect::Ok
            }
        );
    }

    #[test]
    fn objects_keep_semicolons_inside_braces() {
        assert_eq!(
            one("%cttime1 type ct timeout { protocol tcp; policy = { established:122 } ;};ok"),
            Directive::Object {
                name: "cttime1".into(),
                kind: "ct timeout".into(),
                spec: " { protocol tcp; policy = { established:122 } ;}".into(),
                expect: Expect::Ok
            }
        );
        assert_eq!(
            one("%qt2 type quota over 1 kbytes;ok"),
            Directive::Object {
                name: "qt2".into(),
                kind: "quota".into(),
                spec: "over 1 kbytes".into(),
                expect: Expect::Ok
            }
        );
        assert_eq!(
            one("%cnt1 type counter;fail"),
            Directive::Object {
                name: "cnt1".into(),
                kind: "counter".into(),
                spec: "".into(),
                expect: Expect::Fail
            }
        );
    }
}
