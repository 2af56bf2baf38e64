//! xt_NFLOG (`-j NFLOG`) and nft `log group N [snaplen S] [queue-threshold Q]
//! [prefix P]`: the packet goes to the nfnetlink_log listener bound to the group
//! (through the daemon, `runtime::nflog` and the engine's `ulog::packet`); the
//! statement is non-terminal, and without a listener nothing happens.
//!
//! Enforced at prerouting, input, output and postrouting of ip, ip6 and inet chains,
//! where the TC programs see what nfnetlink_log puts in the message: at prerouting (TC
//! ingress) the input device and its MAC header, the mark, skb->len, and no socket; at
//! input the same and the fsuid/fsgid of the socket early demux attached after
//! prerouting, which TC ingress looks up as early demux does (lib/nflog_demux.h;
//! refused when the namespace's early demux sysctls are off or it has VRF devices,
//! whose ports' packets early demux looks up under the VRF device); at output and
//! postrouting (TC egress; ip_output passes no input device) the output device, the
//! mark, skb->len and the socket file's fsuid/fsgid (NFULA_UID/GID, read by
//! lib/sockcred.h). Refused elsewhere:
//! - forward: TC egress sees the outgoing MAC header, not the received one the
//!   message carries (as `log`);
//! - netdev, bridge and arp chains: NFULA_L2HDR/VLAN and the bridge's physical
//!   devices.
//!
//! A namespace with a bridge and br_netfilter on (physical devices of bridged frames,
//! NFULA_IFINDEX_PHYSINDEV) or with a link whose MAC header the program does not see as
//! the kernel does (other than Ethernet, loopback and none) is refused when the
//! programs are built.

use nftshim_ebpf::ir::Statement;

use std::sync::Arc;

use super::{refuse, Facts, Family, Hook, Program, SymRule};
use crate::runtime::nflog::{
    NflogSpec, ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE, NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT,
    NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING,
};
use nftshim_engine::DataplaneError;

/// The statement of an NFLOG rule in a chain of `family` at `hook`, or why not.
pub fn statement(
    family: Family,
    hook: Hook,
    group: u16,
    prefix: &[u8],
    copy_len: Option<u32>,
    qthreshold: u16,
) -> Result<Statement, String> {
    match family {
        Family::Ip | Family::Ip6 | Family::Inet => {}
        _ => {
            return Err(
                "nflog (NFLOG, log group) in netdev, arp and bridge chains is not supported by \
                 the eBPF data plane"
                    .into(),
            )
        }
    }
    let hooknum = match hook {
        Hook::Prerouting => NF_INET_PRE_ROUTING,
        Hook::Input => NF_INET_LOCAL_IN,
        Hook::Output => NF_INET_LOCAL_OUT,
        Hook::Postrouting => NF_INET_POST_ROUTING,
        _ => 0xff,
    };
    let why = match hook {
        Hook::Prerouting | Hook::Input | Hook::Output | Hook::Postrouting => None,
        Hook::Forward => {
            Some("TC egress sees the outgoing MAC header, not the received one the message carries")
        }
        Hook::Ingress | Hook::Egress => Some("netdev hooks"),
    };
    if let Some(why) = why {
        return Err(format!(
            "nflog (NFLOG, log group) is supported by the eBPF data plane at prerouting, \
             input, output and postrouting only ({why})"
        ));
    }
    let spec = NflogSpec {
        hook: hooknum,
        group,
        copy_len,
        qthreshold,
        prefix: prefix.to_vec(),
    };
    Ok(Statement::Nflog {
        snap: spec.snap(),
        spec: spec.key(),
    })
}

/// The spec keys of the rules' nflog statements, in order.
pub fn specs(rules: &[Arc<SymRule>]) -> Vec<&str> {
    rules
        .iter()
        .flat_map(|r| &r.statements)
        .filter_map(|s| match s {
            Statement::Nflog { spec, .. } => Some(spec.as_str()),
            _ => None,
        })
        .collect()
}

fn rules_nflog(rules: &[Arc<SymRule>]) -> bool {
    rules.iter().any(|r| {
        r.statements
            .iter()
            .any(|s| matches!(s, Statement::Nflog { .. }))
    })
}

/// What the namespace must be like for NFLOG statements (see the module's comment).
pub fn check_facts(program: &Program, facts: &Facts) -> Result<(), DataplaneError> {
    let uses = program.chains.iter().any(|c| rules_nflog(&c.rules))
        || program.regular.values().any(|c| rules_nflog(&c.rules));
    if !uses {
        return Ok(());
    }
    let input = program
        .chains
        .iter()
        .map(|c| specs(&c.rules))
        .chain(program.regular.values().map(|c| specs(&c.rules)))
        .flatten()
        .any(|k| NflogSpec::from_key(k).is_some_and(|s| s.hook == NF_INET_LOCAL_IN));
    if input && !facts.early_demux_off.is_empty() {
        return Err(refuse(format!(
            "nflog (NFLOG, log group) in input chains with {} off is not supported by the \
             eBPF data plane (the programs find the socket early demux attaches, whose ids \
             the message carries, as with the kernel's defaults)",
            facts.early_demux_off.join(", ")
        )));
    }
    if input && !facts.l3mdev.is_empty() {
        return Err(refuse(
            "nflog (NFLOG, log group) in input chains with VRF devices is not supported by \
             the eBPF data plane (early demux looks a VRF port's packets up with the VRF \
             device as their input device, the programs' lookup with the port)"
                .to_string(),
        ));
    }
    if facts.br_netfilter && !facts.bridges.is_empty() {
        return Err(refuse(
            "nflog (NFLOG, log group) with a bridge and br_netfilter on is not supported by the \
             eBPF data plane (bridged frames' messages carry their physical devices)"
                .to_string(),
        ));
    }
    if let Some((i, t)) = facts
        .link_types
        .iter()
        .find(|(_, t)| !matches!(**t, ARPHRD_ETHER | ARPHRD_LOOPBACK | ARPHRD_NONE))
    {
        let name = facts.links.get(i).map_or("?", String::as_str);
        return Err(refuse(format!(
            "nflog (NFLOG, log group) with link {name} of type {t} (not Ethernet, loopback \
             or none, whose MAC header the program sees as the kernel does) is not supported \
             by the eBPF data plane"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_and_families() {
        for (hook, num) in [
            (Hook::Prerouting, 0),
            (Hook::Input, 1),
            (Hook::Output, 3),
            (Hook::Postrouting, 4),
        ] {
            for family in [Family::Ip, Family::Ip6, Family::Inet] {
                let st = statement(family, hook, 7, b"p", Some(100_000), 3).unwrap();
                let Statement::Nflog { spec, snap } = st else {
                    panic!("{st:?}");
                };
                assert_eq!(
                    snap, 0xfffb,
                    "the copy length is cut to the range's maximum"
                );
                let spec = NflogSpec::from_key(&spec).unwrap();
                assert_eq!(
                    (spec.hook, spec.group, spec.copy_len, spec.qthreshold),
                    (num, 7, Some(100_000), 3)
                );
            }
        }
        for hook in [Hook::Forward, Hook::Ingress] {
            let e = statement(Family::Ip, hook, 1, b"", None, 0).unwrap_err();
            assert!(
                e.contains("prerouting, input, output and postrouting only"),
                "{e}"
            );
        }
        for family in [Family::Netdev, Family::Bridge, Family::Arp] {
            assert!(statement(family, Hook::Prerouting, 1, b"", None, 0).is_err());
        }
    }

    #[test]
    fn namespaces_it_cannot_serve_are_refused() {
        let rule = SymRule {
            handle: 1,
            matches: Vec::new(),
            action: super::super::Action::Continue,
            statements: vec![statement(Family::Ip, Hook::Prerouting, 1, b"", None, 0).unwrap()],
            counters: Vec::new(),
            rateest: Vec::new(),
            flat: Default::default(),
        };
        let mut program = Program::default();
        program.regular.insert(
            "r".into(),
            super::super::RegularChain {
                label: "r".into(),
                rules: vec![Arc::new(rule)],
            },
        );
        let mut facts = Facts::default();
        facts.link_types.insert(1, ARPHRD_LOOPBACK);
        facts.link_types.insert(2, ARPHRD_ETHER);
        facts.br_netfilter = true;
        assert!(
            check_facts(&program, &facts).is_ok(),
            "br_netfilter without a bridge"
        );
        facts.links.insert(3, "gre0".into());
        facts.link_types.insert(3, 778);
        let e = check_facts(&program, &facts).unwrap_err();
        assert!(e.reason.contains("gre0"), "{}", e.reason);
        assert!(check_facts(&Program::default(), &facts).is_ok(), "no NFLOG");
        // Input statements need early demux as the programs emulate it.
        facts.link_types.remove(&3);
        facts.early_demux_off = vec!["net.ipv4.udp_early_demux".into()];
        assert!(check_facts(&program, &facts).is_ok(), "prerouting only");
        let input = statement(Family::Ip, Hook::Input, 1, b"", None, 0).unwrap();
        Arc::make_mut(&mut program.regular.get_mut("r").unwrap().rules[0]).statements = vec![input];
        let e = check_facts(&program, &facts).unwrap_err();
        assert!(e.reason.contains("udp_early_demux"), "{}", e.reason);
        facts.early_demux_off.clear();
        assert!(check_facts(&program, &facts).is_ok());
        facts.l3mdev.insert(2);
        let e = check_facts(&program, &facts).unwrap_err();
        assert!(e.reason.contains("VRF"), "{}", e.reason);
    }
}
