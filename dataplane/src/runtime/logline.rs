//! `log` statements: the line the kernel's nf_log_syslog would print for a packet the
//! eBPF program reported (`loader::LogEvent`), written through the daemon's logger.
//!
//! The IR carries a log statement's prefix as a string that becomes an id in the
//! event; [`LogSpec::key`] packs the level and flags into that string, so the worker
//! needs nothing else to format the event.
//!
//! Format (nf_log_syslog.c): `PREFIX IN=dev OUT=dev ` then, for packets with an input
//! device, `MAC=..` (the link-layer header) or with `log flags ether`
//! `MACSRC=.. MACDST=.. MACPROTO=.. `; then the IPv4 (`SRC DST LEN TOS PREC TTL ID`,
//! `CE DF MF`, `FRAG:`, options) or IPv6 (`SRC DST LEN TC HOPLIMIT FLOWLBL`, extension
//! headers) fields, the transport fields (TCP, UDP, UDP-Lite, ICMP/ICMPv6 with the
//! quoted packet of errors, AH, ESP) and `MARK=0x..`.

use std::fmt::Write;

/// NF_LOG_* flags.
pub const NF_LOG_TCPSEQ: u32 = 0x01;
pub const NF_LOG_TCPOPT: u32 = 0x02;
pub const NF_LOG_IPOPT: u32 = 0x04;
pub const NF_LOG_UID: u32 = 0x08;
pub const NF_LOG_MACDECODE: u32 = 0x20;
/// The flags this formatter prints (`skuid` with the ids the program read, see
/// [`Packet::uid_gid`]).
pub const SUPPORTED_FLAGS: u32 =
    NF_LOG_TCPSEQ | NF_LOG_TCPOPT | NF_LOG_IPOPT | NF_LOG_UID | NF_LOG_MACDECODE;

/// One `log` statement as the kernel keeps it (`nf_loginfo` of type NF_LOG_TYPE_LOG).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSpec {
    pub prefix: String,
    /// Syslog level 0 (emerg) to 7 (debug).
    pub level: u32,
    pub flags: u32,
}

impl LogSpec {
    /// The IR's prefix string for this statement.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.level, self.flags, self.prefix)
    }

    pub fn from_key(key: &str) -> Option<LogSpec> {
        let mut parts = key.splitn(3, '/');
        let level = parts.next()?.parse().ok()?;
        let flags = parts.next()?.parse().ok()?;
        let prefix = parts.next()?.to_string();
        Some(LogSpec {
            prefix,
            level,
            flags,
        })
    }
}

/// What the program saw: the frame's first bytes and where its network header starts.
pub struct Packet<'a> {
    pub frame: &'a [u8],
    pub l3_off: usize,
    /// Bytes from the network header on (the IP length).
    pub len: usize,
    pub mark: u32,
    /// The socket file's fsuid and fsgid (nf_log_dump_sk_uid_gid()), if any.
    pub uid_gid: Option<(u32, u32)>,
}

/// The kernel's line for `p`, logged by `spec` with these devices (`IN=`/`OUT=`).
/// `in_dev` also decides whether the link-layer header is printed, as in the kernel.
pub fn format(
    spec: &LogSpec,
    in_dev: Option<&str>,
    out_dev: Option<&str>,
    p: &Packet<'_>,
) -> String {
    let mut m = String::new();
    let _ = write!(
        m,
        "{}IN={} OUT={} ",
        spec.prefix,
        in_dev.unwrap_or(""),
        out_dev.unwrap_or("")
    );
    let l3 = p.frame.get(p.l3_off..).unwrap_or(&[]);
    let version = l3.first().map(|b| b >> 4);
    if in_dev.is_some() {
        mac_header(&mut m, spec.flags, p.frame.get(..p.l3_off).unwrap_or(&[]));
    }
    let w = Walker {
        data: l3,
        len: p.len,
        flags: spec.flags,
    };
    let complete = match version {
        Some(4) => w.ipv4(&mut m, 0),
        Some(6) => w.ipv6(&mut m, 0, true),
        _ => {
            m.push_str("TRUNCATED");
            false
        }
    };
    if let (true, true, Some((uid, gid))) = (complete, spec.flags & NF_LOG_UID != 0, p.uid_gid) {
        let _ = write!(m, "UID={uid} GID={gid} ");
    }
    if complete && p.mark != 0 {
        let _ = write!(m, "MARK=0x{:x} ", p.mark);
    }
    m
}

fn mac_header(m: &mut String, flags: u32, l2: &[u8]) {
    if flags & NF_LOG_MACDECODE != 0 && l2.len() >= 14 {
        let mac = |b: &[u8]| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let _ = write!(
            m,
            "MACSRC={} MACDST={} MACPROTO={:04x} ",
            mac(&l2[6..12]),
            mac(&l2[0..6]),
            u16::from_be_bytes([l2[12], l2[13]])
        );
        return;
    }
    // dev->hard_header_len of an Ethernet device.
    let hdr = l2.get(..14).unwrap_or(l2);
    m.push_str("MAC=");
    let bytes: Vec<String> = hdr.iter().map(|b| format!("{b:02x}")).collect();
    m.push_str(&bytes.join(":"));
    m.push(' ');
}

/// Reads header fields at offsets from the outer network header, as
/// `skb_header_pointer` would: None past what was captured.
struct Walker<'a> {
    data: &'a [u8],
    /// The packet's length from the network header on (`skb->len` at the IP hooks).
    len: usize,
    flags: u32,
}

impl Walker<'_> {
    fn bytes(&self, off: usize, n: usize) -> Option<&[u8]> {
        if off + n > self.len {
            return None;
        }
        self.data.get(off..off + n)
    }
    fn u32(&self, off: usize) -> Option<u32> {
        self.bytes(off, 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn remaining(&self, off: usize) -> usize {
        self.len.saturating_sub(off)
    }

    /// dump_ipv4_packet(); `iphoff` 0 for the packet, else a quoted one. False when
    /// the kernel's dump returns early (then no `MARK=` follows).
    fn ipv4(&self, m: &mut String, iphoff: usize) -> bool {
        let Some(ih) = self.bytes(iphoff, 20) else {
            m.push_str("TRUNCATED");
            return false;
        };
        let ihl = usize::from(ih[0] & 0xf) * 4;
        let tos = ih[1];
        let tot_len = u16::from_be_bytes([ih[2], ih[3]]);
        let id = u16::from_be_bytes([ih[4], ih[5]]);
        let frag = u16::from_be_bytes([ih[6], ih[7]]);
        let (ttl, proto) = (ih[8], ih[9]);
        let _ = write!(
            m,
            "SRC={}.{}.{}.{} DST={}.{}.{}.{} ",
            ih[12], ih[13], ih[14], ih[15], ih[16], ih[17], ih[18], ih[19]
        );
        let _ = write!(
            m,
            "LEN={tot_len} TOS=0x{:02X} PREC=0x{:02X} TTL={ttl} ID={id} ",
            tos & 0x1e,
            tos & 0xe0
        );
        if frag & 0x8000 != 0 {
            m.push_str("CE ");
        }
        if frag & 0x4000 != 0 {
            m.push_str("DF ");
        }
        if frag & 0x2000 != 0 {
            m.push_str("MF ");
        }
        let offset = frag & 0x1fff;
        if offset != 0 {
            let _ = write!(m, "FRAG:{offset} ");
        }
        if self.flags & NF_LOG_IPOPT != 0 && ihl > 20 {
            let Some(op) = self.bytes(iphoff + 20, ihl - 20) else {
                m.push_str("TRUNCATED");
                return false;
            };
            let _ = write!(m, "OPT ({}) ", hex_upper(op));
        }
        let l4 = iphoff + ihl;
        let fragment = offset != 0;
        match proto {
            6 => {
                if self.tcp(m, fragment, l4) {
                    return false;
                }
            }
            17 | 136 => {
                if self.udp(m, proto, fragment, l4) {
                    return false;
                }
            }
            1 => self.icmp(m, fragment, iphoff, l4),
            51 => {
                m.push_str("PROTO=AH ");
                if !fragment {
                    match self.u32(l4 + 4) {
                        Some(spi) => {
                            let _ = write!(m, "SPI=0x{spi:x} ");
                        }
                        None => incomplete(m, self.remaining(l4)),
                    }
                }
            }
            50 => {
                m.push_str("PROTO=ESP ");
                if !fragment {
                    match self.u32(l4) {
                        Some(spi) => {
                            let _ = write!(m, "SPI=0x{spi:x} ");
                        }
                        None => incomplete(m, self.remaining(l4)),
                    }
                }
            }
            other => {
                let _ = write!(m, "PROTO={other} ");
            }
        }
        true
    }

    /// The ICMP part of dump_ipv4_packet().
    fn icmp(&self, m: &mut String, fragment: bool, iphoff: usize, l4: usize) {
        m.push_str("PROTO=ICMP ");
        if fragment {
            return;
        }
        let Some(h) = self.bytes(l4, 8) else {
            incomplete(m, self.remaining(l4));
            return;
        };
        let (ty, code) = (h[0], h[1]);
        let _ = write!(m, "TYPE={ty} CODE={code} ");
        let required = match ty {
            0 | 8 => 4,
            3 | 4 | 5 | 11 | 12 => 8 + 20,
            13 | 14 => 20,
            17 | 18 => 12,
            _ => 0,
        };
        if required != 0 && self.remaining(l4) < required {
            incomplete(m, self.remaining(l4));
            return;
        }
        match ty {
            0 | 8 => {
                let _ = write!(
                    m,
                    "ID={} SEQ={} ",
                    u16::from_be_bytes([h[4], h[5]]),
                    u16::from_be_bytes([h[6], h[7]])
                );
            }
            12 => {
                let _ = write!(m, "PARAMETER={} ", h[4]);
            }
            3 | 4 | 5 | 11 => {
                if ty == 5 {
                    let _ = write!(m, "GATEWAY={}.{}.{}.{} ", h[4], h[5], h[6], h[7]);
                }
                if iphoff == 0 {
                    m.push('[');
                    self.ipv4(m, l4 + 8);
                    m.push_str("] ");
                }
                if ty == 3 && code == 4 {
                    let _ = write!(m, "MTU={} ", u16::from_be_bytes([h[6], h[7]]));
                }
            }
            _ => {}
        }
    }

    /// nf_log_dump_tcp_header(): true when the dump stops here.
    fn tcp(&self, m: &mut String, fragment: bool, off: usize) -> bool {
        m.push_str("PROTO=TCP ");
        if fragment {
            return false;
        }
        let Some(th) = self.bytes(off, 20) else {
            incomplete(m, self.remaining(off));
            return true;
        };
        let _ = write!(
            m,
            "SPT={} DPT={} ",
            u16::from_be_bytes([th[0], th[1]]),
            u16::from_be_bytes([th[2], th[3]])
        );
        if self.flags & NF_LOG_TCPSEQ != 0 {
            let _ = write!(
                m,
                "SEQ={} ACK={} ",
                u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
                u32::from_be_bytes([th[8], th[9], th[10], th[11]])
            );
        }
        let _ = write!(m, "WINDOW={} ", u16::from_be_bytes([th[14], th[15]]));
        // The reserved bits of the flag word (TCP_RESERVED_BITS >> 22).
        let _ = write!(m, "RES=0x{:02x} ", (th[12] & 0x0f) << 2);
        let flags = th[13];
        for (bit, name) in [
            (0x80, "CWR "),
            (0x40, "ECE "),
            (0x20, "URG "),
            (0x10, "ACK "),
            (0x08, "PSH "),
            (0x04, "RST "),
            (0x02, "SYN "),
            (0x01, "FIN "),
        ] {
            if flags & bit != 0 {
                m.push_str(name);
            }
        }
        let _ = write!(m, "URGP={} ", u16::from_be_bytes([th[18], th[19]]));
        let doff = usize::from(th[12] >> 4) * 4;
        if self.flags & NF_LOG_TCPOPT != 0 && doff > 20 {
            let Some(op) = self.bytes(off + 20, doff - 20) else {
                m.push_str("OPT (TRUNCATED)");
                return true;
            };
            let _ = write!(m, "OPT ({}) ", hex_upper(op));
        }
        false
    }

    /// nf_log_dump_udp_header(): true when the dump stops here.
    fn udp(&self, m: &mut String, proto: u8, fragment: bool, off: usize) -> bool {
        m.push_str(if proto == 17 {
            "PROTO=UDP "
        } else {
            "PROTO=UDPLITE "
        });
        if fragment {
            return false;
        }
        let Some(uh) = self.bytes(off, 8) else {
            incomplete(m, self.remaining(off));
            return true;
        };
        let _ = write!(
            m,
            "SPT={} DPT={} LEN={} ",
            u16::from_be_bytes([uh[0], uh[1]]),
            u16::from_be_bytes([uh[2], uh[3]]),
            u16::from_be_bytes([uh[4], uh[5]])
        );
        false
    }

    /// dump_ipv6_packet(); `recurse` is false inside a quoted packet. False as
    /// [`Walker::ipv4`].
    fn ipv6(&self, m: &mut String, ip6hoff: usize, recurse: bool) -> bool {
        let Some(ih) = self.bytes(ip6hoff, 40) else {
            m.push_str("TRUNCATED");
            return false;
        };
        let word = u32::from_be_bytes([ih[0], ih[1], ih[2], ih[3]]);
        let _ = write!(
            m,
            "SRC={} DST={} ",
            ipv6_full(&ih[8..24]),
            ipv6_full(&ih[24..40])
        );
        let _ = write!(
            m,
            "LEN={} TC={} HOPLIMIT={} FLOWLBL={} ",
            usize::from(u16::from_be_bytes([ih[4], ih[5]])) + 40,
            (word & 0x0ff0_0000) >> 20,
            ih[7],
            word & 0x000f_ffff
        );
        let ipopt = self.flags & NF_LOG_IPOPT != 0;
        let mut fragment = false;
        let mut ptr = ip6hoff + 40;
        let mut current = ih[6];
        // nf_ip6_ext_hdr(): hop-by-hop, routing, fragment, ESP, AH, none, dstopts.
        while current != 59 && matches!(current, 0 | 43 | 44 | 50 | 51 | 60) {
            let Some(hp) = self.bytes(ptr, 8) else {
                m.push_str("TRUNCATED");
                return false;
            };
            if ipopt {
                m.push_str("OPT ( ");
            }
            let hdrlen = match current {
                44 => {
                    let frag_off = u16::from_be_bytes([hp[2], hp[3]]);
                    let _ = write!(m, "FRAG:{} ", frag_off & 0xfff8);
                    if frag_off & 1 != 0 {
                        m.push_str("INCOMPLETE ");
                    }
                    let _ = write!(
                        m,
                        "ID:{:08x} ",
                        u32::from_be_bytes([hp[4], hp[5], hp[6], hp[7]])
                    );
                    if frag_off & 0xfff8 != 0 {
                        fragment = true;
                    }
                    8
                }
                0 | 43 | 60 => {
                    if fragment {
                        if ipopt {
                            m.push(')');
                        }
                        return false;
                    }
                    (usize::from(hp[1]) + 1) * 8
                }
                51 => {
                    if ipopt {
                        m.push_str("AH ");
                        if fragment {
                            m.push(')');
                            return false;
                        }
                        match self.u32(ptr + 4) {
                            Some(spi) => {
                                let _ = write!(m, "SPI=0x{spi:x} ");
                            }
                            None => {
                                incomplete(m, self.remaining(ptr));
                                return false;
                            }
                        }
                    }
                    (usize::from(hp[1]) + 2) * 4
                }
                _ => {
                    // ESP: what follows is encrypted.
                    if ipopt {
                        m.push_str("ESP ");
                        if fragment {
                            m.push(')');
                            return false;
                        }
                        match self.u32(ptr) {
                            Some(spi) => {
                                let _ = write!(m, "SPI=0x{spi:x} )");
                            }
                            None => incomplete(m, self.remaining(ptr)),
                        }
                    }
                    return false;
                }
            };
            if ipopt {
                m.push_str(") ");
            }
            current = hp[0];
            ptr += hdrlen;
        }
        match current {
            6 => {
                if self.tcp(m, fragment, ptr) {
                    return false;
                }
            }
            17 | 136 => {
                if self.udp(m, current, fragment, ptr) {
                    return false;
                }
            }
            58 => {
                m.push_str("PROTO=ICMPv6 ");
                if fragment {
                    return false;
                }
                let Some(ic) = self.bytes(ptr, 8) else {
                    incomplete(m, self.remaining(ptr));
                    return false;
                };
                let (ty, code) = (ic[0], ic[1]);
                let _ = write!(m, "TYPE={ty} CODE={code} ");
                match ty {
                    128 | 129 => {
                        let _ = write!(
                            m,
                            "ID={} SEQ={} ",
                            u16::from_be_bytes([ic[4], ic[5]]),
                            u16::from_be_bytes([ic[6], ic[7]])
                        );
                    }
                    1..=4 => {
                        if ty == 4 {
                            let _ = write!(
                                m,
                                "POINTER={:08x} ",
                                u32::from_be_bytes([ic[4], ic[5], ic[6], ic[7]])
                            );
                        }
                        if recurse {
                            m.push('[');
                            self.ipv6(m, ptr + 8, false);
                            m.push_str("] ");
                        }
                        if ty == 2 {
                            let _ = write!(
                                m,
                                "MTU={} ",
                                u32::from_be_bytes([ic[4], ic[5], ic[6], ic[7]])
                            );
                        }
                    }
                    _ => {}
                }
            }
            other => {
                let _ = write!(m, "PROTO={other} ");
            }
        }
        true
    }
}

fn incomplete(m: &mut String, bytes: usize) {
    let _ = write!(m, "INCOMPLETE [{bytes} bytes] ");
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// `%pI6`: eight groups of four hex digits.
fn ipv6_full(b: &[u8]) -> String {
    b.chunks(2)
        .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(l3: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 1, 1, 0x02, 0, 0, 0, 1, 2, 0x08, 0x00];
        f.extend_from_slice(l3);
        f
    }

    #[test]
    fn keys_carry_level_flags_and_any_prefix() {
        let spec = LogSpec {
            prefix: "a/b c: ".into(),
            level: 6,
            flags: NF_LOG_TCPSEQ,
        };
        assert_eq!(LogSpec::from_key(&spec.key()), Some(spec));
    }

    #[test]
    fn udp_at_input_with_mac_and_mark() {
        // 10.7.1.2:40000 -> 10.7.1.1:53, TTL 64, ID 0, DF, 12 bytes of payload.
        let ip = [
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 7, 1, 2, 10, 7, 1, 1, 0x9c, 0x40, 0,
            53, 0, 20, 0, 0,
        ];
        let f = frame(&ip);
        let spec = LogSpec {
            prefix: "dns ".into(),
            level: 4,
            flags: 0,
        };
        let p = Packet {
            frame: &f,
            l3_off: 14,
            len: 40,
            mark: 0x2a,
            uid_gid: None,
        };
        assert_eq!(
            format(&spec, Some("f0"), None, &p),
            "dns IN=f0 OUT= MAC=02:00:00:00:01:01:02:00:00:00:01:02:08:00 SRC=10.7.1.2 \
             DST=10.7.1.1 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=UDP SPT=40000 DPT=53 \
             LEN=20 MARK=0x2a "
        );
    }

    #[test]
    fn tcp_syn_at_output_with_sequence_numbers_and_no_mac() {
        let mut ip = vec![
            0x45, 0, 0, 40, 0x12, 0x34, 0, 0, 63, 6, 0, 0, 10, 7, 1, 1, 10, 7, 1, 2,
        ];
        ip.extend_from_slice(&[
            0x9c, 0x40, 0, 22, 0, 0, 0, 7, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0, 0, 0, 0, 0,
        ]);
        let f = frame(&ip);
        let spec = LogSpec {
            prefix: String::new(),
            level: 4,
            flags: NF_LOG_TCPSEQ,
        };
        let p = Packet {
            frame: &f,
            l3_off: 14,
            len: 40,
            mark: 0,
            uid_gid: None,
        };
        assert_eq!(
            format(&spec, None, Some("f0"), &p),
            "IN= OUT=f0 SRC=10.7.1.1 DST=10.7.1.2 LEN=40 TOS=0x00 PREC=0x00 TTL=63 ID=4660 \
             PROTO=TCP SPT=40000 DPT=22 SEQ=7 ACK=0 WINDOW=64000 RES=0x00 SYN URGP=0 "
        );
    }

    #[test]
    fn socket_ids_come_before_the_mark_and_only_with_the_uid_flag() {
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 7, 1, 1, 10, 7, 1, 2,
        ];
        ip.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
        let f = frame(&ip);
        let mut spec = LogSpec {
            prefix: "u ".into(),
            level: 4,
            flags: NF_LOG_UID,
        };
        let p = Packet {
            frame: &f,
            l3_off: 14,
            len: 28,
            mark: 7,
            uid_gid: Some((1000, 100)),
        };
        let tail = "PROTO=UDP SPT=40000 DPT=53 LEN=8 ";
        assert!(format(&spec, None, Some("f0"), &p)
            .ends_with(&format!("{tail}UID=1000 GID=100 MARK=0x7 ")));
        spec.flags = 0;
        assert!(format(&spec, None, Some("f0"), &p).ends_with(&format!("{tail}MARK=0x7 ")));
    }

    #[test]
    fn icmpv6_echo_with_decoded_mac() {
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        ip.extend_from_slice(&[0xfd, 0x07, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip.extend_from_slice(&[0xfd, 0x07, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[128, 0, 0, 0, 0x4e, 0x53, 0, 5]);
        let mut f = frame(&ip);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let spec = LogSpec {
            prefix: "v6 ".into(),
            level: 4,
            flags: NF_LOG_MACDECODE,
        };
        let p = Packet {
            frame: &f,
            l3_off: 14,
            len: 48,
            mark: 0,
            uid_gid: None,
        };
        assert_eq!(
            format(&spec, Some("f0"), None, &p),
            "v6 IN=f0 OUT= MACSRC=02:00:00:00:01:02 MACDST=02:00:00:00:01:01 MACPROTO=86dd \
             SRC=fd07:0001:0000:0000:0000:0000:0000:0002 DST=fd07:0001:0000:0000:0000:0000:0000:0001 \
             LEN=48 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=ICMPv6 TYPE=128 CODE=0 ID=20051 SEQ=5 "
        );
    }
}
