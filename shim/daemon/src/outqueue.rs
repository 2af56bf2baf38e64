//! Records waiting for room in an application's socket.
//!
//! The daemon writes netlink records into the application's end of a socketpair without
//! ever blocking. What does not fit waits here, in order, and is written as the
//! application reads (the kernel likewise continues a dump as the reader reads). Replies
//! are never dropped (a client that lets them pile up past `unicast_limit` is cut off);
//! multicast events are dropped past `multicast_limit`, like the kernel drops them when
//! a listener's receive buffer is full (ENOBUFS), and the overrun is recorded.

use std::collections::VecDeque;

/// What writing one record into the socket did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The socket is full; try again when it is writable.
    WouldBlock,
    /// The record can never fit the socket's buffer; it is dropped.
    TooBig,
    /// The application closed its end; nothing will ever be read again.
    PeerGone,
}

/// The sum of one [`OutQueue::flush`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub written: usize,
    /// Stopped because the socket is full (records remain queued).
    pub blocked: bool,
    pub dropped_too_big: usize,
    pub peer_gone: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Queued bytes beyond which the client is considered stuck.
    pub unicast_bytes: usize,
    /// Queued bytes beyond which multicast events are dropped.
    pub multicast_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            unicast_bytes: 512 << 20,
            multicast_bytes: 8 << 20,
        }
    }
}

/// A unicast reply did not fit under [`Limits::unicast_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("output queue overflow: {queued} bytes already waiting for the application")]
pub struct Overflow {
    pub queued: usize,
}

#[derive(Debug, Default)]
pub struct OutQueue {
    records: VecDeque<Vec<u8>>,
    bytes: usize,
    limits: Limits,
    overrun: bool,
    dropped_multicast: u64,
    peer_gone: bool,
}

impl OutQueue {
    pub fn new(limits: Limits) -> Self {
        OutQueue {
            limits,
            ..Default::default()
        }
    }

    pub fn push_unicast(&mut self, record: Vec<u8>) -> Result<(), Overflow> {
        if self.peer_gone {
            return Ok(());
        }
        if self.bytes + record.len() > self.limits.unicast_bytes {
            return Err(Overflow { queued: self.bytes });
        }
        self.push(record);
        Ok(())
    }

    /// Queues an event; returns false if it was dropped (and marks the overrun).
    pub fn push_multicast(&mut self, record: Vec<u8>) -> bool {
        if self.peer_gone {
            return true;
        }
        if self.bytes + record.len() > self.limits.multicast_bytes {
            self.overrun = true;
            self.dropped_multicast += 1;
            return false;
        }
        self.push(record);
        true
    }

    fn push(&mut self, record: Vec<u8>) {
        self.bytes += record.len();
        self.records.push_back(record);
    }

    /// Writes queued records in order until the socket is full or the queue is empty.
    pub fn flush(&mut self, mut write: impl FnMut(&[u8]) -> WriteOutcome) -> FlushReport {
        let mut report = FlushReport {
            peer_gone: self.peer_gone,
            ..Default::default()
        };
        while let Some(front) = self.records.front() {
            match write(front) {
                WriteOutcome::Written => report.written += 1,
                WriteOutcome::TooBig => report.dropped_too_big += 1,
                WriteOutcome::WouldBlock => {
                    report.blocked = true;
                    break;
                }
                WriteOutcome::PeerGone => {
                    self.peer_gone = true;
                    report.peer_gone = true;
                    self.records.clear();
                    self.bytes = 0;
                    break;
                }
            }
            if let Some(done) = self.records.pop_front() {
                self.bytes -= done.len();
            }
        }
        report
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn peer_gone(&self) -> bool {
        self.peer_gone
    }

    /// Whether events were dropped since the last call (the kernel's ENOBUFS state).
    pub fn take_overrun(&mut self) -> bool {
        std::mem::take(&mut self.overrun)
    }

    pub fn dropped_multicast(&self) -> u64 {
        self.dropped_multicast
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that accepts `room` records, then reports full.
    struct FakeSocket {
        room: usize,
        got: Vec<Vec<u8>>,
    }
    impl FakeSocket {
        fn write(&mut self, rec: &[u8]) -> WriteOutcome {
            if self.got.len() == self.room {
                return WriteOutcome::WouldBlock;
            }
            self.got.push(rec.to_vec());
            WriteOutcome::Written
        }
    }

    fn small() -> OutQueue {
        OutQueue::new(Limits {
            unicast_bytes: 100,
            multicast_bytes: 10,
        })
    }

    #[test]
    fn flush_writes_in_order_and_keeps_what_does_not_fit() {
        let mut q = small();
        for i in 0..5u8 {
            q.push_unicast(vec![i; 3]).unwrap();
        }
        let mut sock = FakeSocket {
            room: 2,
            got: vec![],
        };
        let r = q.flush(|rec| sock.write(rec));
        assert_eq!(r.written, 2);
        assert!(r.blocked);
        assert_eq!(sock.got, vec![vec![0; 3], vec![1; 3]]);
        assert_eq!((q.len(), q.bytes()), (3, 9));

        sock.room = 10;
        let r = q.flush(|rec| sock.write(rec));
        assert_eq!((r.written, r.blocked), (3, false));
        assert_eq!(
            sock.got.iter().map(|r| r[0]).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn unicast_over_the_limit_is_refused_not_dropped_silently() {
        let mut q = small();
        q.push_unicast(vec![0; 60]).unwrap();
        assert_eq!(q.push_unicast(vec![0; 41]), Err(Overflow { queued: 60 }));
        assert_eq!(q.len(), 1);
        q.push_unicast(vec![0; 40]).unwrap();
    }

    #[test]
    fn multicast_is_dropped_past_its_limit_and_marks_overrun() {
        let mut q = small();
        assert!(q.push_multicast(vec![0; 6]));
        assert!(!q.push_multicast(vec![0; 6]));
        assert_eq!(q.dropped_multicast(), 1);
        assert!(q.take_overrun());
        assert!(!q.take_overrun(), "overrun is reported once");
        // A backlog of replies also makes events overflow, as a full rcvbuf does.
        let mut q2 = small();
        q2.push_unicast(vec![0; 50]).unwrap();
        assert!(!q2.push_multicast(vec![1]));
    }

    #[test]
    fn too_big_records_are_dropped_and_the_rest_continues() {
        let mut q = small();
        q.push_unicast(vec![1; 9]).unwrap();
        q.push_unicast(vec![2; 1]).unwrap();
        let mut got = vec![];
        let r = q.flush(|rec| {
            if rec.len() > 4 {
                WriteOutcome::TooBig
            } else {
                got.push(rec.to_vec());
                WriteOutcome::Written
            }
        });
        assert_eq!((r.written, r.dropped_too_big), (1, 1));
        assert_eq!(got, vec![vec![2]]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_gone_peer_discards_everything_from_then_on() {
        let mut q = small();
        q.push_unicast(vec![1]).unwrap();
        q.push_unicast(vec![2]).unwrap();
        let r = q.flush(|_| WriteOutcome::PeerGone);
        assert!(r.peer_gone);
        assert!(q.is_empty());
        q.push_unicast(vec![3; 500]).unwrap();
        assert!(q.is_empty());
        assert!(q.peer_gone());
    }
}
