//! Shared test support: packets described as a [`PacketSpec`], built into real frames
//! with etherparse, and the fields the data plane should see in them; loading a chain
//! or skipping when this process may not use BPF.

#![allow(dead_code)] // each test binary uses part of it

pub mod check;
pub mod frames;
pub mod gen;

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, IpAuthHeader, IpFragOffset, IpHeaders,
    IpNumber, Ipv4Header, Ipv4Options, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header,
    Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder, PacketBuilderStep, VlanId,
};
use nftshim_ebpf::fields::{L3Fields, PacketFields};
use nftshim_ebpf::loader::{LoadError, LoadOptions, LoadedChain};
use nftshim_ebpf::maps::CompiledChain;

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

#[derive(Clone, Debug)]
pub struct PacketSpec {
    /// 802.1Q/802.1ad tags in the frame (0..=2).
    pub vlans: u8,
    pub l3: L3Spec,
    /// skb fields of a TC run (XDP runs have iif 1 = loopback, mark 0).
    pub iif: u32,
    pub mark: u32,
    /// Cut the frame to this many bytes (a truncated header).
    pub truncate: Option<usize>,
}

#[derive(Clone, Debug)]
pub enum L3Spec {
    Arp,
    V4 {
        saddr: Ipv4Addr,
        daddr: Ipv4Addr,
        options: bool,
        frag: Frag,
        l4: L4Spec,
    },
    V6 {
        saddr: Ipv6Addr,
        daddr: Ipv6Addr,
        exts: V6Exts,
        frag: Frag,
        l4: L4Spec,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    None,
    /// Offset 0, more fragments: the transport header is there.
    First,
    /// Offset != 0: no transport header.
    Later,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct V6Exts {
    pub hop_by_hop: bool,
    pub dest_opts: bool,
    pub routing: bool,
    pub auth: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum L4Spec {
    Tcp {
        sport: u16,
        dport: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP on IPv4, ICMPv6 on IPv6.
    Icmp {
        ty: u8,
        code: u8,
    },
    /// A protocol without ports or ICMP header (never an IPv6 extension header number).
    Other(u8),
}

impl L4Spec {
    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4Spec::Tcp { .. } => 6,
            L4Spec::Udp { .. } => 17,
            L4Spec::Icmp { .. } => {
                if v6 {
                    58
                } else {
                    1
                }
            }
            L4Spec::Other(p) => *p,
        }
    }
}

impl PacketSpec {
    pub fn new(l3: L3Spec) -> Self {
        PacketSpec {
            vlans: 0,
            l3,
            iif: 0,
            mark: 0,
            truncate: None,
        }
    }

    pub fn v4(saddr: [u8; 4], daddr: [u8; 4], l4: L4Spec) -> Self {
        PacketSpec::new(L3Spec::V4 {
            saddr: saddr.into(),
            daddr: daddr.into(),
            options: false,
            frag: Frag::None,
            l4,
        })
    }

    pub fn v6(saddr: &str, daddr: &str, l4: L4Spec) -> Self {
        PacketSpec::new(L3Spec::V6 {
            saddr: saddr.parse().unwrap(),
            daddr: daddr.parse().unwrap(),
            exts: V6Exts::default(),
            frag: Frag::None,
            l4,
        })
    }

    /// The frame, built with etherparse.
    pub fn frame(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        let mut out = Vec::new();
        let (ip, l4) = match &self.l3 {
            L3Spec::Arp => {
                let arp = ArpPacket::new(
                    ArpHardwareId::ETHERNET,
                    EtherType::IPV4,
                    ArpOperation::REQUEST,
                    &SRC_MAC,
                    &[10, 0, 0, 1],
                    &[0; 6],
                    &[10, 0, 0, 2],
                )
                .unwrap();
                match self.vlans {
                    0 => eth.arp(arp).write(&mut out).unwrap(),
                    1 => eth.single_vlan(vid(10)).arp(arp).write(&mut out).unwrap(),
                    _ => eth
                        .double_vlan(vid(100), vid(10))
                        .arp(arp)
                        .write(&mut out)
                        .unwrap(),
                }
                return self.cut(out);
            }
            L3Spec::V4 {
                saddr,
                daddr,
                options,
                frag,
                l4,
            } => {
                let mut h =
                    Ipv4Header::new(0, 64, IpNumber(0), saddr.octets(), daddr.octets()).unwrap();
                if *options {
                    // Eight bytes of NOPs: the transport header is 28 bytes in.
                    h.options = Ipv4Options::try_from(&[1u8; 8][..]).unwrap();
                }
                match frag {
                    Frag::None => {}
                    Frag::First => h.more_fragments = true,
                    Frag::Later => h.fragment_offset = IpFragOffset::try_new(185).unwrap(),
                }
                (IpHeaders::Ipv4(h, Default::default()), *l4)
            }
            L3Spec::V6 {
                saddr,
                daddr,
                exts,
                frag,
                l4,
            } => {
                let h = Ipv6Header {
                    hop_limit: 64,
                    source: saddr.octets(),
                    destination: daddr.octets(),
                    ..Default::default()
                };
                let raw = || Ipv6RawExtHeader::new_raw(IpNumber(0), &[0; 6]).unwrap();
                let e = Ipv6Extensions {
                    hop_by_hop_options: exts.hop_by_hop.then(raw),
                    destination_options: exts.dest_opts.then(raw),
                    routing: exts.routing.then(|| Ipv6RoutingExtensions {
                        routing: raw(),
                        final_destination_options: None,
                    }),
                    fragment: match frag {
                        Frag::None => None,
                        Frag::First => Some(Ipv6FragmentHeader::new(
                            IpNumber(0),
                            IpFragOffset::ZERO,
                            true,
                            7,
                        )),
                        Frag::Later => Some(Ipv6FragmentHeader::new(
                            IpNumber(0),
                            IpFragOffset::try_new(185).unwrap(),
                            false,
                            7,
                        )),
                    },
                    auth: exts
                        .auth
                        .then(|| IpAuthHeader::new(IpNumber(0), 1, 1, &[0; 4]).unwrap()),
                };
                (IpHeaders::Ipv6(h, e), *l4)
            }
        };
        let v6 = matches!(ip, IpHeaders::Ipv6(..));
        let step: PacketBuilderStep<IpHeaders> = match self.vlans {
            0 => eth.ip(ip),
            1 => eth.single_vlan(vid(10)).ip(ip),
            _ => eth.double_vlan(vid(100), vid(10)).ip(ip),
        };
        let payload = [0xaau8; 12];
        match l4 {
            L4Spec::Tcp { sport, dport } => step
                .tcp(sport, dport, 1, 1024)
                .write(&mut out, &payload)
                .unwrap(),
            L4Spec::Udp { sport, dport } => {
                step.udp(sport, dport).write(&mut out, &payload).unwrap()
            }
            L4Spec::Icmp { ty, code } if v6 => step
                .icmpv6_raw(ty, code, [0; 4])
                .write(&mut out, &payload)
                .unwrap(),
            L4Spec::Icmp { ty, code } => step
                .icmpv4_raw(ty, code, [0; 4])
                .write(&mut out, &payload)
                .unwrap(),
            L4Spec::Other(p) => step.write(&mut out, IpNumber(p), &payload).unwrap(),
        }
        self.cut(out)
    }

    /// The bytes nf_tables counts for this packet: all after the link-layer header
    /// (etherparse writes exact IP lengths and no padding).
    pub fn l3_len(&self) -> usize {
        self.frame()
            .len()
            .saturating_sub(14 + 4 * self.vlans as usize)
    }

    fn cut(&self, mut frame: Vec<u8>) -> Vec<u8> {
        if let Some(n) = self.truncate {
            frame.truncate(n);
        }
        frame
    }

    /// What rules should see of this packet. `iif`, `oif` and `mark` come from how it is
    /// run (XDP: loopback, no mark; TC: the spec's skb fields).
    pub fn fields(&self, iif: u32, oif: u32, mark: u32) -> PacketFields {
        let (l3, frag, l4, l4proto) = match &self.l3 {
            L3Spec::Arp => (L3Fields::None, Frag::None, None, None),
            L3Spec::V4 {
                saddr,
                daddr,
                frag,
                l4,
                ..
            } => {
                let l3 = L3Fields::V4 {
                    saddr: *saddr,
                    daddr: *daddr,
                };
                (l3, *frag, Some(*l4), Some(l4.proto(false)))
            }
            L3Spec::V6 {
                saddr,
                daddr,
                frag,
                l4,
                exts,
            } => {
                let l3 = L3Fields::V6 {
                    saddr: *saddr,
                    daddr: *daddr,
                };
                // etherparse puts AH after the fragment header: in a later fragment the
                // kernel stops there, not knowing the protocol; otherwise nf_tables'
                // ipv6_find_hdr() (IP6_FH_F_AUTH) stops at AH, whose protocol it takes.
                let l4proto = match (exts.auth, *frag == Frag::Later) {
                    (true, true) => None,
                    (true, false) => Some(51),
                    (false, _) => Some(l4.proto(true)),
                };
                (l3, *frag, Some(*l4), l4proto)
            }
        };
        // Ports and ICMP fields only when the protocol is the spec's own (not AH's).
        let own = l4
            .zip(l4proto)
            .is_some_and(|(l4, p)| p == l4.proto(matches!(self.l3, L3Spec::V6 { .. })));
        let header = frag != Frag::Later && own;
        let (ports, icmp_type, icmp_code) = match l4 {
            Some(L4Spec::Tcp { sport, dport } | L4Spec::Udp { sport, dport }) if header => {
                (Some((sport, dport)), None, 0)
            }
            Some(L4Spec::Icmp { ty, code }) if header => (None, Some(ty), code),
            _ => (None, None, 0),
        };
        PacketFields {
            l3,
            l4proto,
            ports,
            icmp_type,
            icmp_code,
            iif,
            oif,
            mark,
            ct: Default::default(),
            tcp_flags: match l4 {
                Some(L4Spec::Tcp { .. }) if header => Some(0),
                _ => None,
            },
            icmp_id: match l4 {
                Some(L4Spec::Icmp { .. }) if header => Some(0),
                _ => None,
            },
            inner: None,
            later_fragment: frag == Frag::Later,
            // etherparse leaves the IPv4 identification 0; the IPv6 fragments say 7.
            fragment_id: match (&self.l3, frag) {
                (_, Frag::None) => None,
                (L3Spec::V4 { .. }, _) => Some(0),
                _ => Some(7),
            },
            len: self.l3_len() as u32,
            headers: None,
        }
    }
}

fn vid(v: u16) -> VlanId {
    VlanId::try_new(v).unwrap()
}

/// Loads a compiled chain; `None` (after saying why) when this process may not use BPF.
/// Any other failure is a test failure: BPF is available on the machines this runs on.
pub fn load_or_skip(chain: &CompiledChain, options: LoadOptions) -> Option<LoadedChain> {
    match LoadedChain::load(chain, options) {
        Ok(loaded) => Some(loaded),
        Err(e) if bpf_denied(&e) => {
            eprintln!("SKIPPED: BPF is not available to this process (needs root / CAP_BPF): {e}");
            None
        }
        Err(e) => panic!("loading the chain failed: {e:?}"),
    }
}

/// EPERM while creating maps (the first BPF syscalls): no CAP_BPF. A verifier
/// rejection is EACCES on a program, and is a failure.
fn bpf_denied(e: &LoadError) -> bool {
    let text = format!("{e:?}");
    matches!(e, LoadError::Object(_))
        && (text.contains("os error 1)") || text.contains("Operation not permitted"))
}

#[allow(unused_imports)]
pub use nftshim_ebpf::loader::monotonic_ns;
