//! Netlink port ids of one network namespace, allocated as the kernel's `netlink_autobind`
//! does: the process's tgid for its first socket, then unique negative values counting
//! down from -4096. Clients compare `nlmsg_pid` of replies with what `getsockname` gave
//! them, so the numbers must be unique per namespace, and an explicit `bind` to a taken
//! id must fail with EADDRINUSE.

use std::collections::HashSet;

/// First id handed out once the tgid is taken (the kernel's `rover` starts here).
const ROVER_START: i32 = -4096;

#[derive(Debug)]
pub struct PortAllocator {
    taken: HashSet<u32>,
    rover: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("netlink port id {0} is already in use in this namespace")]
pub struct AddrInUse(pub u32);

impl Default for PortAllocator {
    fn default() -> Self {
        PortAllocator {
            taken: HashSet::new(),
            rover: ROVER_START,
        }
    }
}

impl PortAllocator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks an id for an unbound socket of the process whose tgid (as the process
    /// itself sees it) is `tgid`.
    pub fn autobind(&mut self, tgid: u32) -> u32 {
        if tgid != 0 && self.taken.insert(tgid) {
            return tgid;
        }
        loop {
            let candidate = self.rover as u32;
            // Wrap back to the start instead of running into the positive (tgid) range.
            self.rover = if self.rover == i32::MIN {
                ROVER_START
            } else {
                self.rover - 1
            };
            if self.taken.insert(candidate) {
                return candidate;
            }
        }
    }

    /// Takes an explicit id, as `bind()` with a non-zero `nl_pid` does.
    pub fn claim(&mut self, portid: u32) -> Result<(), AddrInUse> {
        if portid == 0 || !self.taken.insert(portid) {
            return Err(AddrInUse(portid));
        }
        Ok(())
    }

    pub fn release(&mut self, portid: u32) {
        self.taken.remove(&portid);
    }

    pub fn is_taken(&self, portid: u32) -> bool {
        self.taken.contains(&portid)
    }

    pub fn len(&self) -> usize {
        self.taken.len()
    }

    pub fn is_empty(&self) -> bool {
        self.taken.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_socket_of_a_process_gets_its_tgid() {
        let mut p = PortAllocator::new();
        assert_eq!(p.autobind(1234), 1234);
        assert_eq!(p.autobind(99), 99);
    }

    #[test]
    fn later_sockets_count_down_from_minus_4096() {
        let mut p = PortAllocator::new();
        assert_eq!(p.autobind(1234), 1234);
        assert_eq!(p.autobind(1234) as i32, -4096);
        assert_eq!(p.autobind(1234) as i32, -4097);
        // Another process whose tgid is free still gets its tgid.
        assert_eq!(p.autobind(555), 555);
    }

    #[test]
    fn released_ids_are_reused_and_taken_ones_skipped() {
        let mut p = PortAllocator::new();
        assert_eq!(p.autobind(10), 10);
        p.release(10);
        assert!(!p.is_taken(10));
        assert_eq!(p.autobind(10), 10);
        p.claim(-4096i32 as u32).unwrap();
        assert_eq!(
            p.autobind(10) as i32,
            -4097,
            "skips the explicitly bound -4096"
        );
    }

    #[test]
    fn explicit_bind_collides_with_autobind() {
        let mut p = PortAllocator::new();
        p.autobind(42);
        assert_eq!(p.claim(42), Err(AddrInUse(42)));
        assert_eq!(p.claim(43), Ok(()));
        assert_eq!(p.claim(43), Err(AddrInUse(43)));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn rover_wraps_without_reaching_positive_ids() {
        let mut p = PortAllocator::new();
        p.rover = i32::MIN;
        assert_eq!(p.autobind(0) as i32, i32::MIN);
        assert_eq!(p.autobind(0) as i32, ROVER_START);
    }
}
