//! xt_NFLOG and nft `log group`: what a statement asks of nfnetlink_log (its
//! `nf_loginfo` of type NF_LOG_TYPE_ULOG and the hook it runs at), carried through the
//! IR as a string key, and the packet the engine's nfnetlink_log builds its message
//! from ([`nftshim_engine::ulog::packet::LogPacket`]), made of what the program
//! reported ([`NflogEvent`]) and the namespace's facts.
//!
//! Enforced at prerouting, input, output and postrouting (see `compile::nflog`). At
//! prerouting and input the input device is the TC ingress device, there is no output
//! device and the MAC header is the frame's; at prerouting no socket (so no
//! NFULA_UID/GID), at input the one early demux attached (lib/nflog_demux.h). At output and
//! postrouting there is no input device (so no MAC header and no timestamp), the
//! output device is the TC egress device, and the socket's file credentials come from
//! lib/sockcred.h.

use std::time::{SystemTime, UNIX_EPOCH};

use nftshim_ebpf::loader::NflogEvent;
use nftshim_engine::ulog::packet::{HwInfo, LogPacket};

use crate::compile::Facts;

/// ARPHRD_* types whose link-layer header the program sees as the kernel's MAC
/// header: Ethernet and loopback (ETH_HLEN, `eth_header_parse` gives the source
/// address), and none (no header).
pub const ARPHRD_ETHER: u16 = 1;
pub const ARPHRD_LOOPBACK: u16 = 772;
pub const ARPHRD_NONE: u16 = 65534;

/// NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING.
pub const NF_INET_PRE_ROUTING: u8 = 0;
pub const NF_INET_LOCAL_IN: u8 = 1;
pub const NF_INET_LOCAL_OUT: u8 = 3;
pub const NF_INET_POST_ROUTING: u8 = 4;

/// NFULNL_COPY_RANGE_MAX.
pub const COPY_RANGE_MAX: u32 = 0xffff - 4;

/// One NFLOG statement: `nf_loginfo.u.ulog` and the hook (NF_INET_*) it runs at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NflogSpec {
    pub hook: u8,
    pub group: u16,
    /// The copy length of NF_LOG_F_COPY_LEN (`--nflog-size`, `snaplen`).
    pub copy_len: Option<u32>,
    pub qthreshold: u16,
    /// Without its NUL.
    pub prefix: Vec<u8>,
}

const KEY_TAG: &str = "nflog";

impl NflogSpec {
    /// The IR's key: distinct from every `log` key (those start with a level digit).
    pub fn key(&self) -> String {
        let hex: String = self.prefix.iter().map(|b| format!("{b:02x}")).collect();
        let copy = self
            .copy_len
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        format!(
            "{KEY_TAG}/{}/{}/{copy}/{}/{hex}",
            self.hook, self.group, self.qthreshold
        )
    }

    pub fn from_key(key: &str) -> Option<NflogSpec> {
        let mut parts = key.split('/');
        if parts.next()? != KEY_TAG {
            return None;
        }
        let hook = parts.next()?.parse().ok()?;
        let group = parts.next()?.parse().ok()?;
        let copy_len = match parts.next()? {
            "-" => None,
            c => Some(c.parse().ok()?),
        };
        let qthreshold = parts.next()?.parse().ok()?;
        let hex = parts.next()?;
        if hex.len() % 2 != 0 {
            return None;
        }
        let prefix = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(NflogSpec {
            hook,
            group,
            copy_len,
            qthreshold,
            prefix,
        })
    }

    /// The most bytes from the network header on that a listener can ask for.
    pub fn snap(&self) -> u32 {
        self.copy_len.unwrap_or(COPY_RANGE_MAX).min(COPY_RANGE_MAX)
    }
}

/// The packet nfnetlink_log sees, or None when the event does not say
/// enough (not IPv4/IPv6, a device of another type, a frame cut short).
pub fn to_packet(spec: &NflogSpec, ev: &NflogEvent, facts: &Facts) -> Option<LogPacket> {
    let family = match ev.protocol {
        0x0800 => 2,
        0x86dd => 10,
        _ => return None,
    };
    let l3 = usize::from(ev.l3_off);
    let packet = LogPacket {
        family,
        hook: spec.hook,
        group: spec.group,
        prefix: spec.prefix.clone(),
        copy_len: spec.copy_len,
        qthreshold: spec.qthreshold,
        hw_protocol: ev.protocol,
        indev: None,
        outdev: None,
        mark: ev.mark,
        hw: None,
        timestamp: None,
        uid_gid: None,
        len: ev.len,
        data: ev.frame.get(l3..)?.to_vec(),
    };
    if spec.hook != NF_INET_PRE_ROUTING && spec.hook != NF_INET_LOCAL_IN {
        // Output and postrouting (ip_output passes no input device): the output
        // device, the sending socket's file credentials, no MAC header, no time.
        return Some(LogPacket {
            outdev: Some(ev.oif),
            uid_gid: ev.uid_gid,
            ..packet
        });
    }
    let hw = match facts.link_types.get(&ev.iif).copied()? {
        t @ (ARPHRD_ETHER | ARPHRD_LOOPBACK) if l3 == 14 => HwInfo {
            hwtype: t,
            header: ev.frame.get(..14)?.to_vec(),
            addr: Some(ev.frame.get(6..12)?.to_vec()),
        },
        ARPHRD_NONE if l3 == 0 => HwInfo {
            hwtype: ARPHRD_NONE,
            header: Vec::new(),
            addr: None,
        },
        _ => return None,
    };
    // skb->tstamp as TC ingress reads it (real time), else now, as skb_tstamp_cond()
    // takes the clock when the skb has none.
    let ns = if ev.tstamp != 0 {
        ev.tstamp
    } else {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    Some(LogPacket {
        indev: Some(ev.iif),
        hw: Some(hw),
        timestamp: Some((ns / 1_000_000_000, ns % 1_000_000_000 / 1000)),
        // At input, the socket early demux attached (lib/nflog_demux.h); at prerouting
        // ip_rcv_core() has orphaned the skb.
        uid_gid: if spec.hook == NF_INET_LOCAL_IN {
            ev.uid_gid
        } else {
            None
        },
        ..packet
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_differ_from_log_keys() {
        let spec = NflogSpec {
            hook: 0,
            group: 65535,
            copy_len: Some(0),
            qthreshold: 7,
            prefix: b"a/b c\xff".to_vec(),
        };
        assert_eq!(NflogSpec::from_key(&spec.key()), Some(spec.clone()));
        let none = NflogSpec {
            copy_len: None,
            prefix: Vec::new(),
            ..spec
        };
        assert_eq!(NflogSpec::from_key(&none.key()), Some(none));
        assert_eq!(NflogSpec::from_key("4/0/nflog"), None);
    }

    #[test]
    fn prerouting_packet_from_an_ethernet_frame() {
        let mut facts = Facts::default();
        facts.link_types.insert(3, ARPHRD_ETHER);
        facts.link_types.insert(4, 768); // ARPHRD_TUNNEL
        let mut frame = vec![0u8; 14 + 28];
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        frame[12..14].copy_from_slice(&[8, 0]);
        frame[14] = 0x45;
        let ev = NflogEvent {
            spec: 0,
            iif: 3,
            oif: 0,
            mark: 5,
            len: 28,
            tstamp: 1_500_000_123_456_789,
            l3_off: 14,
            protocol: 0x0800,
            uid_gid: None,
            frame: frame.clone(),
        };
        let spec = NflogSpec {
            hook: 0,
            group: 2,
            copy_len: None,
            qthreshold: 0,
            prefix: b"p".to_vec(),
        };
        let p = to_packet(&spec, &ev, &facts).expect("a packet");
        assert_eq!(p.family, 2);
        assert_eq!(p.indev, Some(3));
        assert_eq!(p.outdev, None);
        assert_eq!(p.data, frame[14..].to_vec());
        let hw = p.hw.expect("hw");
        assert_eq!(hw.header, frame[..14].to_vec());
        assert_eq!(hw.addr, Some(vec![2, 0, 0, 0, 0, 9]));
        assert_eq!(p.timestamp, Some((1_500_000, 123_456)));
        let tunnel = NflogEvent {
            iif: 4,
            ..ev.clone()
        };
        assert_eq!(to_packet(&spec, &tunnel, &facts), None);
        // At output: the output device and the socket's ids; no MAC header, no time.
        let out = NflogEvent {
            iif: 0,
            oif: 4,
            uid_gid: Some((1000, 100)),
            ..ev
        };
        let spec = NflogSpec {
            hook: NF_INET_LOCAL_OUT,
            ..spec
        };
        let p = to_packet(&spec, &out, &facts).expect("a packet");
        assert_eq!((p.indev, p.outdev), (None, Some(4)));
        assert_eq!((p.hw, p.timestamp), (None, None));
        assert_eq!(p.uid_gid, Some((1000, 100)));
        assert_eq!(p.hook, 3);
    }
}
