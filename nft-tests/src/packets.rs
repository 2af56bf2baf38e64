//! Packet differential tests: the same ruleset enforced by the kernel in one set of
//! namespaces and by nftshimd (eBPF data plane) in another, the same crafted packets
//! sent through both, and per packet: delivered or not, on each side.
//!
//! Topology (one per side), all addresses inside private namespaces:
//!
//! ```text
//!   peer p0 ---- f0 fw f1 ---- r0 far
//!   10.7.1.2   10.7.1.1  10.7.2.1  10.7.2.2   (and fd07:1::/64, fd07:2::/64; MTU 9000)
//! ```
//!
//! The ruleset is loaded into `fw`. Probes go peer -> fw (prerouting, input),
//! peer -> far through fw (prerouting, forward, postrouting) and fw -> peer (output,
//! postrouting). Inbound and forwarded probes are whole frames injected on `p0` with
//! AF_PACKET; outbound ones are IP packets sent by raw sockets in `fw`, so they
//! traverse its output path. A probe counts as delivered when a raw socket of its
//! protocol in the destination namespace gets it (raw sockets see what passed the
//! input hook). Each probe carries a unique id in its payload. Rulesets with an arp
//! table get ARP probes too ([`arp`]).

mod arp;
pub mod ruleset;

pub use ruleset::RulesetFile;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context};
use etherparse::{IcmpEchoHeader, Icmpv4Type, Icmpv6Type, PacketBuilder};

use crate::netns::Netns;

const MAGIC: &[u8; 8] = b"NFTSHIMP";
const MAC_PEER: [u8; 6] = [0x02, 0, 0, 0, 1, 2];
const MAC_FW0: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
const MAC_FW1: [u8; 6] = [0x02, 0, 0, 0, 2, 1];
const MAC_FAR: [u8; 6] = [0x02, 0, 0, 0, 2, 2];

/// Where a probe goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// peer -> fw's address.
    Inbound,
    /// peer -> far, routed by fw.
    Forward,
    /// fw -> peer, generated in fw.
    Outbound,
    /// peer asks fw for its address; fw answers ([`arp`]).
    ArpRequest,
    /// fw resolves an address of peer's link ([`arp`]).
    ArpSolicit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP (v4) or ICMPv6 (v6) echo request (`reply: false`) or reply.
    Echo {
        reply: bool,
    },
    /// No IP packet: an ARP frame ([`Path::ArpRequest`]).
    Arp,
    /// SCTP 40000 -> 9 with crafted chunks ([`sctp_probes`]); the probe's id is in its
    /// last chunk, a DATA chunk.
    Sctp {
        chunks: SctpChunks,
    },
}

/// The chunks of an SCTP probe, for `sctp chunk` matches (nft_exthdr_sctp_eval walks
/// them to the end of the packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SctpChunks {
    /// DATA (flags 3).
    Data,
    /// INIT (10 outbound, 1 inbound streams), DATA (flags 2).
    InitData,
    /// DATA (flags 3) whose length needs 3 bytes of padding, SACK, DATA (flags 3).
    PaddedSack,
    /// A chunk of length 0 (the walk ends there), INIT, DATA (flags 3).
    ZeroLength,
    /// A PAD chunk of 2400 bytes, INIT, DATA (flags 3): chunks past the first 2048
    /// bytes of the frame (the topology's links have an MTU of 9000). Not larger: an
    /// AF_PACKET frame over a page leaves the headers out of the skb's linear part,
    /// and the kernel's netdev ingress then saw an 8 KB IPv6 probe as no SCTP at all
    /// (`meta l4proto` unset; likely ipv6_find_hdr reading the next header through
    /// `ipv6_hdr(skb)`, unpulled), unlike drivers' skbs, whose headers are pulled.
    Large,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub id: u32,
    pub path: Path,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub shape: Shape,
}

/// How an inbound frame departs from a well-formed packet: what netdev ingress chains
/// see before the IP stack drops or queues it (so only their counters tell). Sent
/// only for rulesets that ask (`# probes: +malformed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Plain,
    /// IPv4 fragment at offset 24 (its data starts with the original UDP header).
    V4LaterFragment,
    /// IPv4 first fragment (more fragments set).
    V4FirstFragment,
    /// IPv4 header with version 5.
    V4BadVersion,
    /// IPv4 total length 8 bytes past the frame.
    V4LongTotalLength,
    /// IPv6 with an authentication header before the UDP header.
    V6Ah,
    /// IPv6 fragment at offset 24.
    V6LaterFragment,
}

/// The marker of rulesets that want the [`malformed`] probes too.
pub const MALFORMED_MARKER: &str = "# probes: +malformed";

/// The marker of rulesets that want the [`sctp_probes`] too.
pub const SCTP_MARKER: &str = "# probes: +sctp";

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l4 = match self.l4 {
            L4::Tcp { sport, dport } => format!("tcp {sport}->{dport}"),
            L4::Udp { sport, dport } => format!("udp {sport}->{dport}"),
            L4::Echo { reply: false } => "echo-request".into(),
            L4::Echo { reply: true } => "echo-reply".into(),
            L4::Arp => "arp".into(),
            L4::Sctp { chunks } => format!("sctp {chunks:?}"),
        };
        write!(
            f,
            "#{} {:?} {} -> {} {l4}",
            self.id, self.path, self.src, self.dst
        )?;
        if self.shape != Shape::Plain {
            write!(f, " ({:?})", self.shape)?;
        }
        Ok(())
    }
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}
fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("literal"))
}

/// The fixed probe corpus: ports around the usual rule boundaries, both families,
/// spoofed sources, and every path.
pub fn corpus() -> Vec<Probe> {
    let ports = [
        1, 22, 53, 80, 443, 1023, 1024, 8000, 8001, 8002, 8050, 8100, 8101, 65535,
    ];
    let mut out = Vec::new();
    let mut push = |path, src, dst, l4| {
        out.push(Probe {
            id: out.len() as u32 + 1,
            path,
            src,
            dst,
            l4,
            shape: Shape::Plain,
        })
    };
    let families: [(IpAddr, IpAddr, IpAddr, IpAddr, IpAddr); 2] = [
        (
            v4([10, 7, 1, 2]),
            v4([192, 0, 2, 5]),
            v4([10, 7, 1, 1]),
            v4([10, 7, 2, 2]),
            v4([10, 7, 1, 1]),
        ),
        (
            v6("fd07:1::2"),
            v6("2001:db8::5"),
            v6("fd07:1::1"),
            v6("fd07:2::2"),
            v6("fd07:1::1"),
        ),
    ];
    for (peer, spoofed, fw, far, fw_out) in families {
        for src in [peer, spoofed] {
            for &p in &ports {
                push(
                    Path::Inbound,
                    src,
                    fw,
                    L4::Tcp {
                        sport: 40000,
                        dport: p,
                    },
                );
                push(
                    Path::Inbound,
                    src,
                    fw,
                    L4::Udp {
                        sport: 40000,
                        dport: p,
                    },
                );
            }
            push(
                Path::Inbound,
                src,
                fw,
                L4::Udp {
                    sport: 53,
                    dport: 5353,
                },
            );
            push(
                Path::Inbound,
                src,
                fw,
                L4::Tcp {
                    sport: 22,
                    dport: 40000,
                },
            );
            push(Path::Inbound, src, fw, L4::Echo { reply: false });
            push(Path::Inbound, src, fw, L4::Echo { reply: true });
        }
        for &p in &[22, 53, 80, 8001, 8002] {
            push(
                Path::Forward,
                peer,
                far,
                L4::Tcp {
                    sport: 40000,
                    dport: p,
                },
            );
            push(
                Path::Forward,
                peer,
                far,
                L4::Udp {
                    sport: 40000,
                    dport: p,
                },
            );
        }
        push(
            Path::Forward,
            spoofed,
            far,
            L4::Tcp {
                sport: 40000,
                dport: 80,
            },
        );
        push(Path::Forward, peer, far, L4::Echo { reply: false });
        for &p in &[22, 53, 80, 443, 8001, 8002] {
            push(
                Path::Outbound,
                fw_out,
                peer,
                L4::Tcp {
                    sport: 40000,
                    dport: p,
                },
            );
            push(
                Path::Outbound,
                fw_out,
                peer,
                L4::Udp {
                    sport: 40000,
                    dport: p,
                },
            );
        }
        push(Path::Outbound, fw_out, peer, L4::Echo { reply: false });
        push(Path::Outbound, fw_out, peer, L4::Echo { reply: true });
    }
    out
}

/// Inbound UDP frames from the peer that the IP stack drops or queues, one per
/// [`Shape`] and destination port, numbered from `first_id`.
pub fn malformed(first_id: u32) -> Vec<Probe> {
    let shapes = [
        (Shape::V4LaterFragment, true),
        (Shape::V4FirstFragment, true),
        (Shape::V4BadVersion, true),
        (Shape::V4LongTotalLength, true),
        (Shape::V6Ah, false),
        (Shape::V6LaterFragment, false),
    ];
    let mut out = Vec::new();
    for (shape, is_v4) in shapes {
        let (src, dst) = if is_v4 {
            (v4([10, 7, 1, 2]), v4([10, 7, 1, 1]))
        } else {
            (v6("fd07:1::2"), v6("fd07:1::1"))
        };
        for dport in [22, 53] {
            out.push(Probe {
                id: first_id + out.len() as u32,
                path: Path::Inbound,
                src,
                dst,
                l4: L4::Udp {
                    sport: 40000,
                    dport,
                },
                shape,
            });
        }
    }
    out
}

/// SCTP probes of every [`SctpChunks`] layout, both families, inbound, forwarded and
/// outbound, numbered from `first_id`.
pub fn sctp_probes(first_id: u32) -> Vec<Probe> {
    let layouts = [
        SctpChunks::Data,
        SctpChunks::InitData,
        SctpChunks::PaddedSack,
        SctpChunks::ZeroLength,
        SctpChunks::Large,
    ];
    let families = [
        (v4([10, 7, 1, 2]), v4([10, 7, 1, 1]), v4([10, 7, 2, 2])),
        (v6("fd07:1::2"), v6("fd07:1::1"), v6("fd07:2::2")),
    ];
    let mut out = Vec::new();
    for (peer, fw, far) in families {
        for chunks in layouts {
            for (path, src, dst) in [
                (Path::Inbound, peer, fw),
                (Path::Forward, peer, far),
                (Path::Outbound, fw, peer),
            ] {
                out.push(Probe {
                    id: first_id + out.len() as u32,
                    path,
                    src,
                    dst,
                    l4: L4::Sctp { chunks },
                    shape: Shape::Plain,
                });
            }
        }
    }
    out
}

/// One SCTP chunk: type, flags, length field (`None`: the real one), body, padding.
fn sctp_chunk(kind: u8, flags: u8, len: Option<u16>, body: &[u8]) -> Vec<u8> {
    let mut c = vec![kind, flags];
    c.extend_from_slice(&len.unwrap_or(4 + body.len() as u16).to_be_bytes());
    c.extend_from_slice(body);
    c.resize(c.len().div_ceil(4) * 4, 0);
    c
}

/// The SCTP packet of a probe (checksum 0: nothing on the path checks it).
fn sctp_packet(chunks: SctpChunks, data: &[u8]) -> Vec<u8> {
    let data_chunk = |flags: u8, extra: &[u8]| {
        // TSN 1, stream 0, sequence 0, payload protocol 0.
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(data);
        body.extend_from_slice(extra);
        sctp_chunk(0, flags, None, &body)
    };
    // Tag 1, a_rwnd 65536, 10 outbound and 1 inbound streams, initial TSN 1.
    let init = sctp_chunk(
        1,
        0,
        None,
        &[0, 0, 0, 1, 0, 1, 0, 0, 0, 10, 0, 1, 0, 0, 0, 1],
    );
    let body: Vec<Vec<u8>> = match chunks {
        SctpChunks::Data => vec![data_chunk(3, &[])],
        SctpChunks::InitData => vec![init, data_chunk(2, &[])],
        SctpChunks::PaddedSack => vec![
            data_chunk(3, b"x"),
            // Cumulative TSN 1, a_rwnd 65536, no gap blocks, no duplicates.
            sctp_chunk(3, 0, None, &[0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]),
            data_chunk(3, &[]),
        ],
        SctpChunks::ZeroLength => vec![sctp_chunk(0x84, 0, Some(0), &[]), init, data_chunk(3, &[])],
        SctpChunks::Large => vec![
            sctp_chunk(0x84, 0, None, &[0; 2396]),
            init,
            data_chunk(3, &[]),
        ],
    };
    let mut p = vec![0x9c, 0x40, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0];
    p.extend(body.concat());
    p
}

/// The IPv4 header checksum of the header at `ip`, recomputed.
fn fix_ipv4_checksum(frame: &mut [u8], ip: usize) {
    let hlen = (frame[ip] & 0xf) as usize * 4;
    frame[ip + 10..ip + 12].fill(0);
    let mut sum: u32 = frame[ip..ip + hlen]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    frame[ip + 10..ip + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Inserts an IPv6 extension header `ext` (of type `kind`) after the fixed header.
fn insert_ipv6_ext(frame: &mut Vec<u8>, ip: usize, kind: u8, mut ext: Vec<u8>) {
    ext[0] = frame[ip + 6];
    frame[ip + 6] = kind;
    let plen = u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]) + ext.len() as u16;
    frame[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
    frame.splice(ip + 40..ip + 40, ext);
}

/// A well-formed frame made into `shape`.
fn reshape(mut frame: Vec<u8>, shape: Shape) -> Vec<u8> {
    const IP: usize = 14;
    match shape {
        Shape::Plain => return frame,
        Shape::V4LaterFragment => frame[IP + 6..IP + 8].copy_from_slice(&3u16.to_be_bytes()),
        Shape::V4FirstFragment => frame[IP + 6..IP + 8].copy_from_slice(&0x2000u16.to_be_bytes()),
        Shape::V4BadVersion => frame[IP] = 0x55,
        Shape::V4LongTotalLength => {
            let tot = u16::from_be_bytes([frame[IP + 2], frame[IP + 3]]) + 8;
            frame[IP + 2..IP + 4].copy_from_slice(&tot.to_be_bytes());
        }
        Shape::V6Ah => {
            let mut ah = vec![0, 4];
            ah.resize(24, 0);
            insert_ipv6_ext(&mut frame, IP, 51, ah);
        }
        Shape::V6LaterFragment => {
            insert_ipv6_ext(&mut frame, IP, 44, vec![0, 0, 0, 0x18, 0, 0, 0, 9]);
        }
    }
    if frame[IP] >> 4 != 6 {
        fix_ipv4_checksum(&mut frame, IP);
    }
    frame
}

/// One side's three namespaces, removed when dropped.
pub struct Topology {
    pub peer: Netns,
    pub fw: Netns,
    pub far: Netns,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        return Err(anyhow!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    Ok(())
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Topology {
    pub fn create(prefix: &str, side: &str) -> anyhow::Result<Topology> {
        let t = Topology {
            peer: Netns::create_unique(prefix, &format!("{side}-peer"))?,
            fw: Netns::create_unique(prefix, &format!("{side}-fw"))?,
            far: Netns::create_unique(prefix, &format!("{side}-far"))?,
        };
        let (peer, fw, far) = (t.peer.name(), t.fw.name(), t.far.name());
        ip(&[
            "link",
            "add",
            "p0",
            "netns",
            peer,
            "address",
            &mac(MAC_PEER),
            "mtu",
            "9000",
            "type",
            "veth",
            "peer",
            "name",
            "f0",
            "netns",
            fw,
            "address",
            &mac(MAC_FW0),
            "mtu",
            "9000",
        ])?;
        ip(&[
            "link",
            "add",
            "f1",
            "netns",
            fw,
            "address",
            &mac(MAC_FW1),
            "mtu",
            "9000",
            "type",
            "veth",
            "peer",
            "name",
            "r0",
            "netns",
            far,
            "address",
            &mac(MAC_FAR),
            "mtu",
            "9000",
        ])?;
        let cfg: &[(&str, &[&str])] = &[
            (peer, &["addr", "add", "10.7.1.2/24", "dev", "p0"]),
            (peer, &["addr", "add", "fd07:1::2/64", "dev", "p0", "nodad"]),
            (fw, &["addr", "add", "10.7.1.1/24", "dev", "f0"]),
            (fw, &["addr", "add", "fd07:1::1/64", "dev", "f0", "nodad"]),
            (fw, &["addr", "add", "10.7.2.1/24", "dev", "f1"]),
            (fw, &["addr", "add", "fd07:2::1/64", "dev", "f1", "nodad"]),
            (far, &["addr", "add", "10.7.2.2/24", "dev", "r0"]),
            (far, &["addr", "add", "fd07:2::2/64", "dev", "r0", "nodad"]),
        ];
        for (ns, args) in cfg {
            let mut a = vec!["-n", ns];
            a.extend_from_slice(args);
            ip(&a)?;
        }
        // No router solicitations (repeated, with backoff, for as long as a link is
        // up): rules that count every frame of a link would count them at times that
        // differ between the two sides.
        for (ns, dev) in [(peer, "p0"), (fw, "f0"), (fw, "f1"), (far, "r0")] {
            sysctl(
                ns,
                &format!("net.ipv6.conf.{dev}.router_solicitations"),
                "0",
            )?;
        }
        for (ns, dev) in [
            (peer, "p0"),
            (fw, "f0"),
            (fw, "f1"),
            (far, "r0"),
            (peer, "lo"),
            (fw, "lo"),
            (far, "lo"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        let routes: &[(&str, &[&str])] = &[
            (peer, &["route", "add", "default", "via", "10.7.1.1"]),
            (peer, &["-6", "route", "add", "default", "via", "fd07:1::1"]),
            (far, &["route", "add", "default", "via", "10.7.2.1"]),
            (far, &["-6", "route", "add", "default", "via", "fd07:2::1"]),
        ];
        for (ns, args) in routes {
            let mut a = vec!["-n", ns];
            a.extend_from_slice(args);
            ip(&a)?;
        }
        // Static neighbours: no ARP/NDP round trips that a ruleset could block
        // differently from one probe to the next.
        let neigh: &[(&str, &str, &str, [u8; 6])] = &[
            (peer, "10.7.1.1", "p0", MAC_FW0),
            (peer, "fd07:1::1", "p0", MAC_FW0),
            (fw, "10.7.1.2", "f0", MAC_PEER),
            (fw, "fd07:1::2", "f0", MAC_PEER),
            (fw, "10.7.2.2", "f1", MAC_FAR),
            (fw, "fd07:2::2", "f1", MAC_FAR),
            (far, "10.7.2.1", "r0", MAC_FW1),
            (far, "fd07:2::1", "r0", MAC_FW1),
        ];
        for (ns, addr, dev, m) in neigh {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                addr,
                "lladdr",
                &mac(*m),
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv4.conf.f0.rp_filter", "0"),
            ("net.ipv4.conf.f1.rp_filter", "0"),
            ("net.ipv4.icmp_ratelimit", "0"),
        ] {
            let ok = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    fw,
                    "sysctl",
                    "-qw",
                    &format!("{key}={value}"),
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(anyhow!("sysctl {key}={value} in {fw} failed"));
            }
        }
        // ICMP errors that peer and far (and fw, for IPv6) answer probes with are
        // rate limited per destination: how many get through would depend on timing,
        // and counters see them.
        for (ns, key) in [
            (peer, "net.ipv4.icmp_ratelimit"),
            (far, "net.ipv4.icmp_ratelimit"),
            (peer, "net.ipv6.icmp.ratelimit"),
            (fw, "net.ipv6.icmp.ratelimit"),
            (far, "net.ipv6.icmp.ratelimit"),
        ] {
            sysctl(ns, key, "0")?;
        }
        Ok(t)
    }
}

fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return Err(anyhow!("sysctl {key}={value} in {ns} failed"));
    }
    Ok(())
}

/// Runs `f` on a thread inside the named namespace.
pub fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let file = std::fs::File::open(ns.path())?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on a valid namespace fd; affects this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn payload(id: u32) -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.extend_from_slice(&id.to_be_bytes());
    p
}

/// The probe as an IP packet, or as an Ethernet frame from `src_mac` to `dst_mac`.
fn build(p: &Probe, link: Option<([u8; 6], [u8; 6])>) -> Vec<u8> {
    let data = payload(p.id);
    macro_rules! finish {
        ($b:expr) => {{
            let b = $b;
            let step = match p.l4 {
                L4::Tcp { sport, dport } => {
                    let b = b.tcp(sport, dport, p.id, 64000).syn();
                    let mut v = Vec::new();
                    b.write(&mut v, &data).expect("tcp packet");
                    return v;
                }
                L4::Udp { sport, dport } => b.udp(sport, dport),
                L4::Echo { .. } => {
                    return echo(b, p, &data);
                }
                L4::Arp => return Vec::new(),
                L4::Sctp { chunks } => {
                    let mut v = Vec::new();
                    b.write(
                        &mut v,
                        etherparse::IpNumber::SCTP,
                        &sctp_packet(chunks, &data),
                    )
                    .expect("sctp packet");
                    return v;
                }
            };
            let mut v = Vec::new();
            step.write(&mut v, &data).expect("udp packet");
            v
        }};
    }
    match (link, p.src, p.dst) {
        (Some((s, d)), IpAddr::V4(a), IpAddr::V4(b)) => {
            finish!(PacketBuilder::ethernet2(s, d).ipv4(a.octets(), b.octets(), 64))
        }
        (Some((s, d)), IpAddr::V6(a), IpAddr::V6(b)) => {
            finish!(PacketBuilder::ethernet2(s, d).ipv6(a.octets(), b.octets(), 64))
        }
        (None, IpAddr::V4(a), IpAddr::V4(b)) => {
            finish!(PacketBuilder::ipv4(a.octets(), b.octets(), 64))
        }
        (None, IpAddr::V6(a), IpAddr::V6(b)) => {
            finish!(PacketBuilder::ipv6(a.octets(), b.octets(), 64))
        }
        _ => Vec::new(),
    }
}

fn echo(
    b: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    p: &Probe,
    data: &[u8],
) -> Vec<u8> {
    let reply = matches!(p.l4, L4::Echo { reply: true });
    let hdr = IcmpEchoHeader {
        id: 0x4e53,
        seq: p.id as u16,
    };
    let mut v = Vec::new();
    let written = if p.src.is_ipv4() {
        let t = if reply {
            Icmpv4Type::EchoReply(hdr)
        } else {
            Icmpv4Type::EchoRequest(hdr)
        };
        b.icmpv4(t).write(&mut v, data).map_err(|e| e.to_string())
    } else {
        let t = if reply {
            Icmpv6Type::EchoReply(hdr)
        } else {
            Icmpv6Type::EchoRequest(hdr)
        };
        b.icmpv6(t).write(&mut v, data).map_err(|e| e.to_string())
    };
    written.expect("icmp packet");
    v
}

/// Raw sockets for TCP, UDP, ICMP(v6) and SCTP of both families, non-blocking.
fn receivers() -> io::Result<Vec<OwnedFd>> {
    let mut v = Vec::new();
    for (dom, protos) in [
        (
            libc::AF_INET,
            [
                libc::IPPROTO_TCP,
                libc::IPPROTO_UDP,
                libc::IPPROTO_ICMP,
                libc::IPPROTO_SCTP,
            ],
        ),
        (
            libc::AF_INET6,
            [
                libc::IPPROTO_TCP,
                libc::IPPROTO_UDP,
                libc::IPPROTO_ICMPV6,
                libc::IPPROTO_SCTP,
            ],
        ),
    ] {
        for proto in protos {
            v.push(socket(dom, libc::SOCK_RAW | libc::SOCK_NONBLOCK, proto)?);
        }
    }
    Ok(v)
}

/// Probe ids found in whatever the sockets have queued.
fn received(socks: &[OwnedFd]) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut buf = vec![0u8; 65536];
    for s in socks {
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            let data = &buf[..n as usize];
            if let Some(pos) = data.windows(MAGIC.len()).position(|w| w == MAGIC) {
                if let Some(idb) = data.get(pos + 8..pos + 12) {
                    ids.push(u32::from_be_bytes([idb[0], idb[1], idb[2], idb[3]]));
                }
            }
        }
    }
    ids
}

/// Raw sockets of the sender (peer, or fw for outbound probes) for what comes back:
/// ICMP/ICMPv6 (errors quoting
/// a probe, echo replies) and TCP of both families (resets), non-blocking.
struct ReplySockets {
    icmp: Vec<OwnedFd>,
    tcp4: OwnedFd,
    tcp6: OwnedFd,
}

fn reply_sockets() -> io::Result<ReplySockets> {
    let raw = |dom, proto| socket(dom, libc::SOCK_RAW | libc::SOCK_NONBLOCK, proto);
    Ok(ReplySockets {
        icmp: vec![
            raw(libc::AF_INET, libc::IPPROTO_ICMP)?,
            raw(libc::AF_INET6, libc::IPPROTO_ICMPV6)?,
        ],
        tcp4: raw(libc::AF_INET, libc::IPPROTO_TCP)?,
        tcp6: raw(libc::AF_INET6, libc::IPPROTO_TCP)?,
    })
}

/// The ids of the probes the queued packets answer: ICMP that quotes or echoes a probe,
/// and TCP resets acknowledging a probe's SYN (its sequence number is its id; the
/// reset acknowledges the SYN and the payload).
fn replies(socks: &ReplySockets) -> Vec<u32> {
    let mut ids = received(&socks.icmp);
    let mut buf = vec![0u8; 65536];
    for (s, v4) in [(&socks.tcp4, true), (&socks.tcp6, false)] {
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            let data = &buf[..n as usize];
            // IPv4 raw sockets deliver the IP header, IPv6 ones do not.
            let off = if v4 {
                data.first().map_or(0, |b| usize::from(b & 0xf) * 4)
            } else {
                0
            };
            let Some(tcp) = data.get(off..off + 20) else {
                continue;
            };
            let (rst, ack) = (tcp[13] & 0x04 != 0, tcp[13] & 0x10 != 0);
            if rst && ack {
                let acked = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
                ids.push(acked.wrapping_sub(1 + payload(0).len() as u32));
            }
        }
    }
    ids
}

/// Per probe: whether it was delivered, and how many answers came back to its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fates {
    pub delivered: Vec<bool>,
    pub replies: Vec<u32>,
}

/// Sends every probe through the topology; per probe, whether it was delivered.
pub fn run(t: &Topology, probes: &[Probe]) -> anyhow::Result<Vec<bool>> {
    Ok(observe(t, probes)?.delivered)
}

/// Sends every probe through the topology and records its [`Fates`].
pub fn observe(t: &Topology, probes: &[Probe]) -> anyhow::Result<Fates> {
    let mut delivered = vec![false; probes.len()];
    let mut answered = vec![0u32; probes.len()];
    // IP probes (ARP ones are observed by [`arp::observe`]): (path, destination, source).
    for (path, dest, source) in [
        (Path::Inbound, &t.fw, &t.peer),
        (Path::Forward, &t.far, &t.peer),
        (Path::Outbound, &t.peer, &t.fw),
    ] {
        let socks = in_netns(dest, receivers).context("receivers")?;
        received(&socks); // whatever an earlier phase left
        let back = in_netns(source, reply_sockets).context("reply sockets")?;
        replies(&back); // whatever an earlier phase left
        let batch: Vec<&Probe> = probes.iter().filter(|p| p.path == path).collect();
        if path == Path::Outbound {
            in_netns(&t.fw, || send_raw(&batch))?
        } else {
            in_netns(&t.peer, || inject(&batch))?
        }
        std::thread::sleep(Duration::from_millis(200));
        for id in received(&socks) {
            if let Some(i) = probes.iter().position(|p| p.id == id && p.path == path) {
                delivered[i] = true;
            }
        }
        for id in replies(&back) {
            if let Some(i) = probes.iter().position(|p| p.id == id && p.path == path) {
                answered[i] += 1;
            }
        }
    }
    arp::observe(t, probes, &mut delivered)?;
    Ok(Fates {
        delivered,
        replies: answered,
    })
}

/// A packet socket bound to peer's `p0` for frames of `protocol` (host order; 0: only
/// for sending), with `flags` added to SOCK_RAW.
fn p0_packet_socket(protocol: u16, flags: i32) -> io::Result<OwnedFd> {
    packet_socket("p0", protocol, flags)
}

/// A packet socket of this thread's namespace bound to `dev` for frames of `protocol`
/// (host order; 0: only for sending; ETH_P_ALL: every frame), with `flags` added to
/// SOCK_RAW.
pub fn packet_socket(dev: &str, protocol: u16, flags: i32) -> io::Result<OwnedFd> {
    let s = socket(
        libc::AF_PACKET,
        libc::SOCK_RAW | flags,
        i32::from(protocol.to_be()),
    )?;
    let name =
        std::ffi::CString::new(dev).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: if_nametoindex on a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: addr is a valid sockaddr_ll.
    if unsafe {
        libc::bind(
            s.as_raw_fd(),
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
}

/// Frames on p0 (peer side), as if they came from the wire.
fn inject(batch: &[&Probe]) -> io::Result<()> {
    let s = p0_packet_socket(0, 0)?;
    for p in batch {
        let frame = reshape(build(p, Some((MAC_PEER, MAC_FW0))), p.shape);
        // SAFETY: frame is valid for its length.
        if unsafe { libc::send(s.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// IP packets sent by fw's own stack (raw sockets with the header included).
fn send_raw(batch: &[&Probe]) -> io::Result<()> {
    let s4 = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    let s6 = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    for p in batch {
        let pkt = build(p, None);
        let rc = match p.dst {
            IpAddr::V4(d) => {
                // SAFETY: zeroed sockaddr_in is valid; fields set below.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as u16;
                sa.sin_addr.s_addr = u32::from_ne_bytes(d.octets());
                // SAFETY: pkt and sa are valid for the sizes given.
                unsafe {
                    libc::sendto(
                        s4.as_fd().as_raw_fd(),
                        pkt.as_ptr().cast(),
                        pkt.len(),
                        0,
                        &sa as *const _ as *const libc::sockaddr,
                        std::mem::size_of_val(&sa) as u32,
                    )
                }
            }
            IpAddr::V6(d) => {
                // SAFETY: as above, for sockaddr_in6.
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as u16;
                sa.sin6_addr.s6_addr = d.octets();
                // SAFETY: pkt and sa are valid for the sizes given.
                unsafe {
                    libc::sendto(
                        s6.as_fd().as_raw_fd(),
                        pkt.as_ptr().cast(),
                        pkt.len(),
                        0,
                        &sa as *const _ as *const libc::sockaddr,
                        std::mem::size_of_val(&sa) as u32,
                    )
                }
            }
        };
        // EPERM (a netfilter drop) and ENOBUFS (a TC drop) are what an output drop
        // looks like to the sender: not errors here.
        let errno = io::Error::last_os_error().raw_os_error();
        if rc < 0 && errno != Some(libc::EPERM) && errno != Some(libc::ENOBUFS) {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What one ruleset did.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Every probe had the same fate on both sides; `answered` of them got answers.
    Passed { probes: usize, answered: usize },
    /// Probes whose fate differs: (probe, delivered by the kernel, by nftshimd).
    Failed {
        probes: usize,
        differ: Vec<(Probe, bool, bool)>,
        note: Option<String>,
    },
    /// nftshimd refused the ruleset (or the kernel did).
    Skipped { why: String },
}

pub struct Sides {
    pub kernel: crate::nft::NftSide,
    pub shim: crate::nft::NftSide,
}

impl Sides {
    /// `nft` (or another front-end) in the `fw` namespaces: the kernel's, and the shim
    /// one's through the interposer to `daemon`.
    pub fn new(
        kernel: &Topology,
        shim: &Topology,
        preload: &std::path::Path,
        daemon: &std::path::Path,
        nft: &std::path::Path,
        limit: Duration,
    ) -> Sides {
        use crate::nft::{NftSide, Target};
        Sides {
            kernel: NftSide {
                netns: kernel.fw.name().to_string(),
                target: Target::Kernel,
                nft: nft.into(),
                limit,
            },
            shim: NftSide {
                netns: shim.fw.name().to_string(),
                target: Target::Shim {
                    preload: preload.into(),
                    socket: daemon.into(),
                },
                nft: nft.into(),
                limit,
            },
        }
    }
}

/// Empties the current namespace's conntrack table (ctnetlink IPCTNL_MSG_CT_DELETE
/// without a tuple, for every family).
fn flush_conntrack() -> io::Result<()> {
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const IPCTNL_MSG_CT_DELETE: u16 = 2;
    let s = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_NETFILTER)?;
    let mut msg = Vec::with_capacity(20);
    msg.extend_from_slice(&20u32.to_ne_bytes());
    msg.extend_from_slice(&(NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
                                                // nfgenmsg: AF_UNSPEC (every family), NFNETLINK_V0, resource id 0.
    msg.extend_from_slice(&[0, 0, 0, 0]);
    // SAFETY: msg is valid for its length.
    if unsafe { libc::send(s.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ack = [0u8; 256];
    // SAFETY: ack is valid for its length.
    let n = unsafe { libc::recv(s.as_raw_fd(), ack.as_mut_ptr().cast(), ack.len(), 0) };
    if n < 20 {
        return Err(io::Error::last_os_error());
    }
    // NLMSG_ERROR: the error code follows the 16-byte header.
    let code = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
    if code != 0 {
        return Err(io::Error::from_raw_os_error(-code));
    }
    Ok(())
}

/// Loads `file` (an `.nft` or `.ipt` ruleset, see [`ruleset`]) on both sides and
/// compares every probe's fate.
pub fn run_ruleset(
    kernel: &Topology,
    shim: &Topology,
    sides: &Sides,
    file: &std::path::Path,
    probes: &[Probe],
) -> anyhow::Result<Outcome> {
    // Every ruleset starts without connections on both sides: nftshimd drops its
    // connection table with the ruleset, the kernel keeps its entries until they time
    // out (an earlier ruleset's would make this one's packets established).
    in_netns(&kernel.fw, flush_conntrack).context("flushing the kernel's conntrack table")?;
    let file = RulesetFile::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = &file.text;
    let mut probes = probes.to_vec();
    if text.contains(MALFORMED_MARKER) {
        let next = probes.iter().map(|p| p.id).max().unwrap_or(0) + 1;
        probes.extend(malformed(next));
    }
    if text.contains(SCTP_MARKER) {
        let next = probes.iter().map(|p| p.id).max().unwrap_or(0) + 1;
        probes.extend(sctp_probes(next));
    }
    let probes = &probes[..];
    let k = file.load(&sides.kernel);
    if !k.success() {
        return Ok(Outcome::Skipped {
            why: format!(
                "the kernel refuses it: {}",
                k.stderr.trim_end().replace('\n', " ")
            ),
        });
    }
    let s = file.load(&sides.shim);
    if !s.success() {
        let first = s
            .stderr
            .lines()
            // nft's "Error: ...", iptables-nft-restore's "line N: ... failed (...)".
            .find(|l| l.contains("Error") || l.contains("failed"))
            .unwrap_or("")
            .to_string();
        if s.stderr.contains("Operation not supported") {
            return Ok(Outcome::Skipped {
                why: format!("nftshimd refuses it: {first}"),
            });
        }
        return Ok(Outcome::Failed {
            probes: 0,
            differ: Vec::new(),
            note: Some(format!(
                "nftshimd failed to load it ({}): {}",
                s.exit,
                s.stderr.trim_end()
            )),
        });
    }
    let probes = &arp::with_arp_probes(probes, text);
    let on_kernel = observe(kernel, probes)?;
    let on_shim = observe(shim, probes)?;
    let differ: Vec<(Probe, bool, bool)> = probes
        .iter()
        .zip(on_kernel.delivered.iter().zip(&on_shim.delivered))
        .filter(|(_, (a, b))| a != b)
        .map(|(p, (&a, &b))| (p.clone(), a, b))
        .collect();
    let answers: Vec<String> = probes
        .iter()
        .zip(on_kernel.replies.iter().zip(&on_shim.replies))
        .filter(|(_, (a, b))| a != b)
        .map(|(p, (a, b))| format!("  {p}: answered {a} times by the kernel, {b} by nftshimd"))
        .collect();
    let note = if !answers.is_empty() {
        Some(format!(
            "answers to the sender differ:\n{}",
            answers.join("\n")
        ))
    } else if differ.is_empty() && file.has_counters() {
        counters_agree(kernel, shim, sides, &file, probes)?.err()
    } else {
        None
    };
    Ok(if differ.is_empty() && note.is_none() {
        Outcome::Passed {
            probes: probes.len(),
            answered: on_kernel.replies.iter().filter(|&&n| n > 0).count(),
        }
    } else {
        Outcome::Failed {
            probes: probes.len(),
            differ,
            note,
        }
    })
}

/// A commit that changes every ingress program (a chain that sees every packet first
/// and drops none of the probes), so that the programs counting so far are replaced.
const UNRELATED_COMMIT: &str = "add table ip nftshim_unrelated
add chain ip nftshim_unrelated early { type filter hook prerouting priority -500; }
add rule ip nftshim_unrelated early ip saddr 192.0.2.99 drop
";

/// For rulesets with counters, after the probes went through: both listings (with
/// the counters) are the same; they still are after an unrelated commit and the
/// probes once more, after a new interface and the probes once more (counts survive
/// new generations of programs), and after `nft reset counters`. Err: what differs.
fn counters_agree(
    kernel: &Topology,
    shim: &Topology,
    sides: &Sides,
    file: &RulesetFile,
    probes: &[Probe],
) -> anyhow::Result<Result<(), String>> {
    let same_listing = |when: &str| -> Result<(), String> {
        let show = |l: Result<String, crate::nft::CmdOutput>| match l {
            Ok(text) => text,
            Err(out) => format!("({}) {}{}", out.exit, out.stdout, out.stderr),
        };
        match (file.listing(&sides.kernel), file.listing(&sides.shim)) {
            (Ok(k), Ok(s)) if k == s => Ok(()),
            (k, s) => Err(format!(
                "counters differ {when}:\n--- kernel\n{}--- nftshimd\n{}",
                show(k),
                show(s)
            )),
        }
    };
    let both = |args: &[&str], input: Option<&[u8]>| -> Result<(), String> {
        for side in [&sides.kernel, &sides.shim] {
            let out = side.run_program(side.nft.as_os_str(), args, input);
            if !out.success() {
                return Err(format!("nft {args:?}: {}", out.stderr.trim_end()));
            }
        }
        Ok(())
    };
    let steps = || -> anyhow::Result<Result<(), String>> {
        if let Err(e) = same_listing("after the probes") {
            return Ok(Err(e));
        }
        if let Err(e) = both(&["-f", "-"], Some(UNRELATED_COMMIT.as_bytes())) {
            return Ok(Err(e));
        }
        run(kernel, probes)?;
        run(shim, probes)?;
        if let Err(e) = same_listing("after an unrelated commit and the probes again") {
            return Ok(Err(e));
        }
        // A new interface: the data plane follows it with a new generation of programs.
        for t in [kernel, shim] {
            let ns = t.fw.name();
            ip(&[
                "-n", ns, "link", "add", "new0", "type", "veth", "peer", "name", "new1",
            ])?;
            ip(&["-n", ns, "link", "set", "new0", "up"])?;
        }
        std::thread::sleep(Duration::from_millis(200));
        run(kernel, probes)?;
        run(shim, probes)?;
        let listed = same_listing("after an interface appeared and the probes again");
        // The topology serves the next rulesets as it was.
        for t in [kernel, shim] {
            ip(&["-n", t.fw.name(), "link", "del", "new0"])?;
        }
        if let Err(e) = listed {
            return Ok(Err(e));
        }
        if let Err(e) = both(&["reset", "counters"], None) {
            return Ok(Err(e));
        }
        Ok(same_listing("after nft reset counters"))
    };
    steps()
}

/// Empties both rulesets (nftshimd then lets go of its namespace).
pub fn flush(sides: &Sides) {
    let _ = sides.kernel.run(&["flush", "ruleset"]);
    let _ = sides.shim.run(&["flush", "ruleset"]);
}
