//! Just enough rtnetlink for the data plane, in the calling thread's namespace: the
//! links (ifindex, name), the destinations the kernel delivers locally (the local
//! routing table), and a socket that wakes up when either may have changed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use ipnet::{Ipv4Net, Ipv6Net};
use netlink_proto::attr::parse_attrs_lenient;

use nftshim_ebpf::addrtype::{resolve, Alias, Nexthop, Route};

use crate::compile::bridge::{BridgeDevice, BridgePort};
use crate::compile::Facts;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BR_STP_STATE: u16 = 5;
const IFLA_BR_VLAN_FILTERING: u16 = 7;
const IFLA_BR_VLAN_PROTOCOL: u16 = 8;
const IFLA_BR_GROUP_FWD_MASK: u16 = 9;
const IFLA_BR_MULTI_BOOLOPT: u16 = 46;
/// BR_BOOLOPT_MST_ENABLE.
const BR_BOOLOPT_MST_ENABLE: u32 = 2;
const IFLA_BRPORT_STATE: u16 = 1;
const IFLA_BRPORT_GROUP_FWD_MASK: u16 = 31;
const ETH_P_8021AD: u16 = 0x88a8;
const ARPHRD_ETHER: u16 = 1;
const IFF_NOARP: u32 = 0x80;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_MULTIPATH: u16 = 9;
const RTA_NH_ID: u16 = 30;
const RTNH_F_DEAD: u32 = 1;
const RTNH_F_LINKDOWN: u32 = 16;
const RTA_TABLE: u16 = 15;
const RT_TABLE_LOCAL: u32 = 255;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST_TYPE: u8 = 1;
const RTN_LOCAL: u8 = 2;
const RTN_BROADCAST: u8 = 3;
const RTN_ANYCAST: u8 = 4;
const RTN_MULTICAST: u8 = 5;
/// RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR |
/// RTMGRP_IPV6_ROUTE, and RTNLGRP_IPV4_NETCONF (24), which announces changes of
/// `ignore_routes_with_linkdown` (the address types of the local table depend on it).
const EVENT_GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400 | 1 << 23;

/// A NETLINK_ROUTE socket of the calling thread's namespace.
pub struct RtnlSocket {
    fd: OwnedFd,
    seq: u32,
}

impl RtnlSocket {
    fn open(groups: u32) -> io::Result<RtnlSocket> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is a valid value; fields set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = groups;
        // SAFETY: addr is a valid sockaddr_nl of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RtnlSocket { fd, seq: 1 })
    }

    /// A socket subscribed to link, address and route events.
    pub fn events() -> io::Result<RtnlSocket> {
        Self::open(EVENT_GROUPS)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads and discards whatever is queued; true if anything was (or the queue
    /// overflowed, which means events were lost).
    pub fn drain(&self) -> bool {
        let mut buf = vec![0u8; 64 * 1024];
        let mut any = false;
        loop {
            // SAFETY: buf is valid for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                any = true;
                continue;
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                any = true;
                continue;
            }
            return any;
        }
    }

    /// Sends one dump request and collects the messages of the answer: (type, body).
    fn dump(&mut self, msg_type: u16, body: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = NLMSG_HDRLEN + body.len();
        let mut req = Vec::with_capacity(len);
        req.extend_from_slice(&(len as u32).to_ne_bytes());
        req.extend_from_slice(&msg_type.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(body);
        // SAFETY: req is valid for its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, 5000) };
            if rc == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "rtnetlink dump timed out",
                ));
            }
            // SAFETY: buf is valid for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut data = &buf[..n as usize];
            while data.len() >= NLMSG_HDRLEN {
                let mlen = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
                let mtype = u16::from_ne_bytes([data[4], data[5]]);
                let mseq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
                if mlen < NLMSG_HDRLEN || mlen > data.len() {
                    break;
                }
                if mseq == seq {
                    match mtype {
                        NLMSG_DONE => return Ok(out),
                        NLMSG_ERROR => {
                            let errno = data
                                .get(16..20)
                                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                                .unwrap_or(-libc::EIO);
                            if errno != 0 {
                                return Err(io::Error::from_raw_os_error(-errno));
                            }
                        }
                        t => out.push((t, data[NLMSG_HDRLEN..mlen].to_vec())),
                    }
                }
                let aligned = (mlen + 3) & !3;
                data = &data[aligned.min(data.len())..];
            }
        }
    }
}

/// Reads the namespace's links and local destinations.
pub fn read_facts() -> io::Result<Facts> {
    let mut sock = RtnlSocket::open(0)?;
    let mut facts = Facts::default();

    let ifinfo = [0u8; 16];
    let mut links = Vec::new();
    for (t, body) in sock.dump(RTM_GETLINK, &ifinfo)? {
        if t != RTM_NEWLINK || body.len() < 16 {
            continue;
        }
        let index = i32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
        links.push(link_info(&body));
        let (attrs, _) = parse_attrs_lenient(&body[16..]);
        if let Some(name) = attrs.iter().find(|a| a.id() == IFLA_IFNAME) {
            let name = name.value.split(|&b| b == 0).next().unwrap_or(&[]);
            if index > 0 {
                facts
                    .links
                    .insert(index as u32, String::from_utf8_lossy(name).into_owned());
            }
        }
    }

    facts.no_arp = no_arp(&links);
    facts.link_types = links.iter().map(|l| (l.index, l.ifi_type)).collect();
    // Read in the calling thread's namespace (sysctls under /proc/sys/net are per
    // namespace); absent without the br_netfilter module.
    facts.br_netfilter = ["iptables", "ip6tables"].iter().any(|t| {
        std::fs::read_to_string(format!("/proc/sys/net/bridge/bridge-nf-call-{t}"))
            .is_ok_and(|v| v.trim() == "1")
    });
    let vrfs: std::collections::BTreeSet<u32> = links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("vrf"))
        .map(|l| l.index)
        .collect();
    facts.l3mdev = links
        .iter()
        .filter(|l| vrfs.contains(&l.index) || l.master.is_some_and(|m| vrfs.contains(&m)))
        .map(|l| l.index)
        .collect();
    facts.answer_sysctls = answer_sysctls(facts.links.values());
    // Per namespace, read in the calling thread's; IPv6 follows the IPv4 ones.
    facts.early_demux_off = ["ip_early_demux", "tcp_early_demux", "udp_early_demux"]
        .iter()
        .filter(|n| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/{n}"))
                .is_ok_and(|v| v.trim() != "1")
        })
        .map(|n| format!("net.ipv4.{n}"))
        .collect();
    facts.layered_links = links
        .iter()
        .filter_map(|l| {
            let kind = l.kind.as_deref();
            let plain = matches!(kind, None | Some("veth") | Some("dummy"));
            match (plain, l.master) {
                (true, None) => None,
                (true, Some(_)) => Some((l.index, "port".to_string())),
                (false, _) => Some((l.index, kind.unwrap_or("").to_string())),
            }
        })
        .collect();
    for l in &links {
        if let Some(b) = &l.bridge {
            facts.bridges.insert(l.index, b.clone());
        }
    }
    for l in &links {
        match (&l.port, l.master) {
            (Some(p), Some(master)) if facts.bridges.contains_key(&master) => {
                facts.bridge_ports.insert(
                    l.index,
                    BridgePort {
                        bridge: master,
                        ..p.clone()
                    },
                );
            }
            _ => {}
        }
    }

    let mut mirror = AddrTypeMirror::default();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let mut rtmsg = [0u8; 12];
        rtmsg[0] = family;
        for (t, body) in sock.dump(RTM_GETROUTE, &rtmsg)? {
            if t != RTM_NEWROUTE || body.len() < 12 {
                continue;
            }
            if family == libc::AF_INET as u8 {
                mirror.add(&body, &facts.links);
            }
            let dst_len = body[1];
            let mut table = body[4] as u32;
            let rtype = body[7];
            let (attrs, _) = parse_attrs_lenient(&body[12..]);
            if let Some(a) = attrs.iter().find(|a| a.id() == RTA_TABLE) {
                if a.value.len() == 4 {
                    table = u32::from_ne_bytes([a.value[0], a.value[1], a.value[2], a.value[3]]);
                }
            }
            if table != RT_TABLE_LOCAL
                || !matches!(
                    rtype,
                    RTN_LOCAL | RTN_BROADCAST | RTN_ANYCAST | RTN_MULTICAST
                )
            {
                continue;
            }
            let dst = attrs
                .iter()
                .find(|a| a.id() == RTA_DST)
                .map(|a| a.value.clone());
            match (family as i32, dst) {
                (libc::AF_INET, Some(d)) if d.len() == 4 => {
                    if let Ok(n) = Ipv4Net::new([d[0], d[1], d[2], d[3]].into(), dst_len) {
                        facts.local_v4.push(n);
                    }
                }
                (libc::AF_INET6, Some(d)) if d.len() == 16 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&d);
                    if let Ok(n) = Ipv6Net::new(a.into(), dst_len) {
                        facts.local_v6.push(n);
                    }
                }
                _ => {}
            }
        }
    }
    // Delivered locally whatever the tables say: limited broadcast (ip_route_input
    // treats it as local), and multicast, which is delivered if joined and dropped
    // otherwise (without a multicast router), so input is the hook that can see it.
    facts
        .local_v4
        .push("255.255.255.255/32".parse().expect("literal"));
    facts.local_v4.push("224.0.0.0/4".parse().expect("literal"));
    facts.local_v6.push("ff00::/8".parse().expect("literal"));
    (facts.addrtype_v4, facts.addrtype_v4_unsupported) = mirror.finish();
    facts.local_v4.sort();
    facts.local_v4.dedup();
    facts.local_v6.sort();
    facts.local_v6.dedup();
    Ok(facts)
}

/// The IPv4 local table's routes by prefix, in the dump's order (each prefix's routes
/// in fib_table_lookup()'s order), for the address type mirror.
/// A prefix: address, length.
type Prefix = ([u8; 4], u8);

#[derive(Default)]
struct AddrTypeMirror {
    prefixes: Vec<(Prefix, Vec<Alias>)>,
    /// The main table's routes likewise, each with whether it uses a nexthop object.
    main: Vec<(Prefix, Vec<(Alias, bool)>)>,
    unsupported: Option<String>,
}

impl AddrTypeMirror {
    /// Takes one IPv4 RTM_NEWROUTE body of the dump (routes of other tables are
    /// ignored).
    fn add(&mut self, body: &[u8], links: &std::collections::BTreeMap<u32, String>) {
        let (dst_len, tos, rtype) = (body[1], body[3], body[7]);
        let rtm_flags = u32::from_ne_bytes([body[8], body[9], body[10], body[11]]);
        let (attrs, _) = parse_attrs_lenient(&body[12..]);
        let table = uint(&attrs, RTA_TABLE, 4).unwrap_or(body[4] as u32);
        if table != RT_TABLE_LOCAL && table != RT_TABLE_MAIN {
            return;
        }
        let nh_object = attrs.iter().any(|a| a.id() == RTA_NH_ID);
        if nh_object && table == RT_TABLE_LOCAL {
            self.unsupported = Some(
                "a route of the local routing table uses a nexthop object, which the \
                 address type mirror does not follow"
                    .into(),
            );
            return;
        }
        let dst = match attrs.iter().find(|a| a.id() == RTA_DST) {
            Some(a) if a.value.len() == 4 => [a.value[0], a.value[1], a.value[2], a.value[3]],
            Some(_) => return,
            None => [0; 4],
        };
        // fib_lookup_good_nhc(): a dead nexthop is skipped, a link-down one where its
        // device ignores routes with link down.
        let good = |oif: u32, flags: u32| {
            flags & RTNH_F_DEAD == 0
                && (flags & RTNH_F_LINKDOWN == 0 || !ignores_linkdown(links.get(&oif)))
        };
        let mut nexthops = Vec::new();
        if let Some(mp) = attrs.iter().find(|a| a.id() == RTA_MULTIPATH) {
            // struct rtnexthop: len u16, flags u8, hops u8, ifindex i32; then attributes.
            let mut v = &mp.value[..];
            while v.len() >= 8 {
                let len = u16::from_ne_bytes([v[0], v[1]]) as usize;
                let flags = v[2] as u32;
                let oif = u32::from_ne_bytes([v[4], v[5], v[6], v[7]]);
                nexthops.push(Nexthop {
                    oif,
                    good: good(oif, flags),
                });
                let step = (len.max(8) + 3) & !3;
                v = &v[step.min(v.len())..];
            }
        } else if let Some(oif) = uint(&attrs, RTA_OIF, 4) {
            nexthops.push(Nexthop {
                oif,
                good: good(oif, rtm_flags),
            });
        }
        let alias = Alias {
            tos,
            rtype,
            dead: rtm_flags & RTNH_F_DEAD != 0
                && (nexthops.len() <= 1 || nexthops.iter().all(|n| !n.good)),
            nexthops,
        };
        let key = (dst, dst_len);
        if table == RT_TABLE_MAIN {
            match self.main.iter_mut().rev().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push((alias, nh_object)),
                None => self.main.push((key, vec![(alias, nh_object)])),
            }
            return;
        }
        match self.prefixes.iter_mut().rev().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(alias),
            None => self.prefixes.push((key, vec![alias])),
        }
    }

    /// Why the main table may change what a lookup in the local table answers, if it
    /// may. Until a policy rule is first added or deleted (fib_unmerge()), the local
    /// and main tables share one trie, and fib_table_lookup() in the local table also
    /// meets the main table's routes (after the local ones of the same prefix); from
    /// then on it meets only the local ones. Which of the two holds cannot be read
    /// back, so the mirror (the local routes alone) is taken only where both answer
    /// alike: wherever a main route would answer, it must answer what the local
    /// routes around it do.
    fn main_conflict(&self, local: &[Route]) -> Option<String> {
        let norm = |(t, oif): (u8, u32)| (t, if t == RTN_UNICAST_TYPE { 0 } else { oif });
        for ((addr, len), aliases) in &self.main {
            if local.iter().any(|r| r.addr == *addr && r.len == *len) {
                // The local routes of this prefix answer first.
                continue;
            }
            let covering = local
                .iter()
                .filter(|r| r.len < *len && covers(r, *addr))
                .max_by_key(|r| r.len)
                .map(|r| (r.rtype, r.oif));
            let local_answer = norm(covering.unwrap_or((RTN_UNICAST_TYPE, 0)));
            let conflict = || {
                Some(format!(
                    "the main routing table's route to {}.{}.{}.{}/{len} may change the \
                     local table's answers (local and main share one trie until a \
                     policy rule is added), which the address type mirror does not follow",
                    addr[0], addr[1], addr[2], addr[3]
                ))
            };
            // A nexthop object's route: whether it is taken depends on state the
            // mirror does not read; harmless only where no local route is around.
            if aliases.iter().any(|(a, nh)| *nh && a.tos == 0) && covering.is_some() {
                return conflict();
            }
            let plain: Vec<Alias> = aliases
                .iter()
                .filter(|(_, nh)| !nh)
                .map(|(a, _)| a.clone())
                .collect();
            let mut nh_types = aliases.iter().filter(|(a, nh)| *nh && a.tos == 0);
            if nh_types.any(|(a, _)| !matches!(a.rtype, RTN_UNICAST_TYPE | 6..=9)) {
                return conflict();
            }
            if let Some(answer) = resolve(&plain) {
                if norm(answer) != local_answer {
                    return conflict();
                }
            }
        }
        None
    }

    fn finish(self) -> (Vec<Route>, Option<String>) {
        let mut routes: Vec<Route> = self
            .prefixes
            .iter()
            .filter_map(|((addr, len), aliases)| {
                let (rtype, oif) = resolve(aliases)?;
                Some(Route {
                    addr: *addr,
                    len: *len,
                    rtype,
                    oif,
                })
            })
            .collect();
        routes.sort();
        let mut unsupported = self.unsupported.clone();
        if unsupported.is_none() {
            unsupported = self.main_conflict(&routes);
        }
        if routes.len() > nftshim_ebpf::addrtype::MAX_ENTRIES {
            unsupported = Some(format!(
                "more than {} prefixes in the local routing table are not supported by \
                 the address type mirror",
                nftshim_ebpf::addrtype::MAX_ENTRIES
            ));
        }
        (routes, unsupported)
    }
}

/// Whether `r`'s prefix holds `addr`.
fn covers(r: &Route, addr: [u8; 4]) -> bool {
    let mask = if r.len == 0 {
        0
    } else {
        u32::MAX << (32 - r.len.min(32) as u32)
    };
    u32::from_be_bytes(addr) & mask == u32::from_be_bytes(r.addr) & mask
}

/// `ignore_routes_with_linkdown` of a device (ip_ignore_linkdown()), read in the
/// calling thread's namespace.
fn ignores_linkdown(name: Option<&String>) -> bool {
    name.is_some_and(|n| {
        std::fs::read_to_string(format!(
            "/proc/sys/net/ipv4/conf/{n}/ignore_routes_with_linkdown"
        ))
        .is_ok_and(|v| v.trim() != "0")
    })
}

/// What decides whether a link's frames reach the ARP hooks as its own.
struct LinkInfo {
    index: u32,
    /// ARPHRD_*.
    ifi_type: u16,
    ether: bool,
    noarp: bool,
    master: Option<u32>,
    kind: Option<String>,
    /// A bridge device's settings.
    bridge: Option<BridgeDevice>,
    /// A bridge port's settings (its bridge is `master`).
    port: Option<BridgePort>,
}

/// Reads an RTM_NEWLINK body (ifinfomsg and attributes).
fn link_info(body: &[u8]) -> LinkInfo {
    let index = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
    let ifi_type = u16::from_ne_bytes([body[2], body[3]]);
    let flags = u32::from_ne_bytes([body[8], body[9], body[10], body[11]]);
    let (attrs, _) = parse_attrs_lenient(&body[16..]);
    let master = attrs
        .iter()
        .find(|a| a.id() == IFLA_MASTER && a.value.len() == 4)
        .map(|a| u32::from_ne_bytes([a.value[0], a.value[1], a.value[2], a.value[3]]))
        .filter(|&m| m != 0);
    let info = attrs
        .iter()
        .find(|a| a.id() == IFLA_LINKINFO)
        .map(|info| parse_attrs_lenient(&info.value).0)
        .unwrap_or_default();
    let string = |id: u16| {
        info.iter().find(|a| a.id() == id).map(|k| {
            let name = k.value.split(|&b| b == 0).next().unwrap_or(&[]);
            String::from_utf8_lossy(name).into_owned()
        })
    };
    let nested = |id: u16| {
        info.iter()
            .find(|a| a.id() == id)
            .map(|d| parse_attrs_lenient(&d.value).0)
            .unwrap_or_default()
    };
    let kind = string(IFLA_INFO_KIND);
    let bridge =
        (kind.as_deref() == Some("bridge")).then(|| bridge_device(&nested(IFLA_INFO_DATA)));
    let port = (string(IFLA_INFO_SLAVE_KIND).as_deref() == Some("bridge"))
        .then(|| bridge_port(&nested(IFLA_INFO_SLAVE_DATA)));
    LinkInfo {
        index,
        ifi_type,
        ether: ifi_type == ARPHRD_ETHER,
        noarp: flags & IFF_NOARP != 0,
        master,
        kind,
        bridge,
        port,
    }
}

/// An attribute's value as a little number (host order), if it has `n` bytes.
fn uint(attrs: &[netlink_proto::attr::Attr], id: u16, n: usize) -> Option<u32> {
    let a = attrs.iter().find(|a| a.id() == id)?;
    let v = a.value.get(..n)?;
    Some(match n {
        1 => v[0] as u32,
        2 => u16::from_ne_bytes([v[0], v[1]]) as u32,
        _ => u32::from_ne_bytes([v[0], v[1], v[2], v[3]]),
    })
}

/// IFLA_INFO_DATA of a bridge.
fn bridge_device(data: &[netlink_proto::attr::Attr]) -> BridgeDevice {
    let proto = data
        .iter()
        .find(|a| a.id() == IFLA_BR_VLAN_PROTOCOL && a.value.len() >= 2)
        .map(|a| u16::from_be_bytes([a.value[0], a.value[1]]));
    let mst = uint(data, IFLA_BR_MULTI_BOOLOPT, 4)
        .is_some_and(|optval| optval & (1 << BR_BOOLOPT_MST_ENABLE) != 0);
    BridgeDevice {
        stp: uint(data, IFLA_BR_STP_STATE, 4).unwrap_or(0) != 0,
        group_fwd_mask: uint(data, IFLA_BR_GROUP_FWD_MASK, 2).unwrap_or(0) as u16,
        vlan_8021ad: uint(data, IFLA_BR_VLAN_FILTERING, 1).unwrap_or(0) != 0
            && proto == Some(ETH_P_8021AD),
        mst,
    }
}

/// IFLA_INFO_SLAVE_DATA of a bridge port (its bridge is filled in by the caller).
fn bridge_port(data: &[netlink_proto::attr::Attr]) -> BridgePort {
    BridgePort {
        bridge: 0,
        state: uint(data, IFLA_BRPORT_STATE, 1).unwrap_or(0) as u8,
        group_fwd_mask: uint(data, IFLA_BRPORT_GROUP_FWD_MASK, 2).unwrap_or(0) as u16,
    }
}

/// The links whose frames arp_rcv()/arp_xmit() never see as theirs: no ARP, not
/// Ethernet (the programs read an Ethernet header), or the port of a master whose
/// rx_handler takes its frames (bridge, bond, team: ARP runs on the master; a VRF's
/// ports keep theirs).
fn no_arp(links: &[LinkInfo]) -> std::collections::BTreeSet<u32> {
    let kind_of = |i: u32| {
        links
            .iter()
            .find(|l| l.index == i)
            .and_then(|l| l.kind.as_deref())
    };
    links
        .iter()
        .filter(|l| !l.ether || l.noarp || l.master.is_some_and(|m| kind_of(m) != Some("vrf")))
        .map(|l| l.index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_skips_noarp_non_ethernet_and_ports_but_not_vrf_ports() {
        let link = |index, ether: bool, noarp, master, kind: Option<&str>| LinkInfo {
            index,
            ifi_type: if ether { ARPHRD_ETHER } else { 772 },
            ether,
            noarp,
            master,
            kind: kind.map(str::to_string),
            bridge: None,
            port: None,
        };
        let links = [
            link(1, false, true, None, None),         // lo
            link(2, true, false, None, Some("veth")), // plain
            link(3, true, false, None, Some("bridge")),
            link(4, true, false, Some(3), Some("veth")), // bridge port
            link(5, true, false, None, Some("vrf")),
            link(6, true, false, Some(5), Some("veth")), // vrf port
            link(7, true, true, None, Some("veth")),     // ip link set noarp on
            link(8, false, false, None, Some("ipip")),
        ];
        let skipped: Vec<u32> = no_arp(&links).into_iter().collect();
        assert_eq!(skipped, [1, 4, 7, 8]);
    }

    #[test]
    fn own_namespace_has_loopback_and_its_addresses() {
        let f = read_facts().expect("rtnetlink dump");
        assert!(f.links.values().any(|n| n == "lo"), "{f:?}");
        // 127.0.0.0/8 is a local route whenever lo is up (always, outside fresh
        // namespaces whose lo is down; this test runs in the host's).
        if f.local_v4.iter().any(|n| n.to_string() == "127.0.0.0/8") {
            assert!(f.local_v4.iter().any(|n| n.to_string() == "127.0.0.1/32"));
        }
        assert!(f.local_v4.iter().any(|n| n.to_string() == "224.0.0.0/4"));
    }

    fn alias(rtype: u8, oif: u32) -> Alias {
        Alias {
            tos: 0,
            rtype,
            dead: false,
            nexthops: vec![Nexthop { oif, good: true }],
        }
    }

    /// A main route inside a local prefix of another type would answer otherwise
    /// while the tables share their trie: the mirror is refused then, and taken
    /// where the main routes answer what the local ones around them do.
    #[test]
    fn main_routes_that_would_change_the_answer_are_caught() {
        let mirror = |local: Vec<(Prefix, Vec<Alias>)>, main| AddrTypeMirror {
            prefixes: local,
            main,
            unsupported: None,
        };
        let local = || vec![(([10, 0, 0, 0], 8), vec![alias(2, 1)])];
        let (routes, why) = mirror(local(), vec![]).finish();
        assert_eq!(routes.len(), 1);
        assert_eq!(why, None);
        // A connected route inside the local /8: UNICAST against LOCAL.
        let (_, why) = mirror(
            local(),
            vec![(([10, 9, 0, 0], 24), vec![(alias(1, 3), false)])],
        )
        .finish();
        assert!(why.is_some());
        // Outside it, or of the same type and device: no difference.
        let (_, why) = mirror(
            local(),
            vec![(([11, 0, 0, 0], 8), vec![(alias(1, 3), false)])],
        )
        .finish();
        assert_eq!(why, None);
        let (_, why) = mirror(
            local(),
            vec![(([10, 9, 0, 0], 24), vec![(alias(2, 1), false)])],
        )
        .finish();
        assert_eq!(why, None);
        // A nexthop object's route inside a local prefix.
        let (_, why) = mirror(
            local(),
            vec![(([10, 9, 0, 0], 24), vec![(alias(1, 0), true)])],
        )
        .finish();
        assert!(why.is_some());
    }
}

/// The sysctls of the calling thread's namespace whose value changes the kernel's
/// answers to forwarded packets from what the eBPF programs send (see
/// `compile::reject::check_forward_answers`), with the value they have when it is not
/// the one the programs assume (mostly the kernel's default). Absent ones (no IPv6) are
/// left out.
fn answer_sysctls<'a>(links: impl Iterator<Item = &'a String>) -> Vec<(String, String)> {
    // icmp_send() answers from an address of the input device; TTL and hop limit of
    // the answers (ip4_dst_hoplimit, ip6_dst_hoplimit of the route's device); the
    // answers' mark (IP4_REPLY_MARK / IP6_REPLY_MARK).
    let mut want: Vec<(String, &str)> = vec![
        ("ipv4/icmp_errors_use_inbound_ifaddr".into(), "0"),
        ("ipv4/ip_default_ttl".into(), "64"),
        ("ipv4/fwmark_reflect".into(), "0"),
        ("ipv6/fwmark_reflect".into(), "0"),
    ];
    // ip6_forward() forwards by the namespace-wide switch, bpf_fib_lookup() looks up the
    // route back only on an input device with its own forwarding on.
    let v6_forwarding = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")
        .is_ok_and(|v| v.trim() == "1");
    for name in links {
        want.push((format!("ipv6/conf/{name}/hop_limit"), "64"));
        if v6_forwarding && name != "lo" {
            want.push((format!("ipv6/conf/{name}/forwarding"), "1"));
        }
    }
    want.into_iter()
        .filter_map(|(key, default)| {
            let value = std::fs::read_to_string(format!("/proc/sys/net/{key}")).ok()?;
            let value = value.trim();
            (value != default).then(|| (format!("net/{key}"), value.to_string()))
        })
        .collect()
}
