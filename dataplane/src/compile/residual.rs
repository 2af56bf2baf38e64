//! A rule's residual program ([`nftshim_ebpf::residual`]), built while the rule is
//! decompiled: every load is recorded as the operation that repeats it, and every test
//! LBVS cannot index (`cmp`, `range`, `lookup` on anything but the indexed fields)
//! becomes an operation of the program. At the end the loads that no residual test
//! reads are dropped: the indexed predicates they fed already fail on packets without
//! the field, as the load would have.

use nftshim_ebpf::residual::{AddrTypeOut, Insn, ResidualProgram, REGS_LEN};

#[derive(Clone, Debug, Default)]
pub struct Trace {
    insns: Vec<Insn>,
    /// Register bytes (bit n = byte n) holding a value no residual operation can
    /// reproduce (interface names, ct state, ...).
    opaque: u64,
    tests: usize,
    /// The rule is in a netdev chain: its program sees the packet as those do.
    netdev: bool,
}

/// The register bytes (residual offsets) compat matches load into for their own
/// tests: NFT_REG32_12 to NFT_REG32_15, which iptables-nft never uses.
pub const SCRATCH: u8 = (REGS_LEN - 16) as u8;
pub const SCRATCH_LEN: u32 = 16;
/// [`SCRATCH`] as a netlink register byte offset (the verdict register is 0..16).
pub const SCRATCH_NETLINK: u32 = SCRATCH as u32 + 16;

/// Bits of register bytes `[off, off + len)`.
fn bytes(off: u8, len: usize) -> u64 {
    (off as usize..(off as usize + len).min(REGS_LEN)).fold(0, |m, b| m | 1 << b)
}

/// A register's byte offset as netlink gives it ([`netlink_proto::data::Register::byte_offset`]:
/// the verdict register is bytes 0..16) -> offset in the residual register file.
pub fn reg(byte_offset: u32) -> Option<u8> {
    byte_offset
        .checked_sub(16)
        .filter(|&r| (r as usize) < REGS_LEN)
        .map(|r| r as u8)
}

/// What an operation writes (register, bytes) and reads.
fn writes(insn: &Insn) -> Option<(u8, usize)> {
    let round = |n: usize| n.div_ceil(4) * 4;
    match insn {
        Insn::Payload { dreg, len, .. } => Some((*dreg, round(*len as usize))),
        Insn::Meta { dreg, .. } | Insn::XtPktType { dreg } => Some((*dreg, 4)),
        Insn::Ct { dreg, len, .. } => Some((*dreg, round(*len as usize))),
        Insn::Ipv6Exthdr {
            dreg, len, present, ..
        }
        | Insn::TcpOption {
            dreg, len, present, ..
        }
        | Insn::SctpChunk {
            dreg, len, present, ..
        } => Some((*dreg, if *present { 4 } else { round(*len as usize) })),
        Insn::Immediate { dreg, data } => Some((*dreg, round(data.len()))),
        Insn::Bitwise { dreg, len, .. } => Some((*dreg, round(*len as usize))),
        Insn::Shift { dreg, .. } => Some((*dreg, 4)),
        Insn::Byteorder { dreg, len, .. } => Some((*dreg, *len as usize)),
        Insn::PayloadIndexed { dreg, len, .. } => Some((*dreg, round(*len as usize))),
        Insn::Ip6SkipExthdr {
            dreg, len, nexthdr, ..
        } => Some((*dreg, if *nexthdr { 4 } else { round(*len as usize) })),
        Insn::PktType { dreg } => Some((*dreg, 4)),
        Insn::LinkChoice { dreg, len, .. } => Some((*dreg, round(*len as usize))),
        Insn::XtIpv6Header { dreg, len, .. } => Some((*dreg, round(*len as usize))),
        Insn::XtSrhSegment { dreg, .. } => Some((*dreg, 16)),
        Insn::XtIpv6HeaderTypes { dreg } => Some((*dreg, 4)),
        Insn::SockUgid { dreg, .. } => Some((*dreg, 4)),
        Insn::AddrType {
            out: AddrTypeOut::Store { dreg },
            ..
        } => Some((*dreg, 4)),
        Insn::AddrType { .. }
        | Insn::Cmp { .. }
        | Insn::Range { .. }
        | Insn::Lookup { .. }
        | Insn::LookupEither { .. }
        | Insn::XtString(_)
        | Insn::XtU32(_)
        | Insn::NetdevView
        | Insn::XtFullSocket
        | Insn::XtCgroupClassid { .. }
        | Insn::XtSocket { .. }
        | Insn::XtOwner { .. }
        | Insn::XtTransportHeader { .. }
        | Insn::XtSctpChunks(_)
        | Insn::XtDccpOption { .. }
        | Insn::XtCpu { .. }
        | Insn::XtRandom { .. }
        | Insn::XtIpv6Options { .. }
        | Insn::HalvesEq { .. }
        | Insn::XtRateest { .. }
        | Insn::XtRecent { .. }
        | Insn::XtDropUnless { .. }
        | Insn::XtConnlimitTuple => None,
    }
}

fn reads(insn: &Insn) -> Option<(u8, usize)> {
    let round = |n: usize| n.div_ceil(4) * 4;
    match insn {
        Insn::Payload { .. }
        | Insn::Meta { .. }
        | Insn::XtPktType { .. }
        | Insn::Ct { .. }
        | Insn::Immediate { .. }
        | Insn::Ipv6Exthdr { .. }
        | Insn::TcpOption { .. }
        | Insn::SctpChunk { .. }
        | Insn::PayloadIndexed { .. }
        | Insn::Ip6SkipExthdr { .. }
        | Insn::PktType { .. }
        | Insn::LinkChoice { .. }
        | Insn::NetdevView
        | Insn::XtFullSocket
        | Insn::XtCgroupClassid { .. }
        | Insn::XtSocket { .. }
        | Insn::XtOwner { .. }
        | Insn::SockUgid { .. }
        | Insn::XtString(_)
        | Insn::XtU32(_)
        | Insn::XtTransportHeader { .. }
        | Insn::XtSctpChunks(_)
        | Insn::XtDccpOption { .. }
        | Insn::XtCpu { .. }
        | Insn::XtRandom { .. }
        | Insn::XtIpv6Options { .. }
        | Insn::XtSrhSegment { .. }
        | Insn::XtIpv6HeaderTypes { .. }
        | Insn::XtIpv6Header { .. }
        | Insn::XtRecent { .. }
        | Insn::XtConnlimitTuple => None,
        Insn::XtDropUnless { sreg, data } => Some((*sreg, data.len())),
        Insn::HalvesEq { sreg, len, .. } => Some((*sreg, 2 * *len as usize)),
        Insn::XtRateest { sreg, .. } => Some((*sreg, 16)),
        Insn::AddrType { sreg, .. } => Some((*sreg, 4)),
        Insn::Bitwise { sreg, len, .. } => Some((*sreg, round(*len as usize))),
        Insn::Shift { sreg, .. } => Some((*sreg, 4)),
        Insn::Byteorder { sreg, len, .. } => Some((*sreg, *len as usize)),
        Insn::Cmp { sreg, data, .. } => Some((*sreg, data.len())),
        Insn::Range { sreg, from, .. } => Some((*sreg, from.len())),
        Insn::Lookup { sreg, len, .. } => Some((*sreg, *len as usize)),
        // Both keys, and what lies between them.
        Insn::LookupEither {
            sreg, sreg2, len, ..
        } => {
            let (lo, hi) = ((*sreg).min(*sreg2), (*sreg).max(*sreg2));
            Some((lo, usize::from(hi - lo) + *len as usize))
        }
    }
}

impl Trace {
    /// The trace of a rule in a chain of `family` netdev or not.
    pub fn new(netdev: bool) -> Self {
        Trace {
            netdev,
            ..Default::default()
        }
    }

    /// A load into `len` bytes at `dreg` (netlink byte offset): `insn` repeats it, or
    /// `None` when no residual operation can.
    pub fn load(&mut self, dreg: u32, len: u32, insn: Option<Insn>) {
        let Some(d) = reg(dreg) else { return };
        match insn {
            Some(insn) => {
                self.opaque &= !bytes(d, len as usize);
                self.insns.push(insn);
            }
            None => self.opaque |= bytes(d, len as usize),
        }
    }

    /// An operation from `sreg` to `dreg`: opaque if its source is.
    pub fn transform(&mut self, sreg: u32, dreg: u32, len: u32, insn: Option<Insn>) {
        let source_opaque = reg(sreg).is_none_or(|s| self.opaque & bytes(s, len as usize) != 0);
        self.load(dreg, len, insn.filter(|_| !source_opaque));
    }

    /// A test LBVS cannot index (`why` says what kept it from LBVS): added to the
    /// program if the register it reads holds a value the program can reproduce.
    pub fn test(
        &mut self,
        sreg: u32,
        len: u32,
        insn: Option<Insn>,
        why: String,
    ) -> Result<(), String> {
        let Some(s) = reg(sreg) else { return Err(why) };
        if s as usize + len as usize > REGS_LEN || self.opaque & bytes(s, len as usize) != 0 {
            return Err(why);
        }
        let Some(insn) = insn else { return Err(why) };
        self.insns.push(insn);
        self.tests += 1;
        Ok(())
    }

    /// A test the data plane wrote itself (a compat match): `insns` load into and test
    /// only the [`SCRATCH`] registers, which are opaque afterwards (no nft expression
    /// put these values there).
    pub fn scratch_test(&mut self, insns: Vec<Insn>) {
        self.insns.extend(insns);
        self.tests += 1;
        self.opaque |= bytes(SCRATCH, SCRATCH_LEN as usize);
    }

    /// How many residual tests the rule has so far.
    pub fn tests(&self) -> usize {
        self.tests
    }

    /// The residual program, if the rule has residual tests: the tests and the loads
    /// they read.
    pub fn program(&self) -> Result<Option<ResidualProgram>, String> {
        if self.tests == 0 {
            return Ok(None);
        }
        let mut live = 0u64;
        let mut kept = Vec::new();
        for insn in self.insns.iter().rev() {
            if let Some((d, n)) = writes(insn) {
                let w = bytes(d, n);
                // A load that may drop the packet (an xt match's) acts even unread.
                if live & w == 0 && !insn.can_drop() {
                    continue;
                }
                live &= !w;
            }
            if let Some((s, n)) = reads(insn) {
                live |= bytes(s, n);
            }
            kept.push(insn.clone());
        }
        if self.netdev {
            kept.push(Insn::NetdevView);
        }
        kept.reverse();
        let program = ResidualProgram { insns: kept };
        program
            .check()
            .map_err(|e| format!("residual check not supported by the eBPF data plane: {e}"))?;
        Ok(Some(program))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftshim_ebpf::residual::{CmpOp, PayloadBase};

    fn payload(offset: u16, dreg: u8) -> Insn {
        Insn::Payload {
            base: PayloadBase::Network,
            offset,
            len: 1,
            dreg,
        }
    }

    #[test]
    fn loads_no_residual_test_reads_are_dropped() {
        let mut t = Trace::default();
        t.load(16, 1, Some(payload(9, 0))); // ip protocol, tested by LBVS
        t.load(16, 1, Some(payload(8, 0))); // ip ttl
        let cmp = Insn::Cmp {
            sreg: 0,
            op: CmpOp::Eq,
            data: vec![64],
        };
        t.test(16, 1, Some(cmp.clone()), "ttl".into()).unwrap();
        assert_eq!(
            t.program().unwrap().unwrap().insns,
            vec![payload(8, 0), cmp]
        );
    }

    #[test]
    fn a_load_that_may_drop_the_packet_is_kept_unread() {
        // `-m hbh`: the header must be found (and whole), nothing reads it.
        let mut t = Trace::default();
        let find = Insn::XtIpv6Header {
            header: 0,
            len: 2,
            dreg: SCRATCH,
            whole: true,
            offset: 0,
            drops: true,
        };
        t.scratch_test(vec![find.clone()]);
        assert_eq!(t.program().unwrap().unwrap().insns, vec![find]);
    }

    #[test]
    fn tests_on_opaque_registers_are_refused_with_the_reason() {
        let mut t = Trace::default();
        t.load(16, 16, None); // an interface name
        let cmp = Insn::Cmp {
            sreg: 0,
            op: CmpOp::Lt,
            data: vec![1; 4],
        };
        assert_eq!(t.test(16, 4, Some(cmp), "why".into()), Err("why".into()));
        assert_eq!(t.program(), Ok(None));
    }
}
