//! Commits that rewrite a loaded program's maps in place (`LoadedProgram::patch`):
//! the patched program must classify exactly as a fresh load of the new ruleset, and
//! one rule appended to a 10,000-rule chain must write only a handful of entries.

mod common;

use common::check::Checker;
use common::{load_or_skip, L4Spec, PacketSpec};
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, PortRange, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadError, LoadOptions};
use nftshim_ebpf::maps::compile;

/// Rule i: nine dimensions, matched by `packet(i)` only.
fn rule(i: usize) -> Rule {
    let saddr = nftshim_ebpf::Ipv4Net::new([10, (i >> 8) as u8, i as u8, 0].into(), 24).unwrap();
    let port = 1000 + (i % 5000) as u16;
    Rule::new(
        vec![
            Match::is(Test::IpSaddr(vec![saddr])),
            Match::is(Test::IpDaddr(vec!["192.168.0.0/16".parse().unwrap()])),
            Match::is(Test::L4Proto(vec![6])),
            Match::is(Test::Sport(vec![PortRange::new(1024, 65535)])),
            Match::is(Test::Dport(vec![PortRange::single(port)])),
            Match::not(Test::Iif(vec![9])),
            Match::is(Test::Mark {
                mask: 0xff,
                values: vec![0],
            }),
        ],
        if i.is_multiple_of(2) {
            Action::Accept
        } else {
            Action::Drop
        },
    )
}

fn packet(i: usize) -> PacketSpec {
    let l4 = L4Spec::Tcp {
        sport: 40000,
        dport: 1000 + (i % 5000) as u16,
    };
    PacketSpec::v4([10, (i >> 8) as u8, i as u8, 1], [192, 168, 1, 1], l4)
}

fn chain(rules: Vec<Rule>) -> Chain {
    Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Drop,
        rules,
    }
}

/// Every probe of `indexes` classifies on `loaded` as the reference says for `chain`.
fn agrees(loaded: &nftshim_ebpf::loader::LoadedChain, chain: &Chain, indexes: &[usize]) {
    let mut check = Checker::new(loaded, chain);
    for &i in indexes {
        check.packet(&packet(i)).unwrap();
    }
}

#[test]
fn one_rule_appended_to_10000_writes_only_what_changed() {
    let n = 10_000;
    let before = chain((0..n).map(rule).collect());
    let Some(mut loaded) = load_or_skip(&compile(&before).unwrap(), LoadOptions::default()) else {
        return;
    };
    let full_load = loaded.last_writes();

    // A rule with a new source prefix and a new port, at the end of the chain.
    let mut after = before.clone();
    let mut extra = rule(n + 7);
    extra.matches[4] = Match::is(Test::Dport(vec![PortRange::single(9999)]));
    after.rules.push(extra);
    let compiled = compile(&after).unwrap();
    let writes = loaded.patch(&compiled, LoadOptions::default()).unwrap();
    eprintln!("full load: {full_load} writes; one rule appended: {writes}");
    assert!(writes > 0, "the new rule must be written somewhere");
    assert!(
        writes * 100 < full_load,
        "appending one rule wrote {writes} entries, a full load writes {full_load}"
    );

    let i = n + 7;
    let probe = PacketSpec::v4(
        [10, (i >> 8) as u8, i as u8, 1],
        [192, 168, 1, 1],
        L4Spec::Tcp {
            sport: 40000,
            dport: 9999,
        },
    );
    let mut check = Checker::new(&loaded, &after);
    for i in [0, 1, n / 2, n - 1, n, n + 7] {
        check.packet(&packet(i)).unwrap();
    }
    assert_eq!(
        check.packet(&probe).unwrap(),
        Verdict::Drop,
        "the appended rule (odd: drop) decides its packet"
    );
    check.finish().unwrap();

    // And back: the rule deleted again writes as little.
    let writes = loaded
        .patch(&compile(&before).unwrap(), LoadOptions::default())
        .unwrap();
    assert!(writes * 100 < full_load, "deleting it wrote {writes}");
    agrees(&loaded, &before, &[0, n / 2, n - 1, n + 7]);
}

#[test]
fn patched_programs_agree_after_inserts_deletes_and_replacements() {
    let base: Vec<Rule> = (0..300).map(rule).collect();
    let Some(mut loaded) = load_or_skip(
        &compile(&chain(base.clone())).unwrap(),
        LoadOptions::default(),
    ) else {
        return;
    };
    let probes: Vec<usize> = (0..320)
        .step_by(7)
        .chain([0, 1, 150, 299, 300, 310])
        .collect();
    // Insert at the front (every rule's bit moves), delete from the middle, replace
    // a rule by one of another value, drop half the rules, grow past the first block.
    let mut front = base.clone();
    front.insert(0, rule(310));
    let mut middle = base.clone();
    middle.remove(150);
    let mut replaced = base.clone();
    replaced[10] = rule(305);
    let half: Vec<Rule> = base.iter().step_by(2).cloned().collect();
    let grown: Vec<Rule> = (0..4200).map(rule).collect();
    for rules in [front, middle, replaced, half, base.clone(), grown, base] {
        let c = chain(rules);
        let compiled = compile(&c).unwrap();
        match loaded.patch(&compiled, LoadOptions::default()) {
            Ok(_) => agrees(&loaded, &c, &probes),
            // Past the room of the first load: a fresh program is the answer.
            Err(LoadError::NoRoom(_)) => {
                let fresh = load_or_skip(&compiled, LoadOptions::default()).unwrap();
                agrees(&fresh, &c, &probes);
                loaded = fresh;
            }
            Err(e) => panic!("patch failed: {e}"),
        }
    }
}

#[test]
fn a_program_with_other_constants_is_not_patched() {
    let c = chain((0..10).map(rule).collect());
    let Some(mut loaded) = load_or_skip(&compile(&c).unwrap(), LoadOptions::default()) else {
        return;
    };
    // A new dimension (the output interface) changes what the verifier saw.
    let mut other = c.clone();
    other
        .rules
        .push(Rule::new(vec![Match::is(Test::Oif(vec![3]))], Action::Drop));
    let err = loaded
        .patch(&compile(&other).unwrap(), LoadOptions::default())
        .unwrap_err();
    assert!(matches!(err, LoadError::OtherConstants), "{err}");
    agrees(&loaded, &c, &[0, 5, 9, 10]);
}
