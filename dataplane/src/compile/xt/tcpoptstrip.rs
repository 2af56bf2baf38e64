//! xt_TCPOPTSTRIP (`-p tcp -j TCPOPTSTRIP --strip-options KINDS`, mangle table):
//! tcpoptstrip_mangle_packet() turns the options of the chosen kinds into NOPs, fixes
//! the TCP checksum up and goes on (XT_CONTINUE); it drops packets whose TCP header is
//! cut short and leaves later fragments alone ([`nftshim_ebpf::ir::TcpOptStrip`],
//! bpf/lib/tcpoptstrip.h). Options decide neither routes nor connection tuples, so the
//! data plane's TC programs may rewrite them in every chain, as header writes.

use netlink_proto::xt::Blob;
use nftshim_ebpf::ir::{Statement, TcpOptStrip};

use super::{Decompiled, XtCx, IPPROTO_TCP};
use crate::compile::Family;

/// `struct xt_tcpoptstrip_target_info`: strip_bmap u32[8] @0 (host order), bit
/// `k % 32` of word `k / 32` for kind `k`.
pub fn tcpoptstrip(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if !matches!(cx.family, Family::Ip | Family::Ip6) {
        return Err(
            "xt target TCPOPTSTRIP outside ip and ip6 tables is not supported by the eBPF \
             data plane"
                .into(),
        );
    }
    // The target's `.proto`: the control plane wants `-p tcp`; the data plane must
    // know the rule sees TCP packets only.
    if !cx
        .l4protos
        .is_some_and(|p| p.len() == 1 && p.contains(&IPPROTO_TCP))
    {
        return Err("xt target TCPOPTSTRIP without -p tcp is not supported".into());
    }
    let mut kinds = [0u8; 32];
    for (w, word) in kinds.chunks_mut(4).enumerate() {
        word.copy_from_slice(&b.u32(w * 4).to_le_bytes());
    }
    // End of options and NOP: the kernel would run its checksum fix-up over bytes
    // that stay the same (iptables refuses them).
    if kinds[0] & 0b11 != 0 {
        return Err(
            "xt target TCPOPTSTRIP --strip-options 0 or 1 is not supported by the eBPF data \
             plane"
                .into(),
        );
    }
    Ok(Decompiled::Statement(Statement::TcpOptStrip(TcpOptStrip {
        kinds,
    })))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::{decompile_target, Decompiled, XtCx};
    use crate::compile::{Family, Hook};
    use netlink_proto::expr::compat::{Target, TargetAttr};
    use nftshim_ebpf::ir::Statement;

    fn target(protos: Option<&BTreeSet<u8>>, info: &[u8]) -> Result<Decompiled, String> {
        let cx = XtCx {
            family: Family::Ip,
            hook: Hook::Prerouting,
            families: 1,
            l4protos: protos,
            view: None,
        };
        let t = Target::new(vec![
            TargetAttr::Name("TCPOPTSTRIP".into()),
            TargetAttr::Rev(0),
            TargetAttr::Info(info.to_vec()),
        ]);
        decompile_target(&cx, &t)
    }

    #[test]
    fn strip_options_become_a_map_of_kinds() {
        let tcp = BTreeSet::from([6u8]);
        // --strip-options 2,3,4,5,6,7 and kind 254: word 0 = 0xfc, word 7 bit 30.
        let mut info = [0u8; 32];
        info[0] = 0xfc;
        info[28..32].copy_from_slice(&(1u32 << 30).to_ne_bytes());
        let Decompiled::Statement(Statement::TcpOptStrip(s)) = target(Some(&tcp), &info).unwrap()
        else {
            panic!("not a TCPOPTSTRIP statement");
        };
        let kinds: Vec<u8> = (0..=255u8).filter(|&k| s.strips(k)).collect();
        assert_eq!(kinds, vec![2, 3, 4, 5, 6, 7, 254]);
    }

    #[test]
    fn refuses_what_it_cannot_strip_exactly() {
        let tcp = BTreeSet::from([6u8]);
        let mut nop = [0u8; 32];
        nop[0] = 0b110;
        assert!(target(Some(&tcp), &nop).is_err());
        let udp = BTreeSet::from([17u8]);
        assert!(target(Some(&udp), &[0; 32]).is_err());
        assert!(target(None, &[0; 32]).is_err());
        // No kind at all: the target walks and changes nothing.
        assert!(target(Some(&tcp), &[0; 32]).is_ok());
    }
}
