//! Residual programs: what a rule tests beyond the LBVS fields (other header bytes,
//! other meta keys, masks, shifts, byte order, ranges, lookups with any key), as a
//! short run of nf_tables-like register operations. bpf/lib/residual.h runs them,
//! only for the rules LBVS found as candidates; [`ResidualProgram::holds`] is the
//! reference, written from the kernel's expressions (nft_payload, nft_meta, nft_cmp,
//! nft_bitwise, nft_byteorder, nft_range, nft_lookup) over [`Headers`].
//!
//! Semantics: the program holds when it runs to its end. A load of bytes the packet
//! does not have (out of the datagram, no transport header, a later fragment) and a
//! test that fails stop it, as NFT_BREAK does. Registers are the 64 data bytes of
//! nf_tables' register file (NFT_REG32_00 at 0, NFT_REG_1 = bytes 0..16, ...).

mod connlimit;
mod string;
mod u32match;
mod xt;
pub use string::{kernel_toupper, XtString, MAX_PATTERN as XT_STRING_MAX_PATTERN};
pub use u32match::{U32Op, U32Test, XtU32, MAX_SIZE as XT_U32_MAX_SIZE};
pub use xt::{ipv6_header_types, ipv6_options_match, SctpChunkMatch, SctpChunks, IPV6_MAX_OPTS};

/// Bytes of the register file (NFT_REG32_00 .. NFT_REG32_15).
pub const REGS_LEN: usize = 64;
/// Operations per program (`NS_RES_MAX_INSNS`).
pub const MAX_INSNS: usize = 32;
/// Bytes of an operation's data (one nft_data, `NFT_DATA_VALUE_MAXLEN`).
pub const MAX_DATA: usize = 16;
/// Elements one lookup scans (`NS_RES_MAX_ELEMS`).
pub const MAX_ELEMS: usize = 256;
/// A payload load must end this many bytes after its base, at most. With the BPF
/// program's header copy (`NS_RES_HDR_MAX`) this keeps every accepted load inside the
/// copy whenever the packet has the bytes.
pub const MAX_PAYLOAD_END: u32 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadBase {
    /// From the network header (`@nh`).
    Network,
    /// From the transport header (`@th`): absent on later fragments and when the
    /// protocol is unknown (NFT_PKTINFO_L4PROTO unset).
    Transport,
    /// From the MAC header (`@ll`) as nft_payload_eval reads it at the netdev and
    /// bridge hooks: when the skb carries a hardware-accelerated VLAN tag and the load
    /// reaches past the MAC addresses, the frame with that tag put back after them
    /// ([`LinkFrame::bytes`]). Needs [`Headers::netdev`].
    LinkLayer,
    /// From the MAC header as the frame's own bytes: the IP hooks, which the receive
    /// path reaches only after it took an accelerated tag off the skb.
    LinkLayerUntagged,
}

/// `meta` keys whose value the data plane knows exactly at every IP hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// `meta length`: skb->len, the bytes from the network header on (4 bytes, host order).
    Len,
    /// `meta protocol`: the ethertype (2 bytes, network order).
    Protocol,
    /// `meta nfproto` (1 byte): NFPROTO_IPV4 (2) or NFPROTO_IPV6 (10).
    NfProto,
    /// `meta l4proto` (1 byte), absent when unknown.
    L4Proto,
    /// `meta mark` (4 bytes, host order), as statements before this rule left it.
    Mark,
}

/// `ct` keys residual programs load, as nft_ct_get_eval() stores them (the BPF
/// program's values are in bpf/lib/ct_keys.h). `dreg` gets the value's bytes and zeros
/// to the end of its last 4-byte register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtKey {
    /// 4 bytes, host order: one `NF_CT_STATE_*` bit (no connection needed).
    State,
    /// 1 byte: `IP_CT_DIR_ORIGINAL` (0) or `IP_CT_DIR_REPLY` (1), of this packet.
    Direction,
    /// 4 bytes, host order.
    Status,
    Mark,
    /// Never loads here: only expected connections have one, and nothing makes them.
    Helper,
    /// 1 byte: the connection's NFPROTO_IPV4 / NFPROTO_IPV6.
    L3Protocol,
    /// The tuple's address: 4 bytes for IPv4 connections, 16 for IPv6 ones.
    Src,
    Dst,
    /// 1 byte: the connection's transport protocol.
    Protocol,
    /// 2 bytes, network order: ports, or the ICMP id (source) and type and code
    /// (destination); 0 for generically tracked protocols.
    ProtoSrc,
    ProtoDst,
    /// 16 bytes: always 0 (`ct label set` is refused).
    Labels,
    /// 2 bytes: always 0 (zone templates are refused).
    Zone,
    /// IPv4 / IPv6 addresses only: break on a connection of the other family.
    SrcIp,
    DstIp,
    SrcIp6,
    DstIp6,
    /// 8 bytes, host order: the connection's packets, bytes, or bytes per packet, of
    /// the direction `reply` says or (`both`) of both; 0 for a connection created
    /// before accounting was on (see [`crate::conntrack::Tracker::acct`]).
    Packets {
        both: bool,
    },
    Bytes {
        both: bool,
    },
    Avgpkt {
        both: bool,
    },
    /// 1 byte, 1, when the connection keeps counters (created while accounting was on);
    /// breaks otherwise, as xt_connbytes does without nf_conn_acct. Not an nft key.
    HasCounters,
}

impl CtKey {
    /// A key that reads the connection's counters: loading it turns accounting on
    /// for connections created from then on (nft_ct_get_init()).
    pub fn accounting(self) -> bool {
        matches!(
            self,
            CtKey::Packets { .. } | CtKey::Bytes { .. } | CtKey::Avgpkt { .. }
        )
    }

    /// Counters of both directions (no direction given).
    pub fn both(self) -> bool {
        matches!(
            self,
            CtKey::Packets { both: true }
                | CtKey::Bytes { both: true }
                | CtKey::Avgpkt { both: true }
        )
    }

    /// The key's number in `enum nft_ct_keys`.
    pub fn nft_key(self) -> u8 {
        match self {
            CtKey::State => 0,
            CtKey::Direction => 1,
            CtKey::Status => 2,
            CtKey::Mark => 3,
            CtKey::Helper => 6,
            CtKey::L3Protocol => 7,
            CtKey::Src => 8,
            CtKey::Dst => 9,
            CtKey::Protocol => 10,
            CtKey::ProtoSrc => 11,
            CtKey::ProtoDst => 12,
            CtKey::Labels => 13,
            CtKey::Zone => 17,
            CtKey::SrcIp => 19,
            CtKey::DstIp => 20,
            CtKey::SrcIp6 => 21,
            CtKey::DstIp6 => 22,
            CtKey::Packets { .. } => 14,
            CtKey::Bytes { .. } => 15,
            CtKey::Avgpkt { .. } => 16,
            // Outside nft's numbers (bpf/lib/ct_keys.h NS_CTK_HAS_COUNTERS).
            CtKey::HasCounters => 64,
        }
    }
}

/// `enum nft_cmp_ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// One operation. Registers (`sreg`, `dreg`) are byte offsets into the register file;
/// the builder checks that every access stays inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Insn {
    /// `len` packet bytes at `offset` from `base` into `dreg` (the rest of the last
    /// 4-byte register zeroed, as nft_payload_eval does).
    Payload {
        base: PayloadBase,
        offset: u16,
        len: u8,
        dreg: u8,
    },
    Meta {
        key: MetaKey,
        dreg: u8,
    },
    /// `exthdr` of IPv6: the extension header of type `header`, found as the kernel's
    /// ipv6_find_hdr() finds it (not in a later fragment). With `present`: 1 or 0 into
    /// the 4-byte register `dreg`; otherwise `len` bytes at `offset` in the header
    /// (break when there is no such header or bytes). Only on IPv6 packets.
    Ipv6Exthdr {
        header: u8,
        offset: u8,
        len: u8,
        dreg: u8,
        present: bool,
    },
    /// `exthdr` of TCP options (nft_exthdr_tcp_eval): the first option of `kind` in the
    /// TCP header of a TCP packet (not a later fragment). With `present`: 1 or 0;
    /// otherwise `len` bytes at `offset` in the option (break when there is none, or
    /// the option is cut short).
    TcpOption {
        kind: u8,
        offset: u8,
        len: u8,
        dreg: u8,
        present: bool,
    },
    /// `exthdr` of SCTP chunks (nft_exthdr_sctp_eval): the first chunk of type `kind`,
    /// walked from 12 bytes after nft_thoff() to the end of the packet (the whole
    /// packet, not only the header copy; a later fragment's payload too, as 6.18 does).
    /// With `present`: 1 or 0; otherwise `len` bytes at `offset` in the chunk (break
    /// when there is none, or the chunk is shorter than `offset + len` or runs past
    /// the packet).
    SctpChunk {
        kind: u8,
        offset: u8,
        len: u8,
        dreg: u8,
        present: bool,
    },
    /// `ct` key `key` of the packet's connection (of the reply tuple with `reply`)
    /// into `dreg`; `len` is the register length the kernel gives the expression.
    /// Breaks without a connection (but for `State`).
    Ct {
        key: CtKey,
        reply: bool,
        len: u8,
        dreg: u8,
    },
    /// xt_pkttype's packet type into the byte at `dreg` (zeros to the end of its
    /// register): skb->pkt_type, but for a looped-back copy (PACKET_LOOPBACK) of a
    /// packet sent to a group, PACKET_MULTICAST for IPv4 to a multicast address and for
    /// any IPv6, PACKET_BROADCAST otherwise (pkttype_mt()).
    XtPktType {
        dreg: u8,
    },
    /// xt_cpu: holds when the CPU processing the packet (smp_processor_id()) is `cpu`,
    /// `!= invert`. Only where TC runs on the CPU that ran the netfilter hook.
    XtCpu {
        cpu: u32,
        invert: bool,
    },
    /// xt_statistic's `--mode random`: holds when a random u32's low 31 bits are below
    /// `probability`, `!= invert`.
    XtRandom {
        probability: u32,
        invert: bool,
    },
    /// xt_cgroup's (and xt_owner's) first test, at TC egress only: the packet has a
    /// socket, skb->sk is a full one (sk_fullsock(): not a request or timewait
    /// socket) and it is of the namespace (net_eq()). An answer of the data plane's
    /// own reject is the kernel's answer: ICMP ones are sent by icmp_send()'s socket,
    /// TCP resets by nf_send_reset() without one. Breaks otherwise. The reference's
    /// packets, like BPF_PROG_TEST_RUN's, have no socket: it breaks there.
    XtFullSocket,
    /// xt_cgroup's `--cgroup`: [`Insn::XtFullSocket`] holds and that socket's net_cls
    /// classid is `classid`, `^ invert` (without such a socket it breaks either way).
    /// The reference's packets have no socket: it breaks there.
    XtCgroupClassid {
        classid: u32,
        invert: bool,
    },
    /// xt_socket's match at TC ingress (bpf/lib/xt_socket.h): nf_sk_lookup_slow_v4/v6()
    /// finds a socket for the packet (TCP or UDP by its ports, the quoted packet of an
    /// ICMP(v6) error) and, unless `nowildcard`, it is not a full socket bound to the
    /// any address. The reference's packets, like BPF_PROG_TEST_RUN's in a namespace
    /// without sockets, find none: it breaks there.
    XtSocket {
        nowildcard: bool,
    },
    /// xt_owner's owner_mt() at TC egress (bpf/lib/xt_owner.h): `match_flags` and
    /// `invert` are `XT_OWNER_*` bits, the ids host-order values of the initial user
    /// namespace. The reference's packets, like BPF_PROG_TEST_RUN's, have no socket:
    /// they take owner_mt()'s first branch, `(match ^ invert) == 0`.
    XtOwner {
        uid_min: u32,
        uid_max: u32,
        gid_min: u32,
        gid_max: u32,
        match_flags: u8,
        invert: u8,
    },
    /// nft_meta's `skuid` (`gid`: `skgid`) at TC egress: the socket file's fsuid/fsgid
    /// into `dreg` (4 bytes, host order); breaks without one (the reference always).
    SockUgid {
        gid: bool,
        dreg: u8,
    },
    /// `data` into `dreg`.
    Immediate {
        dreg: u8,
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`, over whole 4-byte registers (`mask`/`xor` are `len`
    /// bytes; the rest of the last register becomes 0).
    Bitwise {
        sreg: u8,
        dreg: u8,
        len: u8,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// Shift of one host-order 32-bit word (nft_bitwise NFT_BITWISE_LSHIFT/RSHIFT),
    /// `0 < by < 32`, `len <= 4`.
    Shift {
        sreg: u8,
        dreg: u8,
        len: u8,
        left: bool,
        by: u8,
    },
    /// Byte swap of each `size`-byte word of `len` bytes (hton and ntoh are the same on a
    /// little-endian host); `size` is 2, 4 or 8.
    Byteorder {
        sreg: u8,
        dreg: u8,
        len: u8,
        size: u8,
    },
    /// `memcmp(sreg, data, data.len())` against `op` (nft_cmp_eval).
    Cmp {
        sreg: u8,
        op: CmpOp,
        data: Vec<u8>,
    },
    /// `from <= sreg <= to` (memcmp order), or its negation.
    Range {
        sreg: u8,
        negated: bool,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// The `len` bytes at `sreg` are in one of the inclusive ranges (memcmp order, as
    /// the kernel's sets order keys; a single element is `(k, k)`), or not (`negated`).
    Lookup {
        sreg: u8,
        len: u8,
        negated: bool,
        elements: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// The `len` bytes at `sreg` or those at `sreg2` are in one of the ranges (as
    /// [`Insn::Lookup`]), `!= negated`: xt_multiport's `--ports` (ports_match_v1() with
    /// XT_MULTIPORT_EITHER: the source or the destination port).
    LookupEither {
        sreg: u8,
        sreg2: u8,
        len: u8,
        negated: bool,
        elements: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// xt_string's `--algo kmp` search of the datagram ([`XtString`]).
    XtString(XtString),
    /// xt_u32's tests of the datagram ([`XtU32`]).
    XtU32(XtU32),
    /// The operations after it see the packet as netdev-family chains do
    /// ([`netdev_view`]): first in the programs of rules in netdev chains.
    NetdevView,
    /// `len` bytes of the network header at `offset + scale * (its byte index & mask)`:
    /// a field whose place a length field of the header gives, read as ebtables'
    /// matches read it with skb_header_pointer() (ebt_ip's ports at `ihl * 4`,
    /// ebt_arp's addresses after `ar_hln`). Breaks when either is not in the packet.
    PayloadIndexed {
        index: u8,
        mask: u8,
        scale: u8,
        offset: u16,
        len: u8,
        dreg: u8,
    },
    /// ebt_ip6's upper-layer header: ipv6_skip_exthdr() from the end of the IPv6
    /// header ([`ebt::ipv6_skip_exthdr`]). With `nexthdr`, the header type it stops at
    /// (1 byte); otherwise `len` bytes at `offset` in that header. Breaks when the walk
    /// fails or the bytes are not in the packet.
    Ip6SkipExthdr {
        offset: u8,
        len: u8,
        dreg: u8,
        nexthdr: bool,
    },
    /// skb->pkt_type (1 byte, PACKET_*), as ebt_pkttype reads it.
    PktType {
        dreg: u8,
    },
    /// `len` bytes of the MAC header (the frame's own bytes) at `offset_set` when its
    /// byte `index` has a bit of `mask` set, else at `offset_clear`: ebt_802_3's type,
    /// which follows a one-byte (UI) or two-byte LLC control field. Breaks when the
    /// frame does not have the bytes.
    LinkChoice {
        index: u8,
        mask: u8,
        offset_set: u8,
        offset_clear: u8,
        len: u8,
        dreg: u8,
    },
    /// An xtables match's transport header (x_tables' `par->fragoff`, then
    /// skb_header_pointer of its header): breaks on a later fragment or without a
    /// transport header, and DROPS the packet ([`Outcome::Drops`], the match's
    /// "hotdrop") when fewer than `len` bytes of it are in the datagram.
    XtTransportHeader {
        len: u8,
    },
    /// xt_sctp's `--chunk-types` (match_packet()): see [`xt::SctpChunks`]. Needs the
    /// SCTP common header ([`Insn::XtTransportHeader`] of 12 before it).
    XtSctpChunks(xt::SctpChunks),
    /// xt_dccp's `--dccp-option` (dccp_find_option()): the option `option` is in the
    /// header's options, `!= invert`; drops the packet when the data offset is below
    /// the header's own length or the options run past the datagram. Needs the DCCP
    /// header ([`Insn::XtTransportHeader`] of 12 before it).
    XtDccpOption {
        option: u8,
        invert: bool,
    },
    /// xt_connlimit's tuple (nf_ct_get_tuplepr() for a packet without a connection):
    /// holds when the packet has one, DROPS the packet when the transport header is
    /// too short for one (see [`connlimit`]).
    XtConnlimitTuple,
    /// Drops the packet unless the `data.len()` register bytes at `sreg` are `data`
    /// (xt_mh's payload protocol, which must be IPPROTO_NONE).
    XtDropUnless {
        sreg: u8,
        data: Vec<u8>,
    },
    /// ip6t matches' ipv6_find_hdr() with a target: the extension header of type
    /// `header`, walked as the kernel walks (the whole packet, any number of headers).
    /// Breaks when it is not there (-ENOENT), drops the packet when an extension
    /// header is cut short (-EBADMSG) or the header has fewer than `offset + len`
    /// bytes (or, with `whole`, fewer than its length field says, ipv6_optlen():
    /// ip6t_hbh); without `drops` (ip6t_srh) those break instead. Otherwise the `len`
    /// bytes at `offset` in it into `dreg`. Only on IPv6 packets.
    XtIpv6Header {
        header: u8,
        len: u8,
        dreg: u8,
        whole: bool,
        offset: u8,
        drops: bool,
    },
    /// ip6t_hbh's `--hbh-opts` / `--dst-opts` (hbh_mt6()'s strict walk): the options
    /// of the header of type `header`, from its byte 2, are `opts` in order, each a
    /// (type, length) of which a length of 0xff takes any and Pad1 (type 0) has none;
    /// see [`ipv6_options_match`]. Breaks when the header is not there whole
    /// ([`Insn::XtIpv6Header`] with `whole` runs first and drops such packets).
    XtIpv6Options {
        header: u8,
        opts: Vec<(u8, u8)>,
    },
    /// ip6t_srh's `--srh-psid` / `--srh-nsid` (srh1_mt6()): the 16-byte segment
    /// address after (`next: false`, index segments left + 1) or before (`next`,
    /// segments left - 1) the current one in the routing header into `dreg`. Breaks
    /// when there is none (segments left is the last entry, or 0), the header is not
    /// there, or the address is past the packet's end. Only on IPv6 packets.
    XtSrhSegment {
        next: bool,
        dreg: u8,
    },
    /// ip6t_ipv6header (ipv6header_mt6()): the walk of the extension header chain
    /// from the fixed header, one bit per header type seen (MASK_HOPOPTS 0x80 ...
    /// MASK_PROTO 0x01, see [`ipv6_header_types`]), into the byte at `dreg` (its
    /// register's other bytes zeroed). Breaks where the kernel's walk returns false
    /// (fewer than 2 bytes left for the next header), and on non-IPv6 packets.
    XtIpv6HeaderTypes {
        dreg: u8,
    },
    /// Two packet fields compared with each other (ebt_arp's `--arp-gratuitous`: the
    /// sender and target IP addresses): holds when the `len` bytes at `sreg` equal the
    /// `len` bytes after them, `!= negated`.
    HalvesEq {
        sreg: u8,
        len: u8,
        negated: bool,
    },
    /// xt_rateest_mt(): `comparison` of the rates of the estimators `name1` and (with
    /// `MATCH_REL`) `name2` ([`Headers::rateest`]); bps1, pps1, bps2, pps2 are the
    /// four host-order u32s at `sreg` (16 bytes).
    XtRateest {
        sreg: u8,
        name1: [u8; 16],
        name2: [u8; 16],
        flags: u16,
        mode: u16,
    },
    /// recent_mt() on the namespace's list `list` (its key in `recent_lists`,
    /// bpf/lib/xt_recent.h; [`crate::recent`]): `check_set` as the match has it
    /// (without `--rttl`, which the compiler refuses), the source address or with
    /// `dest` the destination. Stateful: the reference cannot run it (it breaks
    /// there); ebpf/tests/xt_recent.rs checks the BPF side against a model of the
    /// kernel's lists.
    XtRecent {
        list: u64,
        check_set: u8,
        seconds: u32,
        hit_count: u32,
        invert: bool,
        dest: bool,
    },
    /// The type of the IPv4 address at `sreg` (4 bytes, network order) in the local
    /// routing table, as inet_dev_addr_type() with the device `dev` answers it
    /// ([`crate::addrtype`], [`Headers::addrtype`]): with `Test`, holds when `mask`
    /// has its bit (`1 << RTN_*`), `!= invert` (xt_addrtype's match_type()); with
    /// `Store`, the type goes to `dreg` as a host-order u32 (nft_fib's `type`).
    AddrType {
        sreg: u8,
        dev: AddrDev,
        out: AddrTypeOut,
    },
}

/// Which device an address type lookup checks the route against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrDev {
    None,
    /// The packet's input device.
    In,
    /// Its output device.
    Out,
}

/// What an address type lookup does with the type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrTypeOut {
    Test { mask: u16, invert: bool },
    Store { dreg: u8 },
}

/// What running a residual program on a packet gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran to its end: the rule's residual test holds.
    Holds,
    /// It stopped (NFT_BREAK): the test does not hold.
    Breaks,
    /// An xtables match dropped the packet (`par->hotdrop`, NF_DROP from nft_compat).
    Drops,
}

/// A rule's residual program.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResidualProgram {
    pub insns: Vec<Insn>,
}

/// The packet bytes residual programs read, with what the BPF parser knows of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Headers {
    /// The datagram from its network header to its end (`PacketFields::len` bytes, or
    /// fewer if the frame is cut short).
    pub network: Vec<u8>,
    /// Offset of the transport header in `network`, when the kernel would load from it
    /// (protocol known, not a later fragment).
    pub transport: Option<usize>,
    /// The ethertype (`meta protocol`).
    pub protocol: u16,
    /// skb->pkt_type (`PACKET_*` of linux/if_packet.h; 0, PACKET_HOST, where there is
    /// no skb).
    pub pkt_type: u8,
    /// The CPU processing the packet (smp_processor_id(), xt_cpu).
    pub cpu: u32,
    /// The random u32 the packet draws (xt_statistic `--mode random`); the BPF program
    /// draws its own (bpf_get_prandom_u32), so tests give probabilities that do not
    /// depend on it.
    pub random: u32,
    /// Offset of the network header in `network` (0 but in the netdev view).
    pub nh: usize,
    /// Netdev view: a later fragment whose transport offset is still set.
    pub later_fragment: bool,
    /// IP view: a later fragment's nft_thoff() (after the IPv4 header; 0, the network
    /// header, for IPv6), where the SCTP chunk walk starts though `transport` is unset.
    pub fragment_thoff: Option<usize>,
    /// Netdev view: `exthdr` walks any packet from byte 6 of its network header.
    pub exthdr_any: bool,
    /// What a netdev hook sees of the packet, for [`Insn::NetdevView`].
    pub netdev: Option<NetdevFrame>,
    /// The rates of the namespace's estimators by name (NUL-padded), as the BPF
    /// program finds them in `rateest_rates`; a name not here reads 0.
    pub rateest: Vec<([u8; 16], crate::rateest::Sample)>,
    /// The mirror of the local routing table the BPF program finds in `addrtype_v4`.
    pub addrtype: Vec<crate::addrtype::Route>,
    /// The packet's input and output devices (0: none), for [`Insn::AddrType`].
    pub iif: u32,
    pub oif: u32,
}

/// The packet at a netdev hook (nft_do_chain_netdev).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NetdevFrame {
    /// The whole frame, Ethernet header first.
    pub frame: Vec<u8>,
    /// skb->protocol.
    pub skb_protocol: u16,
    /// At egress skb->data is the Ethernet header, at ingress the network header.
    pub egress: bool,
    /// The skb's hardware-accelerated VLAN tag (vlan_proto, vlan_tci), which is not
    /// in `frame`.
    pub accel: Option<(u16, u16)>,
}

/// The link-layer bytes nft_payload_eval reads at `[offset, offset + len)`, or `None`
/// when it breaks. With an accelerated tag and a load past the MAC addresses the
/// kernel rebuilds the header (nft_payload_copy_vlan): addresses, the tag's protocol
/// and TCI, skb->protocol, then the frame from its byte 14 on.
pub fn link_bytes(nf: &NetdevFrame, offset: usize, len: usize, tagged: bool) -> Option<Vec<u8>> {
    let frame = &nf.frame;
    let end = offset + len;
    match nf.accel {
        Some((proto, tci)) if tagged && end > 12 => {
            // The rebuilt header needs the frame's 14 bytes, the rest its bytes.
            if (offset < 18 && frame.len() < ETH_HLEN) || (end > 18 && end - 4 > frame.len()) {
                return None;
            }
            let mut head = frame[..12].to_vec();
            head.extend_from_slice(&proto.to_be_bytes());
            head.extend_from_slice(&tci.to_be_bytes());
            head.extend_from_slice(&nf.skb_protocol.to_be_bytes());
            Some(
                (offset..end)
                    .map(|v| if v < 18 { head[v] } else { frame[v - 4] })
                    .collect(),
            )
        }
        _ => frame.get(offset..end).map(<[u8]>::to_vec),
    }
}

const ETH_HLEN: usize = 14;

mod ebt;
/// NFPROTO_NETDEV: `meta nfproto` at the netdev hooks.
pub const NFPROTO_NETDEV: u8 = 5;

/// The packet as nft_do_chain_netdev sets it up: headers from the frame untrimmed, the
/// transport protocol only when the IP header passes nft_set_pktinfo_ipv{4,6}_validate,
/// `meta length` = skb->len (with the Ethernet header at egress), nfproto NETDEV.
pub fn netdev_view(nf: &NetdevFrame, mark: u32) -> (Headers, MetaValues) {
    let frame = &nf.frame;
    let data = if nf.egress { 0 } else { ETH_HLEN };
    let mut h = Headers {
        network: frame.clone(),
        transport: None,
        protocol: nf.skb_protocol,
        // The skb's (bridge chains read it in this view): set by the caller.
        pkt_type: 0,
        cpu: 0,
        random: 0,
        nh: ETH_HLEN,
        later_fragment: false,
        fragment_thoff: None,
        exthdr_any: true,
        // Link-layer loads still read the frame.
        netdev: Some(nf.clone()),
        rateest: Vec::new(),
        // Not asked at netdev hooks (nft_fib and xt_addrtype are IP-family only).
        addrtype: Vec::new(),
        iif: 0,
        oif: 0,
    };
    let mut m = MetaValues {
        len: frame.len().saturating_sub(data) as u32,
        nfproto: NFPROTO_NETDEV,
        l4proto: None,
        mark,
        // No conntrack at netdev hooks.
        ct: Default::default(),
    };
    let ip = frame.get(ETH_HLEN..).unwrap_or(&[]);
    let net_len = ip.len();
    match nf.skb_protocol {
        0x0800 if ip.len() >= 20 => {
            let hlen = (ip[0] & 0xf) as usize * 4;
            let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            if ip[0] >> 4 == 4 && hlen >= 20 && net_len >= tot && tot >= hlen {
                m.l4proto = Some(ip[9]);
                h.transport = Some(ETH_HLEN + hlen);
                h.later_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0;
            }
        }
        0x86dd if ip.len() >= 40 && ip[0] >> 4 == 6 => {
            let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            if plen + 40 <= net_len {
                if let Some((proto, th, later)) = ipv6_transport(ip) {
                    m.l4proto = Some(proto);
                    // A later fragment leaves thoff 0: skb->data.
                    h.transport = Some(if later { data } else { ETH_HLEN + th });
                    h.later_fragment = later;
                }
            }
        }
        _ => {}
    }
    (h, m)
}

/// ipv6_find_hdr() without a target, with IP6_FH_F_AUTH (nf_tables' transport
/// protocol): (protocol, offset in the datagram, later fragment), or `None` (-ENOENT,
/// -EBADMSG, or more than [`MAX_EXTHDRS`] extension headers).
fn ipv6_transport(ip: &[u8]) -> Option<(u8, usize, bool)> {
    let mut next = ip[6];
    let mut start = 40usize;
    for _ in 0..MAX_EXTHDRS {
        if next == 51 {
            ip.get(start..start + 2)?;
            return Some((next, start, false));
        }
        if !ipv6_ext(next) {
            return Some((next, start, false));
        }
        let need = if matches!(next, 43 | 44) { 4 } else { 2 };
        let hp = ip.get(start..start + need)?;
        if next == 44 {
            if u16::from_be_bytes([hp[2], hp[3]]) & !7 != 0 {
                return (!ipv6_ext(hp[0])).then_some((hp[0], 0, true));
            }
            start += 8;
        } else {
            start += (hp[1] as usize + 1) * 8;
        }
        next = hp[0];
    }
    None
}

/// What a program reads besides header bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetaValues {
    pub len: u32,
    /// 0 for non-IP packets.
    pub nfproto: u8,
    pub l4proto: Option<u8>,
    pub mark: u32,
    /// What the packet's tracking says.
    pub ct: crate::fields::CtFields,
}

impl ResidualProgram {
    /// Whether the program loads a `ct` key (the namespace must then track).
    pub fn reads_ct(&self) -> bool {
        self.insns.iter().any(|i| matches!(i, Insn::Ct { .. }))
    }

    /// Whether the program runs to its end on this packet.
    pub fn holds(&self, headers: &Headers, meta: &MetaValues) -> bool {
        self.run(headers, meta) == Outcome::Holds
    }

    /// Whether an operation may drop the packet ([`Outcome::Drops`]).
    pub fn can_drop(&self) -> bool {
        self.insns.iter().any(Insn::can_drop)
    }

    /// Runs the program on this packet.
    pub fn run(&self, headers: &Headers, meta: &MetaValues) -> Outcome {
        let mut regs = [0u8; REGS_LEN];
        let mut view: Option<(Headers, MetaValues)> = None;
        for insn in &self.insns {
            if *insn == Insn::NetdevView {
                match &headers.netdev {
                    Some(nf) => {
                        let (mut h, m) = netdev_view(nf, meta.mark);
                        h.pkt_type = headers.pkt_type;
                        (h.cpu, h.random) = (headers.cpu, headers.random);
                        view = Some((h, m));
                    }
                    None => return Outcome::Breaks,
                }
                continue;
            }
            let (h, m) = view.as_ref().map_or((headers, meta), |(h, m)| (h, m));
            let outcome = match xt::step(insn, &mut regs, h).or_else(|| connlimit::step(insn, h, m))
            {
                Some(outcome) => outcome,
                None if step(insn, &mut regs, h, m) => Outcome::Holds,
                None => Outcome::Breaks,
            };
            if outcome != Outcome::Holds {
                return outcome;
            }
        }
        Outcome::Holds
    }

    /// The problem that keeps the BPF program from running this one, if any.
    pub fn check(&self) -> Result<(), String> {
        if self.insns.is_empty() || self.insns.len() > MAX_INSNS {
            return Err(format!(
                "{} operations (1 to {MAX_INSNS})",
                self.insns.len()
            ));
        }
        let within = |reg: u8, len: usize| reg as usize % 4 == 0 && reg as usize + len <= REGS_LEN;
        // A lookup's key of `len` bytes at `sreg`, and elements of that length.
        let lookup_fits = |sreg: u8, len: u8, elements: &[(Vec<u8>, Vec<u8>)]| {
            (1..=MAX_DATA as u8).contains(&len)
                && elements.len() <= MAX_ELEMS
                && elements
                    .iter()
                    .all(|(a, b)| a.len() == len as usize && b.len() == len as usize)
                && within(sreg, len as usize)
        };
        for insn in &self.insns {
            let ok = match insn {
                Insn::Payload {
                    offset, len, dreg, ..
                } => {
                    (1..=MAX_DATA as u8).contains(len)
                        && *offset as u32 + *len as u32 <= MAX_PAYLOAD_END
                        && within(*dreg, *len as usize)
                }
                Insn::Meta { dreg, .. } | Insn::XtPktType { dreg } => within(*dreg, 4),
                Insn::Ct { len, dreg, .. } => {
                    (1..=MAX_DATA as u8).contains(len) && within(*dreg, *len as usize)
                }
                Insn::Ipv6Exthdr {
                    len, dreg, present, ..
                }
                | Insn::TcpOption {
                    len, dreg, present, ..
                }
                | Insn::SctpChunk {
                    len, dreg, present, ..
                } => {
                    (1..=MAX_DATA as u8).contains(len)
                        && within(*dreg, if *present { 4 } else { *len as usize })
                }
                Insn::Immediate { dreg, data } => {
                    (1..=MAX_DATA).contains(&data.len()) && within(*dreg, data.len())
                }
                Insn::Bitwise {
                    sreg,
                    dreg,
                    len,
                    mask,
                    xor,
                } => {
                    (1..=MAX_DATA as u8).contains(len)
                        && mask.len() == *len as usize
                        && xor.len() == *len as usize
                        && within(*sreg, *len as usize)
                        && within(*dreg, *len as usize)
                }
                Insn::Shift {
                    sreg,
                    dreg,
                    len,
                    by,
                    ..
                } => {
                    // One word: nft_bitwise's carry across words reads registers it
                    // already wrote when sreg == dreg; not modelled.
                    (1..=4).contains(len)
                        && (1..32).contains(by)
                        && within(*sreg, *len as usize)
                        && within(*dreg, *len as usize)
                }
                Insn::Byteorder {
                    sreg,
                    dreg,
                    len,
                    size,
                } => {
                    // 8-byte words: only one (the kernel indexes its source in 4-byte
                    // steps for the second).
                    (matches!(size, 2 | 4) || (*size == 8 && *len == 8))
                        && (1..=MAX_DATA as u8).contains(len)
                        && *len % *size == 0
                        && within(*sreg, *len as usize)
                        && within(*dreg, *len as usize)
                }
                Insn::Cmp { sreg, data, .. } => {
                    (1..=MAX_DATA).contains(&data.len()) && within(*sreg, data.len())
                }
                Insn::Range { sreg, from, to, .. } => {
                    (1..=MAX_DATA).contains(&from.len())
                        && from.len() == to.len()
                        && within(*sreg, from.len())
                }
                Insn::Lookup {
                    sreg,
                    len,
                    elements,
                    ..
                } => lookup_fits(*sreg, *len, elements),
                Insn::LookupEither {
                    sreg,
                    sreg2,
                    len,
                    elements,
                    ..
                } => lookup_fits(*sreg, *len, elements) && within(*sreg2, *len as usize),
                Insn::XtString(s) => (1..=string::MAX_PATTERN).contains(&s.pattern.len()),
                Insn::XtU32(u) => u.fits(),
                Insn::NetdevView
                | Insn::XtFullSocket
                | Insn::XtCgroupClassid { .. }
                | Insn::XtSocket { .. }
                | Insn::XtOwner { .. } => true,
                Insn::SockUgid { dreg, .. } => within(*dreg, 4),
                Insn::PayloadIndexed {
                    mask,
                    scale,
                    offset,
                    len,
                    dreg,
                    ..
                } => {
                    (1..=MAX_DATA as u8).contains(len)
                        && *offset as u32 + *scale as u32 * *mask as u32 + *len as u32
                            <= ebt::MAX_INDEXED_END
                        && within(*dreg, *len as usize)
                }
                Insn::Ip6SkipExthdr {
                    len, dreg, nexthdr, ..
                } => {
                    (1..=MAX_DATA as u8).contains(len)
                        && within(*dreg, if *nexthdr { 1 } else { *len as usize })
                }
                Insn::PktType { dreg } => within(*dreg, 1),
                Insn::LinkChoice { len, dreg, .. } => {
                    (1..=MAX_DATA as u8).contains(len) && within(*dreg, *len as usize)
                }
                Insn::XtTransportHeader { len } => (1..=MAX_DATA as u8).contains(len),
                Insn::XtSctpChunks(c) => c.flags.len() <= xt::SCTP_MAX_FLAGS,
                Insn::XtDccpOption { .. }
                | Insn::XtCpu { .. }
                | Insn::XtRandom { .. }
                | Insn::XtConnlimitTuple => true,
                Insn::XtDropUnless { sreg, data } => {
                    (1..=MAX_DATA).contains(&data.len()) && within(*sreg, data.len())
                }
                Insn::XtIpv6Header {
                    len,
                    dreg,
                    whole,
                    offset,
                    ..
                } => {
                    (1..=MAX_DATA as u8).contains(len)
                        && (!*whole || *offset as usize + *len as usize >= 2)
                        && (*offset as usize + *len as usize) <= 255
                        && within(*dreg, *len as usize)
                }
                Insn::XtIpv6Options { opts, .. } => opts.len() <= xt::IPV6_MAX_OPTS,
                Insn::XtSrhSegment { dreg, .. } => within(*dreg, 16),
                Insn::XtIpv6HeaderTypes { dreg } => within(*dreg, 4),
                Insn::HalvesEq { sreg, len, .. } => {
                    (1..=MAX_DATA as u8).contains(len) && within(*sreg, 2 * *len as usize)
                }
                Insn::XtRecent {
                    check_set,
                    hit_count,
                    ..
                } => {
                    check_set & !crate::recent::CHECK_SET_BITS == 0
                        && *hit_count as usize <= crate::recent::MAX_STAMPS
                }
                // The C side takes the flags as one byte and the mode as `arg`.
                Insn::XtRateest {
                    sreg, flags, mode, ..
                } => within(*sreg, 16) && *flags <= 0xff && *mode <= 0xff,
                Insn::AddrType { sreg, out, .. } => {
                    within(*sreg, 4)
                        && match out {
                            AddrTypeOut::Store { dreg } => within(*dreg, 4),
                            AddrTypeOut::Test { .. } => true,
                        }
                }
            };
            if !ok {
                return Err(format!("operation out of bounds: {insn:?}"));
            }
        }
        Ok(())
    }
}

/// Runs one operation; false: the rule stops here (NFT_BREAK).
fn step(insn: &Insn, regs: &mut [u8; REGS_LEN], h: &Headers, m: &MetaValues) -> bool {
    match insn {
        Insn::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            let start = match base {
                PayloadBase::LinkLayer | PayloadBase::LinkLayerUntagged => {
                    let tagged = *base == PayloadBase::LinkLayer;
                    let Some(bytes) = h
                        .netdev
                        .as_ref()
                        .and_then(|nf| link_bytes(nf, *offset as usize, *len as usize, tagged))
                    else {
                        return false;
                    };
                    store(regs, *dreg, &bytes);
                    return true;
                }
                PayloadBase::Network => h.nh,
                // nft_payload_fast_eval reads later fragments at thoff, the slow
                // path breaks on them.
                PayloadBase::Transport if h.later_fragment && !fast_payload(*offset, *len) => {
                    return false
                }
                PayloadBase::Transport => match h.transport {
                    Some(t) => t,
                    None => return false,
                },
            } + *offset as usize;
            let Some(bytes) = h.network.get(start..start + *len as usize) else {
                return false;
            };
            store(regs, *dreg, bytes);
            true
        }
        Insn::Meta { key, dreg } => {
            let value: Vec<u8> = match key {
                MetaKey::Len => m.len.to_ne_bytes().to_vec(),
                MetaKey::Protocol => h.protocol.to_be_bytes().to_vec(),
                MetaKey::NfProto => vec![m.nfproto],
                MetaKey::L4Proto => match m.l4proto {
                    Some(p) => vec![p],
                    None => return false,
                },
                MetaKey::Mark => m.mark.to_ne_bytes().to_vec(),
            };
            store(regs, *dreg, &value);
            true
        }
        Insn::Ct {
            key, reply, dreg, ..
        } => match m.ct.key_value(*key, *reply) {
            Some(value) => {
                store(regs, *dreg, &value);
                true
            }
            None => false,
        },
        Insn::XtFullSocket
        | Insn::XtCgroupClassid { .. }
        | Insn::XtSocket { .. }
        | Insn::XtRecent { .. }
        | Insn::SockUgid { .. } => false,
        Insn::XtOwner {
            match_flags,
            invert,
            ..
        } => match_flags ^ invert == 0,
        Insn::XtPktType { dreg } => {
            const PACKET_BROADCAST: u8 = 1;
            const PACKET_MULTICAST: u8 = 2;
            const PACKET_LOOPBACK: u8 = 5;
            let t = match h.pkt_type {
                PACKET_LOOPBACK if m.nfproto == 10 => PACKET_MULTICAST,
                PACKET_LOOPBACK
                    if m.nfproto == 2
                        && h.network.len() >= h.nh + 20
                        && h.network[h.nh + 16] & 0xf0 == 0xe0 =>
                {
                    PACKET_MULTICAST
                }
                PACKET_LOOPBACK => PACKET_BROADCAST,
                t => t,
            };
            store(regs, *dreg, &[t]);
            true
        }
        Insn::Immediate { dreg, data } => {
            store(regs, *dreg, data);
            true
        }
        Insn::Ipv6Exthdr {
            header,
            offset,
            len,
            dreg,
            present,
        } => {
            let found = if h.protocol == 0x86dd || h.exthdr_any {
                ipv6_find_hdr(h.network.get(h.nh..).unwrap_or(&[]), *header).map(|f| f + h.nh)
            } else {
                None
            };
            exthdr_result(regs, &h.network, found, *offset, *len, *dreg, *present)
        }
        Insn::TcpOption {
            kind,
            offset,
            len,
            dreg,
            present,
        } => {
            let found = match (m.l4proto, h.transport) {
                (Some(6), Some(th)) if !h.later_fragment => {
                    tcp_option(&h.network, th, *kind, *offset, *len)
                }
                _ => None,
            };
            exthdr_result(regs, &h.network, found, 0, *len, *dreg, *present)
        }
        Insn::SctpChunk {
            kind,
            offset,
            len,
            dreg,
            present,
        } => {
            let chunk = match (m.l4proto, h.transport.or(h.fragment_thoff)) {
                (Some(132), Some(th)) => sctp_chunk(&h.network, th, *kind),
                _ => None,
            };
            // The kernel copies only from a chunk that has the bytes and lies within
            // the packet.
            let found = match chunk {
                Some((at, _)) if *present => Some(at),
                Some((at, clen))
                    if *offset as usize + *len as usize <= clen && at + clen <= h.network.len() =>
                {
                    Some(at + *offset as usize)
                }
                _ => None,
            };
            exthdr_result(regs, &h.network, found, 0, *len, *dreg, *present)
        }
        Insn::Bitwise {
            sreg,
            dreg,
            len,
            mask,
            xor,
        } => {
            let n = (*len as usize).div_ceil(4) * 4;
            let src: Vec<u8> = regs[*sreg as usize..*sreg as usize + n].to_vec();
            for i in 0..n {
                let mk = mask.get(i).copied().unwrap_or(0);
                let x = xor.get(i).copied().unwrap_or(0);
                regs[*dreg as usize + i] = (src[i] & mk) ^ x;
            }
            true
        }
        Insn::Shift {
            sreg,
            dreg,
            left,
            by,
            ..
        } => {
            // One host-order word ([`ResidualProgram::check`] refuses longer shifts).
            let o = *sreg as usize;
            let w = u32::from_ne_bytes(regs[o..o + 4].try_into().unwrap());
            let w = if *left { w << by } else { w >> by };
            let d = *dreg as usize;
            regs[d..d + 4].copy_from_slice(&w.to_ne_bytes());
            true
        }
        Insn::Byteorder {
            sreg,
            dreg,
            len,
            size,
        } => {
            let src: Vec<u8> = regs[*sreg as usize..*sreg as usize + *len as usize].to_vec();
            for (c, chunk) in src.chunks(*size as usize).enumerate() {
                for (j, b) in chunk.iter().rev().enumerate() {
                    regs[*dreg as usize + c * *size as usize + j] = *b;
                }
            }
            true
        }
        Insn::Cmp { sreg, op, data } => {
            let got = &regs[*sreg as usize..*sreg as usize + data.len()];
            let ord = got.cmp(data.as_slice());
            use std::cmp::Ordering::*;
            match op {
                CmpOp::Eq => ord == Equal,
                CmpOp::Neq => ord != Equal,
                CmpOp::Lt => ord == Less,
                CmpOp::Lte => ord != Greater,
                CmpOp::Gt => ord == Greater,
                CmpOp::Gte => ord != Less,
            }
        }
        Insn::Range {
            sreg,
            negated,
            from,
            to,
        } => {
            let got = &regs[*sreg as usize..*sreg as usize + from.len()];
            let inside = from.as_slice() <= got && got <= to.as_slice();
            inside != *negated
        }
        Insn::Lookup {
            sreg,
            len,
            negated,
            elements,
        } => {
            let got = &regs[*sreg as usize..*sreg as usize + *len as usize];
            let member = elements
                .iter()
                .any(|(lo, hi)| lo.as_slice() <= got && got <= hi.as_slice());
            member != *negated
        }
        Insn::XtString(s) => {
            // skb->data to skb->len.
            let net = h.network.get(h.nh..).unwrap_or(&[]);
            let len = (m.len as usize).min(net.len());
            s.holds(&net[..len])
        }
        Insn::XtU32(u) => {
            // skb->data to skb->len.
            let net = h.network.get(h.nh..).unwrap_or(&[]);
            let len = (m.len as usize).min(net.len());
            u.holds(&net[..len])
        }
        Insn::LookupEither {
            sreg,
            sreg2,
            len,
            negated,
            elements,
        } => {
            let member = |at: u8| {
                let got = &regs[at as usize..at as usize + *len as usize];
                elements
                    .iter()
                    .any(|(lo, hi)| lo.as_slice() <= got && got <= hi.as_slice())
            };
            (member(*sreg) || member(*sreg2)) != *negated
        }
        Insn::PayloadIndexed {
            index,
            mask,
            scale,
            offset,
            len,
            dreg,
        } => {
            let net = h.network.get(h.nh..).unwrap_or(&[]);
            let Some(b) = net.get(*index as usize) else {
                return false;
            };
            let start = *offset as usize + *scale as usize * (b & mask) as usize;
            store_loaded(regs, *dreg, net.get(start..start + *len as usize))
        }
        Insn::Ip6SkipExthdr {
            offset,
            len,
            dreg,
            nexthdr,
        } => {
            let net = h.network.get(h.nh..).unwrap_or(&[]);
            let Some((next, at)) = ebt::ipv6_skip_exthdr(net) else {
                return false;
            };
            if *nexthdr {
                store(regs, *dreg, &[next]);
                return true;
            }
            let start = at + *offset as usize;
            store_loaded(regs, *dreg, net.get(start..start + *len as usize))
        }
        Insn::PktType { dreg } => {
            store(regs, *dreg, &[h.pkt_type]);
            true
        }
        // cpu_mt(): `(info->cpu == smp_processor_id()) ^ info->invert`.
        Insn::XtCpu { cpu, invert } => (h.cpu == *cpu) != *invert,
        // statistic_mt(): the inversion flips when the draw falls below the probability.
        Insn::XtRandom {
            probability,
            invert,
        } => (h.random & 0x7fff_ffff < *probability) != *invert,
        Insn::LinkChoice {
            index,
            mask,
            offset_set,
            offset_clear,
            len,
            dreg,
        } => {
            let Some(frame) = h.netdev.as_ref().map(|nf| &nf.frame) else {
                return false;
            };
            let Some(b) = frame.get(*index as usize) else {
                return false;
            };
            let start = if b & mask != 0 {
                *offset_set
            } else {
                *offset_clear
            } as usize;
            store_loaded(regs, *dreg, frame.get(start..start + *len as usize))
        }
        Insn::HalvesEq { sreg, len, negated } => {
            let (s, n) = (*sreg as usize, *len as usize);
            (regs[s..s + n] == regs[s + n..s + 2 * n]) != *negated
        }
        Insn::AddrType { sreg, dev, out } => {
            let at = *sreg as usize;
            let addr: [u8; 4] = regs[at..at + 4].try_into().unwrap_or_default();
            let dev = match dev {
                AddrDev::None => 0,
                AddrDev::In => h.iif,
                AddrDev::Out => h.oif,
            };
            let t = crate::addrtype::addr_type(&h.addrtype, dev, addr);
            match out {
                AddrTypeOut::Test { mask, invert } => (t < 16 && mask & (1 << t) != 0) != *invert,
                AddrTypeOut::Store { dreg } => {
                    store(regs, *dreg, &(t as u32).to_ne_bytes());
                    true
                }
            }
        }
        Insn::XtRateest {
            sreg,
            name1,
            name2,
            flags,
            mode,
        } => {
            let word = |i: usize| {
                let at = *sreg as usize + 4 * i;
                u32::from_ne_bytes(regs[at..at + 4].try_into().unwrap_or_default())
            };
            let rate = |name: &[u8; 16]| {
                h.rateest
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or_else(Default::default, |(_, s)| *s)
            };
            let comparison = crate::rateest::Comparison {
                flags: *flags,
                mode: *mode,
                bps1: word(0),
                pps1: word(1),
                bps2: word(2),
                pps2: word(3),
            };
            comparison.holds(rate(name1), rate(name2))
        }
        // Handled by [`ResidualProgram::run`].
        Insn::NetdevView
        | Insn::XtTransportHeader { .. }
        | Insn::XtSctpChunks(_)
        | Insn::XtDccpOption { .. }
        | Insn::XtDropUnless { .. }
        | Insn::XtIpv6Header { .. }
        | Insn::XtIpv6Options { .. }
        | Insn::XtSrhSegment { .. }
        | Insn::XtIpv6HeaderTypes { .. }
        | Insn::XtConnlimitTuple => true,
    }
}

/// Whether nft_payload_select_ops picks the fast path: 1, 2 or 4 bytes, aligned.
fn fast_payload(offset: u16, len: u8) -> bool {
    matches!(len, 1 | 2 | 4) && offset % len as u16 == 0
}

/// The end of an `exthdr` load: `found` is where the bytes start (before `offset`).
fn exthdr_result(
    regs: &mut [u8; REGS_LEN],
    packet: &[u8],
    found: Option<usize>,
    offset: u8,
    len: u8,
    dreg: u8,
    present: bool,
) -> bool {
    if present {
        store(regs, dreg, &(found.is_some() as u32).to_ne_bytes());
        return true;
    }
    let Some(start) = found.map(|f| f + offset as usize) else {
        return false;
    };
    store_loaded(regs, dreg, packet.get(start..start + len as usize))
}

/// Stores bytes a load found; a load of bytes the packet does not have breaks.
fn store_loaded(regs: &mut [u8; REGS_LEN], dreg: u8, bytes: Option<&[u8]>) -> bool {
    match bytes {
        Some(bytes) => {
            store(regs, dreg, bytes);
            true
        }
        None => false,
    }
}

/// Extension headers ipv6_find_hdr() steps over.
fn ipv6_ext(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 51 | 60)
}

/// How many extension headers the walk follows (`NS_RES_MAX_EXTHDRS`, as the parser's
/// IPV6_MAX_EXT_HDRS): a header further down is not found.
pub const MAX_EXTHDRS: usize = 8;

/// Offset (in the datagram) of the IPv6 extension header `target`, as ipv6_find_hdr()
/// with a target: `None` when it is not there, cut short, or after a later fragment.
fn ipv6_find_hdr(ip: &[u8], target: u8) -> Option<usize> {
    // The kernel reads the next-header byte of ipv6_hdr() without a length check.
    if ip.len() < 7 {
        return None;
    }
    let mut nexthdr = ip[6];
    let mut start = 40usize;
    for _ in 0..MAX_EXTHDRS {
        let found = nexthdr == target;
        if !ipv6_ext(nexthdr) {
            return found.then_some(start);
        }
        let hp = ip.get(start..start + 2)?;
        if nexthdr == 43 {
            ip.get(start..start + 4)?;
        }
        let hdrlen = match nexthdr {
            44 => {
                let fo = ip.get(start + 2..start + 4)?;
                // A later fragment ends the walk, unless it is the header sought.
                if u16::from_be_bytes([fo[0], fo[1]]) & !7 != 0 && !found {
                    return None;
                }
                8
            }
            51 => (hp[1] as usize + 2) * 4,
            _ => (hp[1] as usize + 1) * 8,
        };
        if found {
            return Some(start);
        }
        nexthdr = hp[0];
        start += hdrlen;
    }
    None
}

/// Offset (in the datagram) of the TCP option `kind`, as nft_exthdr_tcp_eval() finds
/// it: `None` when there is none, or the option (or `offset + len` in it) is cut short.
fn tcp_option(ip: &[u8], th: usize, kind: u8, offset: u8, len: u8) -> Option<usize> {
    let tcp = ip.get(th..th + 20)?;
    let hdrlen = (tcp[12] >> 4) as usize * 4;
    if hdrlen < 20 {
        return None;
    }
    let opt = ip.get(th..th + hdrlen)?;
    let mut i = 20;
    while i + 1 < hdrlen {
        let optl = if opt[i] <= 1 || opt[i + 1] == 0 {
            1
        } else {
            opt[i + 1] as usize
        };
        if opt[i] == kind {
            if i + optl > hdrlen || len as usize + offset as usize > optl {
                return None;
            }
            return Some(th + i + offset as usize);
        }
        i += optl;
    }
    None
}

/// The first SCTP chunk of type `kind` after the common header at `th`, as
/// nft_exthdr_sctp_eval() walks them to the end of the packet: (offset, chunk length).
/// A chunk header cut short or of length 0 ends the walk; chunks are 4-byte aligned.
fn sctp_chunk(packet: &[u8], th: usize, kind: u8) -> Option<(usize, usize)> {
    let mut off = th + 12;
    loop {
        let hdr = packet.get(off..off + 4)?;
        let clen = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
        if clen == 0 {
            return None;
        }
        if hdr[0] == kind {
            return Some((off, clen));
        }
        off += (clen + 3) & !3;
        if off >= packet.len() {
            return None;
        }
    }
}

/// Stores a loaded value: its bytes, and zeros to the end of its last 4-byte register.
fn store(regs: &mut [u8; REGS_LEN], dreg: u8, value: &[u8]) {
    let d = dreg as usize;
    let end = d + value.len().div_ceil(4) * 4;
    regs[d..end].fill(0);
    regs[d..d + value.len()].copy_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xt_pkttype_of_looped_back_copies() {
        // (nfproto, first destination byte, type): skb->pkt_type PACKET_LOOPBACK.
        for (nfproto, daddr0, want) in [(2u8, 224u8, 2u8), (2, 10, 1), (10, 0xfe, 2)] {
            let mut network = vec![0u8; 40];
            network[0] = if nfproto == 2 { 0x45 } else { 0x60 };
            network[16] = daddr0;
            let holds = ResidualProgram {
                insns: vec![
                    Insn::XtPktType { dreg: 0 },
                    Insn::Cmp {
                        sreg: 0,
                        op: CmpOp::Eq,
                        data: vec![want],
                    },
                ],
            }
            .holds(
                &Headers {
                    network,
                    pkt_type: 5,
                    ..Default::default()
                },
                &MetaValues {
                    nfproto,
                    ..Default::default()
                },
            );
            assert!(holds, "nfproto {nfproto}, daddr {daddr0}: type {want}");
        }
    }

    fn run(insns: Vec<Insn>, network: &[u8], transport: Option<usize>) -> bool {
        ResidualProgram { insns }.holds(
            &Headers {
                network: network.to_vec(),
                transport,
                protocol: 0x0800,
                ..Default::default()
            },
            &MetaValues::default(),
        )
    }

    #[test]
    fn masked_flags_compare_like_memcmp() {
        // tcp flags & (syn | ack) == syn, on a SYN and on a SYN-ACK.
        let prog = |flags: u8| {
            let mut pkt = vec![0u8; 40];
            pkt[20 + 13] = flags;
            run(
                vec![
                    Insn::Payload {
                        base: PayloadBase::Transport,
                        offset: 13,
                        len: 1,
                        dreg: 0,
                    },
                    Insn::Bitwise {
                        sreg: 0,
                        dreg: 0,
                        len: 1,
                        mask: vec![0x12],
                        xor: vec![0],
                    },
                    Insn::Cmp {
                        sreg: 0,
                        op: CmpOp::Eq,
                        data: vec![0x02],
                    },
                ],
                &pkt,
                Some(20),
            )
        };
        assert!(prog(0x02));
        assert!(!prog(0x12));
    }

    #[test]
    fn loads_past_the_datagram_or_without_transport_header_break() {
        let load = |base, offset| Insn::Payload {
            base,
            offset,
            len: 2,
            dreg: 0,
        };
        assert!(!run(vec![load(PayloadBase::Network, 19)], &[0; 20], None));
        assert!(run(vec![load(PayloadBase::Network, 18)], &[0; 20], None));
        assert!(!run(vec![load(PayloadBase::Transport, 0)], &[0; 40], None));
    }

    #[test]
    fn shifts_work_on_the_host_order_word() {
        // 0x12 loaded as the first byte of a register is 0x00000012 on this host.
        let mut regs = [0u8; REGS_LEN];
        regs[0] = 0x12;
        let h = Headers::default();
        let m = MetaValues::default();
        let shift = |left| Insn::Shift {
            sreg: 0,
            dreg: 4,
            len: 4,
            left,
            by: 4,
        };
        assert!(step(&shift(true), &mut regs, &h, &m));
        assert_eq!(regs[4..8], 0x120u32.to_ne_bytes());
        assert!(step(&shift(false), &mut regs, &h, &m));
        assert_eq!(regs[4..8], 0x1u32.to_ne_bytes());
    }
}
