//! Reading `nft list ruleset` output: the one normalisation the comparison applies,
//! and finding rule handles in `nft -a` listings.

/// Masks the remaining lifetime of set elements (`expires 29s996ms`): it changes with
/// every millisecond, so two listings of the same state taken a moment apart differ.
/// The element's configured `timeout` is kept. Trailing whitespace is dropped per line.
pub fn normalise(listing: &str) -> String {
    let mut out = String::with_capacity(listing.len());
    for line in listing.lines() {
        let mut rest = line.trim_end();
        while let Some(pos) = rest.find("expires ") {
            let (head, tail) = rest.split_at(pos + "expires ".len());
            out.push_str(head);
            let len = tail
                .find(|c: char| !(c.is_ascii_digit() || "dhms".contains(c)))
                .unwrap_or(tail.len());
            out.push_str(if len > 0 { "<T>" } else { "" });
            rest = &tail[len..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// Masks the process id in nft's `# new generation N by process PID (nft)` lines
/// (printed by `--echo` and `monitor`): two runs never share it.
pub fn mask_process_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.split_once(" by process ") {
            Some((head, tail)) => {
                let rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
                out.push_str(&format!("{head} by process <pid>{rest}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Handles (`# handle N`) of the rules in chain `chain` of table `family table`, in a
/// listing made with `nft -a list ruleset`.
pub fn rule_handles(listing: &str, family: &str, table: &str, chain: &str) -> Vec<u64> {
    let mut in_table = false;
    let mut in_chain = false;
    let mut handles = Vec::new();
    for line in listing.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let head = t.split(" # handle").next().unwrap_or(t).trim_end();
        if !line.starts_with('\t') && !line.starts_with(' ') {
            // Top level: a table opens or closes.
            in_table = head == format!("table {family} {table} {{");
            in_chain = false;
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some(name) = head
            .strip_prefix("chain ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            in_chain = unquote(name) == chain;
            continue;
        }
        if t == "}" {
            in_chain = false;
            continue;
        }
        if in_chain {
            if let Some(h) = t
                .rsplit_once("# handle ")
                .and_then(|(_, n)| n.trim().parse().ok())
            {
                handles.push(h);
            }
        }
    }
    handles
}

fn unquote(name: &str) -> &str {
    name.strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_masked_but_timeout_kept() {
        let l = "\t\telements = { 1.2.3.4 timeout 30s expires 29s996ms, 5.6.7.8 expires 1d2h }  \n";
        assert_eq!(
            normalise(l),
            "\t\telements = { 1.2.3.4 timeout 30s expires <T>, 5.6.7.8 expires <T> }\n"
        );
        assert_eq!(normalise("a\nb"), "a\nb\n");
    }

    #[test]
    fn process_ids_are_masked() {
        assert_eq!(
            mask_process_ids("add table ip t\n# new generation 2 by process 12882 (nft)\n"),
            "add table ip t\n# new generation 2 by process <pid> (nft)\n"
        );
    }

    #[test]
    fn handles_of_one_chain() {
        let l = "table ip t { # handle 1\n\tset s { # handle 3\n\t\ttype ipv4_addr\n\t}\n\n\
                 \tchain input { # handle 2\n\t\ttype filter hook input priority filter; policy accept;\n\
                 \t\tip saddr 1.1.1.1 # handle 5\n\t\tip saddr { 2.2.2.2, 3.3.3.3 } accept # handle 7\n\t}\n\
                 \tchain output { # handle 4\n\t\taccept # handle 8\n\t}\n}\n\
                 table ip6 t { # handle 2\n\tchain input { # handle 1\n\t\taccept # handle 9\n\t}\n}\n";
        assert_eq!(rule_handles(l, "ip", "t", "input"), vec![5, 7]);
        assert_eq!(rule_handles(l, "ip", "t", "output"), vec![8]);
        assert_eq!(rule_handles(l, "ip6", "t", "input"), vec![9]);
        assert!(rule_handles(l, "inet", "t", "input").is_empty());
    }
}
