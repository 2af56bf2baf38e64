//! Which frames the bridge family's hooks see at which TC attach point, from the
//! namespace's bridges and ports (read from rtnetlink, [`super::Facts`]).
//!
//! The kernel (net/bridge/br_input.c, br_forward.c):
//! - prerouting runs in the bridge's rx handler (br_handle_frame) of a port, which
//!   TC ingress of the port precedes: a looped-back frame passes without a hook, an
//!   invalid source MAC is dropped, a link-local destination (01:80:c2:00:00:0X) is
//!   forwarded, dropped, passed up on the port through the input hook, or passed up
//!   without a hook, by X, STP and the group forward masks; other frames (and
//!   forwarded link-local ones) reach prerouting when the port's STP state is
//!   forwarding, learning or disabled, or MST is on.
//! - input runs for frames passed up to the bridge device (br_pass_frame_up), right
//!   before the bridge device receives them (its TC ingress), and for the link-local
//!   frames passed up on the port (at the port's TC ingress). Its input device is the
//!   port, which the bridge device's TC ingress does not know: rules of bridge input
//!   chains may not test it.
//! - forward, output and postrouting run per copy at the destination port, before
//!   it is sent there (TC egress of the port). Output is for the copies the bridge
//!   device sent (br_dev_xmit): its egress program marks what it accepts
//!   (`skb->cb`, `bpf/lib/bridge.h`) and the port's program takes the mark
//!   off. Forward is for unmarked copies that came in on a port of the same bridge
//!   (their `skb_iif`); postrouting for both. Other frames leaving a port are the
//!   port's own (its IPv6, packet sockets), which no bridge hook sees.
//!
//! Not modelled: MRP/CFM frame types registered on a bridge (they pass without a
//! hook) and the per-port BPDU filter flag (rtnetlink of this kernel's headers does
//! not report it); both need explicit configuration that nothing here sets.

use std::collections::BTreeMap;

use nftshim_ebpf::ir::bridge_classes;

/// A bridge device's settings that decide where link-local frames go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeDevice {
    /// STP on (kernel or user STP).
    pub stp: bool,
    /// IFLA_BR_GROUP_FWD_MASK.
    pub group_fwd_mask: u16,
    /// VLAN filtering with 802.1ad as the VLAN protocol: the bridge then forwards the
    /// 802.1ad-reserved groups (BR_GROUPFWD_8021AD).
    pub vlan_8021ad: bool,
    /// Multiple spanning trees: port states are per VLAN, checked after prerouting.
    pub mst: bool,
}

/// A bridge port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgePort {
    /// The bridge device's ifindex.
    pub bridge: u32,
    /// STP state (BR_STATE_*).
    pub state: u8,
    /// IFLA_BRPORT_GROUP_FWD_MASK.
    pub group_fwd_mask: u16,
}

const BR_STATE_DISABLED: u8 = 0;
const BR_STATE_LEARNING: u8 = 2;
const BR_STATE_FORWARDING: u8 = 3;
/// BR_GROUPFWD_8021AD.
const GROUPFWD_8021AD: u16 = 0xb801;

/// The frame classes ([`bridge_classes`]) the hooks see at a port's TC ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortClasses {
    pub prerouting: u32,
    /// Link-local frames passed up on the port through the input hook.
    pub input: u32,
}

/// What br_handle_frame does with each class of frame received on `port`.
pub fn port_classes(port: &BridgePort, bridge: &BridgeDevice) -> PortClasses {
    let required = if bridge.vlan_8021ad {
        GROUPFWD_8021AD
    } else {
        0
    };
    let port_mask = required | port.group_fwd_mask;
    let with_bridge = port_mask | bridge.group_fwd_mask;
    let reaches_prerouting = bridge.mst
        || matches!(
            port.state,
            BR_STATE_FORWARDING | BR_STATE_LEARNING | BR_STATE_DISABLED
        );
    let mut forwarded = 0u32;
    let mut input = 0u32;
    for x in 0u8..16 {
        let bit = 1u16 << x;
        match x {
            // Bridge group address (BPDUs): forwarded without STP, else passed up
            // without a hook.
            0x00 => {
                if !bridge.stp || port_mask & bit != 0 {
                    forwarded |= bridge_classes::link_local(x);
                }
            }
            // MAC control (pause): dropped.
            0x01 => {}
            // LLDP: forwarded or passed up without a hook.
            0x0e => {
                if with_bridge & bit != 0 {
                    forwarded |= bridge_classes::link_local(x);
                }
            }
            _ => {
                if with_bridge & bit != 0 {
                    forwarded |= bridge_classes::link_local(x);
                } else {
                    input |= bridge_classes::link_local(x);
                }
            }
        }
    }
    let prerouting = if reaches_prerouting {
        forwarded | bridge_classes::OTHER
    } else {
        0
    };
    PortClasses { prerouting, input }
}

/// The ports of `bridge`.
pub fn ports_of(ports: &BTreeMap<u32, BridgePort>, bridge: u32) -> Vec<u32> {
    ports
        .iter()
        .filter(|(_, p)| p.bridge == bridge)
        .map(|(&i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(xs: &[u8]) -> u32 {
        xs.iter().fold(0, |a, &x| a | bridge_classes::link_local(x))
    }

    #[test]
    fn default_bridge_forwards_bpdus_and_passes_up_other_groups() {
        let port = BridgePort {
            bridge: 3,
            state: BR_STATE_FORWARDING,
            group_fwd_mask: 0,
        };
        let c = port_classes(&port, &BridgeDevice::default());
        assert_eq!(c.prerouting, bridge_classes::OTHER | ll(&[0]));
        // Everything but 00 (forwarded), 01 (dropped) and 0e (no hook).
        let all: Vec<u8> = (2u8..16).filter(|&x| x != 0x0e).collect();
        assert_eq!(c.input, ll(&all));
    }

    #[test]
    fn stp_masks_and_blocking_state() {
        let bridge = BridgeDevice {
            stp: true,
            group_fwd_mask: 1 << 3 | 1 << 0x0e,
            ..BridgeDevice::default()
        };
        let mut port = BridgePort {
            bridge: 3,
            state: BR_STATE_LEARNING,
            group_fwd_mask: 1 << 5,
        };
        let c = port_classes(&port, &bridge);
        assert_eq!(c.prerouting, bridge_classes::OTHER | ll(&[3, 5, 0x0e]));
        assert_eq!(c.input & ll(&[0, 1, 3, 5, 0x0e]), 0);
        assert_ne!(c.input & ll(&[2]), 0);
        port.state = 4; // blocking: nothing reaches prerouting, input is unchanged
        let blocked = port_classes(&port, &bridge);
        assert_eq!(blocked.prerouting, 0);
        assert_eq!(blocked.input, c.input);
    }
}
