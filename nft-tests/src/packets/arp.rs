//! ARP probes, for rulesets with an `arp` table (the others keep exactly the probes
//! they always had). Both go through fw's two ARP hooks:
//!
//! - [`Path::ArpRequest`]: peer asks (a broadcast request injected on `p0`) who has
//!   fw's address, from a sender address of its own: delivered when fw's reply (to
//!   that sender address) comes back to `p0`, i.e. the request passed fw's arp input
//!   and the reply its arp output.
//! - [`Path::ArpSolicit`]: fw sends a UDP packet to an address of peer's link that it
//!   has no neighbour for: delivered when fw's ARP request for it reaches `p0`.
//!
//! Before each round fw forgets its learned neighbours (the static ones stay) and
//! sends one request per resolution, so that every round sends the same frames.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use anyhow::Context;

use super::{in_netns, ip, send_raw, sysctl, Path, Probe, Topology, L4, MAC_FW0, MAC_PEER};

const ETH_P_ARP: u16 = 0x0806;
const ARPOP_REQUEST: u16 = 1;
const ARPOP_REPLY: u16 = 2;
const FW_ADDR: [u8; 4] = [10, 7, 1, 1];

/// `corpus` and, when the ruleset has an arp table, the ARP probes (numbered after it).
pub fn with_arp_probes(corpus: &[Probe], ruleset: &str) -> Vec<Probe> {
    let mut out = corpus.to_vec();
    if !has_arp_table(ruleset) {
        return out;
    }
    let mut next = corpus.iter().map(|p| p.id).max().unwrap_or(0) + 1;
    let mut push = |path, src: [u8; 4], dst: [u8; 4], l4| {
        out.push(Probe {
            id: next,
            path,
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            l4,
            shape: super::Shape::Plain,
        });
        next += 1;
    };
    // peer's own address (fw has a static neighbour for it) and four others.
    for sender in [2, 100, 101, 102, 103] {
        push(Path::ArpRequest, [10, 7, 1, sender], FW_ADDR, L4::Arp);
    }
    for target in [150, 151, 152] {
        push(
            Path::ArpSolicit,
            FW_ADDR,
            [10, 7, 1, target],
            L4::Udp {
                sport: 40000,
                dport: 9,
            },
        );
    }
    out
}

fn has_arp_table(ruleset: &str) -> bool {
    ruleset.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some("table") && words.next() == Some("arp")
    })
}

/// Sends the ARP probes of `probes` through `t`, marking those delivered.
pub(super) fn observe(
    t: &Topology,
    probes: &[Probe],
    delivered: &mut [bool],
) -> anyhow::Result<()> {
    let requests: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.path == Path::ArpRequest)
        .collect();
    let solicits: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.path == Path::ArpSolicit)
        .collect();
    if requests.is_empty() && solicits.is_empty() {
        return Ok(());
    }
    let fw = t.fw.name();
    sysctl(fw, "net.ipv4.neigh.f0.mcast_solicit", "1")?;
    // Learned neighbours only: `ip neigh flush` leaves permanent entries.
    ip(&["-n", fw, "neigh", "flush", "dev", "f0"])?;
    let sock = in_netns(&t.peer, arp_socket).context("ARP socket on p0")?;
    frames(&sock); // whatever an earlier round left
    in_netns(&t.peer, || inject(&sock, &requests))?;
    in_netns(&t.fw, || send_raw(&solicits))?;
    std::thread::sleep(Duration::from_millis(200));
    for f in frames(&sock) {
        if f.sha != MAC_FW0 {
            continue; // peer's own requests, seen going out
        }
        let hit = probes.iter().position(|p| match (p.path, f.op) {
            (Path::ArpRequest, ARPOP_REPLY) => p.src == f.tpa,
            (Path::ArpSolicit, ARPOP_REQUEST) => p.dst == f.tpa,
            _ => false,
        });
        if let Some(i) = hit {
            delivered[i] = true;
        }
    }
    Ok(())
}

/// A non-blocking packet socket of peer for ARP frames on `p0` (both directions).
fn arp_socket() -> io::Result<OwnedFd> {
    super::p0_packet_socket(ETH_P_ARP, libc::SOCK_NONBLOCK)
}

/// The requests, as peer's broadcast ARP requests for the probe's destination.
fn inject(sock: &OwnedFd, batch: &[&Probe]) -> io::Result<()> {
    for p in batch {
        let (IpAddr::V4(spa), IpAddr::V4(tpa)) = (p.src, p.dst) else {
            continue;
        };
        let frame = arp_frame(ARPOP_REQUEST, MAC_PEER, spa.octets(), tpa.octets());
        // SAFETY: frame is valid for its length.
        if unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A broadcast Ethernet/IPv4 ARP frame (42 bytes, unpadded as veth sends it).
fn arp_frame(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

struct ArpFrame {
    op: u16,
    sha: [u8; 6],
    tpa: IpAddr,
}

/// The ARP frames queued on `sock`.
fn frames(sock: &OwnedFd) -> Vec<ArpFrame> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return out;
        }
        let Some(arp) = buf.get(14..n as usize).filter(|a| a.len() >= 28) else {
            continue;
        };
        let mut sha = [0u8; 6];
        sha.copy_from_slice(&arp[8..14]);
        out.push(ArpFrame {
            op: u16::from_be_bytes([arp[6], arp[7]]),
            sha,
            tpa: IpAddr::V4(Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27])),
        });
    }
}
