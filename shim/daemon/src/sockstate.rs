//! The netlink-level state of one emulated socket, and the kernel's rules for changing it
//! (`netlink_setsockopt`, `netlink_bind` in net/netlink/af_netlink.c).

use netlink_proto::consts::NFNLGRP_NFTRACE;
use netlink_proto::extra::*;

use crate::portid::AddrInUse;

/// NETLINK_NETFILTER has groups 1..=NFNLGRP_MAX (= NFNLGRP_NFTRACE).
const NFNLGRP_MAX: u32 = NFNLGRP_NFTRACE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetlinkSocket {
    pub portid: u32,
    /// Bound by `bind()` or by a first send (the kernel autobinds then); until then the
    /// port id handed out at Hello is only provisional and `bind()` may change it.
    pub bound: bool,
    /// Multicast memberships, bit `g - 1` for group `g`.
    pub groups: u32,
    pub ext_ack: bool,
    pub cap_ack: bool,
}

/// What a successful setsockopt asks the daemon to do besides recording it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockOptEffect {
    Recorded,
    /// SO_RCVBUF/SO_RCVBUFFORCE: mirror this size on the daemon's end.
    ReceiveBuffer(usize),
}

impl NetlinkSocket {
    pub fn new(portid: u32) -> Self {
        NetlinkSocket {
            portid,
            bound: false,
            groups: 0,
            ext_ack: false,
            cap_ack: false,
        }
    }

    /// Applies a setsockopt; `Err` carries a positive errno.
    pub fn setsockopt(
        &mut self,
        level: i32,
        name: i32,
        value: &[u8],
        net_admin: bool,
    ) -> Result<SockOptEffect, i32> {
        // As the kernel: an option shorter than an int reads as 0.
        let val = value
            .get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        match level {
            libc::SOL_SOCKET => Ok(match name {
                libc::SO_RCVBUF | libc::SO_RCVBUFFORCE => {
                    SockOptEffect::ReceiveBuffer(val as i32 as usize)
                }
                // Everything else is the application's own end's business.
                _ => SockOptEffect::Recorded,
            }),
            SOL_NETLINK => {
                match name {
                    NETLINK_ADD_MEMBERSHIP | NETLINK_DROP_MEMBERSHIP => {
                        // nfnetlink does not allow unprivileged listeners.
                        if !net_admin {
                            return Err(libc::EPERM);
                        }
                        if val == 0 || val > NFNLGRP_MAX {
                            return Err(libc::EINVAL);
                        }
                        let bit = 1u32 << (val - 1);
                        if name == NETLINK_ADD_MEMBERSHIP {
                            self.groups |= bit;
                        } else {
                            self.groups &= !bit;
                        }
                    }
                    NETLINK_EXT_ACK => self.ext_ack = val != 0,
                    NETLINK_CAP_ACK => self.cap_ack = val != 0,
                    // Accepted as the kernel accepts them; their effects are not emulated.
                    NETLINK_PKTINFO
                    | NETLINK_BROADCAST_ERROR
                    | NETLINK_NO_ENOBUFS
                    | NETLINK_LISTEN_ALL_NSID
                    | NETLINK_GET_STRICT_CHK => {}
                    _ => return Err(libc::ENOPROTOOPT),
                }
                Ok(SockOptEffect::Recorded)
            }
            _ => Err(libc::ENOPROTOOPT),
        }
    }

    /// Applies `bind(nl_pid = pid, nl_groups = groups)`; returns the port id. `claim`
    /// moves the namespace's port reservation from the provisional id to an explicit one.
    pub fn bind(
        &mut self,
        pid: u32,
        groups: u32,
        net_admin: bool,
        claim: impl FnOnce(u32, u32) -> Result<(), AddrInUse>,
    ) -> Result<u32, i32> {
        if groups != 0 && !net_admin {
            return Err(libc::EPERM);
        }
        let groups = groups & ((1u32 << NFNLGRP_MAX) - 1);
        if self.bound && pid != self.portid {
            return Err(libc::EINVAL);
        }
        if !self.bound && pid != 0 && pid != self.portid {
            claim(self.portid, pid).map_err(|_| libc::EADDRINUSE)?;
            self.portid = pid;
        }
        self.bound = true;
        self.groups = groups;
        Ok(self.portid)
    }

    /// The kernel autobinds an unbound socket on its first send.
    pub fn mark_sent(&mut self) {
        self.bound = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i32) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }

    #[test]
    fn memberships_need_net_admin_and_a_valid_group() {
        let mut s = NetlinkSocket::new(1);
        assert_eq!(
            s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &int(7), false),
            Err(libc::EPERM)
        );
        assert_eq!(
            s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &int(0), true),
            Err(libc::EINVAL)
        );
        assert_eq!(
            s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &int(10), true),
            Err(libc::EINVAL)
        );
        assert_eq!(
            s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &[7], true),
            Err(libc::EINVAL),
            "short value is 0"
        );
        s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &int(7), true)
            .unwrap();
        s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &int(9), true)
            .unwrap();
        assert_eq!(s.groups, (1 << 6) | (1 << 8));
        s.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, &int(9), true)
            .unwrap();
        assert_eq!(s.groups, 1 << 6);
    }

    #[test]
    fn ack_flags_and_buffers_are_recorded() {
        let mut s = NetlinkSocket::new(1);
        s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, &int(1), false)
            .unwrap();
        s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, &int(1), false)
            .unwrap();
        assert!(s.ext_ack && s.cap_ack);
        s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, &int(0), false)
            .unwrap();
        assert!(!s.cap_ack);
        assert_eq!(
            s.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &int(1 << 20), false),
            Ok(SockOptEffect::ReceiveBuffer(1 << 20))
        );
        assert_eq!(
            s.setsockopt(SOL_NETLINK, 99, &int(1), false),
            Err(libc::ENOPROTOOPT)
        );
        assert_eq!(s.setsockopt(6, 1, &int(1), false), Err(libc::ENOPROTOOPT));
    }

    #[test]
    fn bind_follows_the_kernel_rules() {
        // bind(0) on a fresh socket keeps the autobound id.
        let mut s = NetlinkSocket::new(100);
        assert_eq!(s.bind(0, 0, false, |_, _| unreachable!()), Ok(100));
        // Once bound, only the same id is accepted.
        assert_eq!(
            s.bind(0, 0, false, |_, _| unreachable!()),
            Err(libc::EINVAL)
        );
        assert_eq!(s.bind(100, 0, false, |_, _| unreachable!()), Ok(100));

        // An explicit id on an unbound socket moves the reservation.
        let mut s = NetlinkSocket::new(100);
        let mut moved = None;
        assert_eq!(
            s.bind(555, 0, false, |a, b| {
                moved = Some((a, b));
                Ok(())
            }),
            Ok(555)
        );
        assert_eq!(moved, Some((100, 555)));

        let mut s = NetlinkSocket::new(100);
        assert_eq!(
            s.bind(7, 0, false, |_, new| Err(AddrInUse(new))),
            Err(libc::EADDRINUSE)
        );
        assert!(!s.bound);

        // A socket that already sent is bound.
        let mut s = NetlinkSocket::new(100);
        s.mark_sent();
        assert_eq!(s.bind(555, 0, false, |_, _| Ok(())), Err(libc::EINVAL));
    }

    #[test]
    fn bind_groups_need_net_admin_and_replace_memberships() {
        let mut s = NetlinkSocket::new(1);
        assert_eq!(s.bind(0, 1 << 6, false, |_, _| Ok(())), Err(libc::EPERM));
        assert_eq!(s.bind(0, (1 << 6) | (1 << 20), true, |_, _| Ok(())), Ok(1));
        assert_eq!(s.groups, 1 << 6, "groups beyond NFNLGRP_MAX are ignored");
        assert_eq!(s.bind(1, 0, true, |_, _| Ok(())), Ok(1));
        assert_eq!(s.groups, 0);
    }
}
