//! What the daemon needs from a namespace's nf_tables state. `nftshim_engine::Netns` is
//! the real one; tests plug in fakes to drive the plumbing (multicast, queueing,
//! persistence) while the engine is still a stub.

use std::time::Instant;

use nftshim_engine::ulog::packet::LogPacket;
use nftshim_engine::{Caller, Dataplane, Netns, Output};

/// Datagrams for nfnetlink_log listeners (port id, bytes), and when the next flush
/// timer fires.
pub type NflogOut = (Vec<(u32, Vec<u8>)>, Option<Instant>);

pub trait NamespaceState: Send + 'static {
    fn empty() -> Self
    where
        Self: Sized;
    /// Processes one datagram as the kernel's `nfnetlink_rcv` does.
    fn handle_datagram(
        &mut self,
        caller: &Caller,
        datagram: &[u8],
        dataplane: &mut dyn Dataplane,
    ) -> Output;
    /// The generation id: a change means the ruleset changed and must be persisted.
    fn genid(&self) -> u32;
    /// The socket `portid` closed: tables it owns (NFT_TABLE_F_OWNER) go with it, as
    /// `nft_rcv_nl_event` does. Returns whether the ruleset changed.
    fn socket_closed(&mut self, portid: u32, dataplane: &mut dyn Dataplane) -> bool {
        let _ = (portid, dataplane);
        false
    }
    /// The state as JSON, for the state directory (serialised directly: building a
    /// `serde_json::Value` first costs a large ruleset's commit far more).
    fn to_persisted(&self) -> Box<serde_json::value::RawValue>;
    /// The state as it is now, to be serialised later by the state writer.
    fn persist_snapshot(&self) -> crate::persist::Snapshot {
        let json = self.to_persisted();
        Box::new(move |w| w.write_all(json.get().as_bytes()))
    }
    fn from_persisted(value: serde_json::Value) -> Result<Self, String>
    where
        Self: Sized;
    /// Hands the committed ruleset to a data plane (after a restore). Fakes have none.
    fn apply_to(&self, dataplane: &mut dyn Dataplane) {
        let _ = dataplane;
    }
    /// nfnetlink_log: packets the data plane's rules logged to groups.
    fn log_packets(&mut self, packets: Vec<LogPacket>, now: Instant) -> NflogOut {
        let _ = (packets, now);
        (Vec::new(), None)
    }
    /// nfnetlink_log: the flush timers that fired by `now`.
    fn flush_nflog(&mut self, now: Instant) -> NflogOut {
        let _ = now;
        (Vec::new(), None)
    }
}

impl NamespaceState for Netns {
    fn empty() -> Self {
        Netns::new()
    }
    fn handle_datagram(
        &mut self,
        caller: &Caller,
        datagram: &[u8],
        dataplane: &mut dyn Dataplane,
    ) -> Output {
        Netns::handle_datagram(self, caller, datagram, dataplane)
    }
    fn genid(&self) -> u32 {
        Netns::genid(self)
    }
    fn socket_closed(&mut self, portid: u32, dataplane: &mut dyn Dataplane) -> bool {
        Netns::socket_closed(self, portid, dataplane)
    }
    fn to_persisted(&self) -> Box<serde_json::value::RawValue> {
        Netns::to_persisted_raw(self)
    }
    fn persist_snapshot(&self) -> crate::persist::Snapshot {
        // Rules are shared, not copied: cheaper than serialising here.
        let copy = self.clone();
        Box::new(move |w| serde_json::to_writer(w, &copy).map_err(std::io::Error::other))
    }
    fn from_persisted(value: serde_json::Value) -> Result<Self, String> {
        Netns::from_persisted(value).map_err(|e| e.to_string())
    }
    fn apply_to(&self, dataplane: &mut dyn Dataplane) {
        dataplane.apply(&self.view());
    }
    fn log_packets(&mut self, packets: Vec<LogPacket>, now: Instant) -> NflogOut {
        let nflog = self.nflog_mut();
        let mut out = Vec::new();
        for p in &packets {
            match nflog.payload_needed(p) {
                None => continue,
                // The program copies at most a perf sample's worth of the packet.
                Some(n) if n > p.data.len() => {
                    tracing::warn!(
                        group = p.group,
                        need = n,
                        have = p.data.len(),
                        "NFLOG packet larger than the data plane captured, not logged"
                    );
                    continue;
                }
                Some(_) => out.extend(nflog.log_packet(p, now)),
            }
        }
        (out, nflog.next_deadline())
    }
    fn flush_nflog(&mut self, now: Instant) -> NflogOut {
        let nflog = self.nflog_mut();
        let out = nflog.flush_expired(now);
        (out, nflog.next_deadline())
    }
}
