//! Two namespaces joined by a veth pair: the sender (`btx0`, 10.9.0.1) and the receiver
//! (`brx0`, 10.9.0.2) whose input the rulesets filter. The receiver counts the packets
//! that got through its filter the same way for every configuration: `Ip: InDelivers`
//! of its namespace, which the kernel counts after the input hook (nftables) and
//! after TC ingress (nftshim), for packets handed to UDP. UDP sockets bound to the
//! measured port and never read take them, so that no ICMP error is sent back.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;

use anyhow::{anyhow, bail, Context};

use super::ruleset::{RX_IF, TRAFFIC_DPORT, TRAFFIC_DST, TRAFFIC_SRC};
use crate::netns::Netns;
use crate::packets::in_netns;

pub const TX_IF: &str = "btx0";
pub const TX_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x09, 0x01];
pub const RX_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x09, 0x02];

pub struct Topology {
    pub tx: Netns,
    pub rx: Netns,
    /// `brx0`'s index in the receiver namespace.
    pub rx_ifindex: u32,
    /// Open in the receiver namespace: its IP counters.
    snmp: File,
    /// The receiver's UDP sink; never read.
    _sink: OwnedFd,
}

pub fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(())
}

impl Topology {
    pub fn create() -> anyhow::Result<Topology> {
        let tx = Netns::create_unique("nftshim-bench", "tx")?;
        let rx = Netns::create_unique("nftshim-bench", "rx")?;
        let (t, r) = (tx.name(), rx.name());
        ip(&[
            "link",
            "add",
            TX_IF,
            "netns",
            t,
            "address",
            &mac(TX_MAC),
            "type",
            "veth",
            "peer",
            "name",
            RX_IF,
            "netns",
            r,
            "address",
            &mac(RX_MAC),
        ])?;
        ip(&[
            "-n",
            t,
            "addr",
            "add",
            &format!("{TRAFFIC_SRC}/24"),
            "dev",
            TX_IF,
        ])?;
        ip(&[
            "-n",
            r,
            "addr",
            "add",
            &format!("{TRAFFIC_DST}/24"),
            "dev",
            RX_IF,
        ])?;
        for (ns, dev) in [(t, TX_IF), (r, RX_IF), (t, "lo"), (r, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        // Static neighbours both ways: no ARP that a ruleset could get in the way of.
        ip(&[
            "-n",
            t,
            "neigh",
            "replace",
            &TRAFFIC_DST.to_string(),
            "lladdr",
            &mac(RX_MAC),
            "dev",
            TX_IF,
            "nud",
            "permanent",
        ])?;
        ip(&[
            "-n",
            r,
            "neigh",
            "replace",
            &TRAFFIC_SRC.to_string(),
            "lladdr",
            &mac(TX_MAC),
            "dev",
            RX_IF,
            "nud",
            "permanent",
        ])?;
        let (rx_ifindex, snmp, sink) = in_netns(&rx, || {
            let name = std::ffi::CString::new(RX_IF).expect("no NUL");
            // SAFETY: if_nametoindex on a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                return Err(io::Error::last_os_error());
            }
            // /proc/thread-self: /proc/self/net would show the main thread's namespace.
            // The file keeps the namespace it was opened in.
            let snmp = File::open("/proc/thread-self/net/snmp")?;
            Ok((ifindex, snmp, udp_sink()?))
        })
        .context("setting up the receiver")?;
        Ok(Topology {
            tx,
            rx,
            rx_ifindex,
            snmp,
            _sink: sink,
        })
    }

    /// The receiver's `Ip: InDelivers`.
    pub fn delivered(&mut self) -> anyhow::Result<u64> {
        let mut text = String::new();
        self.snmp.seek(SeekFrom::Start(0))?;
        self.snmp.read_to_string(&mut text)?;
        in_delivers(&text).ok_or_else(|| anyhow!("no Ip: InDelivers in /proc/net/snmp"))
    }
}

/// The flow whose packets the "established" measurement times: UDP 10.9.0.1:10100 ->
/// 10.9.0.2:9100, which [`Topology::establish_flow`] makes answered.
pub const ESTABLISHED_PORTS: (u16, u16) = (10100, 9100);

impl Topology {
    /// One UDP request from the sender and its answer from the receiver, through the
    /// filters: afterwards conntrack knows the flow as established.
    pub fn establish_flow(&self) -> anyhow::Result<()> {
        let (sport, dport) = ESTABLISHED_PORTS;
        let server = in_netns(&self.rx, || {
            std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, dport))
        })?;
        let client = in_netns(&self.tx, || std::net::UdpSocket::bind((TRAFFIC_SRC, sport)))?;
        let limit = Some(std::time::Duration::from_secs(2));
        server.set_read_timeout(limit)?;
        client.set_read_timeout(limit)?;
        client.send_to(b"request", (TRAFFIC_DST, dport))?;
        let mut buf = [0u8; 64];
        let (_, peer) = server
            .recv_from(&mut buf)
            .context("the request did not arrive")?;
        server.send_to(b"answer", peer)?;
        client
            .recv_from(&mut buf)
            .context("the answer did not arrive")?;
        Ok(())
    }
}

/// A UDP socket on the measured port, never read: the packets count as delivered, then
/// overflow its buffer.
fn udp_sink() -> io::Result<OwnedFd> {
    // SAFETY: socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    use std::os::fd::AsRawFd;
    // SAFETY: zeroed sockaddr_in is valid; fields set below.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_port = TRAFFIC_DPORT.to_be();
    // SAFETY: sa is a valid sockaddr_in.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sa) as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// `InDelivers` from the text of /proc/net/snmp (a header line, then a value line).
pub fn in_delivers(snmp: &str) -> Option<u64> {
    let mut ip_lines = snmp.lines().filter(|l| l.starts_with("Ip: "));
    let names = ip_lines.next()?;
    let values = ip_lines.next()?;
    let col = names.split_whitespace().position(|n| n == "InDelivers")?;
    values.split_whitespace().nth(col)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_delivers_by_column_name() {
        let text = "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests\n\
                    Ip: 2 64 712704 0 0 0 0 0 712690 8\n\
                    Icmp: InMsgs\nIcmp: 3\n";
        assert_eq!(in_delivers(text), Some(712690));
        assert_eq!(in_delivers("Icmp: InMsgs\nIcmp: 3\n"), None);
    }
}
