//! The namespaces the daemon serves: one nf_tables state, one port-id space and one set
//! of sessions per network namespace, keyed by namespace cookie.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use nftshim_engine::ulog::packet::LogPacket;
use nftshim_engine::{Caller, Dataplane};

use crate::appsock::AppSocket;
use crate::engine::{NamespaceState, NflogOut};
use crate::lock;
use crate::netns::NetnsId;
use crate::persist::StateStore;
use crate::portid::{AddrInUse, PortAllocator};

pub type SessionId = u64;

/// What other parts of the daemon see of a session: where its records go, and which
/// multicast groups it joined (bit `g - 1` for group `g`).
#[derive(Debug)]
pub struct SessionLink {
    pub socket: Arc<AppSocket>,
    pub groups: AtomicU32,
    /// The socket's port id (changes on `bind`): the kernel leaves the sender of an
    /// echoed change out of the multicast copy of it.
    pub portid: AtomicU32,
}

impl SessionLink {
    pub fn new(socket: Arc<AppSocket>, portid: u32) -> Self {
        SessionLink {
            socket,
            groups: AtomicU32::new(0),
            portid: AtomicU32::new(portid),
        }
    }

    pub fn is_member(&self, group: u32) -> bool {
        (1..=32).contains(&group) && self.groups.load(Ordering::Relaxed) & (1 << (group - 1)) != 0
    }
}

struct State<S> {
    engine: S,
    dataplane: Box<dyn Dataplane>,
}

pub struct Namespace<S> {
    pub id: NetnsId,
    /// Engine state; a std mutex, held on blocking threads, so a batch is atomic with
    /// respect to every other client of the namespace.
    state: Mutex<State<S>>,
    ports: Mutex<PortAllocator>,
    sessions: Mutex<HashMap<SessionId, Arc<SessionLink>>>,
    /// The ruleset was ever changed (or restored): keep the namespace when idle.
    has_state: AtomicBool,
}

impl<S: NamespaceState> Namespace<S> {
    fn new(id: NetnsId, engine: S, dataplane: Box<dyn Dataplane>, has_state: bool) -> Self {
        Namespace {
            id,
            state: Mutex::new(State { engine, dataplane }),
            ports: Mutex::new(PortAllocator::new()),
            sessions: Mutex::new(HashMap::new()),
            has_state: AtomicBool::new(has_state),
        }
    }

    /// Runs one datagram through the engine. Blocking: call from a blocking thread.
    /// Persists the state if the generation changed, and hands multicast records to
    /// member sessions while still holding the state lock, so every listener sees
    /// events in commit order. Returns the sender's unicast records.
    pub fn handle_datagram(
        &self,
        caller: &Caller,
        datagram: &[u8],
        store: &StateStore,
    ) -> Vec<Vec<u8>> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let before = st.engine.genid();
        let out = st
            .engine
            .handle_datagram(caller, datagram, st.dataplane.as_mut());
        let after = st.engine.genid();
        // A new generation, or state the kernel keeps without one (handles used up by an
        // aborted batch, counter resets...): either way it must survive a restart.
        if after != before || out.state_changed {
            self.save(st, store);
        }
        if !out.multicast.is_empty() {
            let members: Vec<Arc<SessionLink>> = lock(&self.sessions).values().cloned().collect();
            let skips = out
                .multicast_skip_portid
                .iter()
                .copied()
                .chain(std::iter::repeat(None));
            for ((group, record), skip) in out.multicast.into_iter().zip(skips) {
                let wanted = |m: &&Arc<SessionLink>| {
                    m.is_member(group) && Some(m.portid.load(Ordering::Relaxed)) != skip
                };
                for m in members.iter().filter(wanted) {
                    m.socket.send_multicast(record.clone());
                }
            }
        }
        out.unicast
    }

    /// Writes the namespace's state to the state directory; it must survive a restart.
    fn save(&self, st: &State<S>, store: &StateStore) {
        self.has_state.store(true, Ordering::Relaxed);
        store.save_later(
            self.id.cookie,
            self.id.inode,
            st.engine.genid(),
            st.engine.persist_snapshot(),
        );
    }

    /// A socket of this namespace closed: the engine drops the tables it owned.
    /// Blocking: call from a blocking thread.
    pub fn socket_closed(&self, portid: u32, store: &StateStore) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.engine.socket_closed(portid, st.dataplane.as_mut()) {
            self.save(st, store);
        }
    }

    /// nfnetlink_log: queues the messages of packets the data plane logged, and sends
    /// what must go now to the listeners' sockets (dropped, as the kernel's unicast
    /// to a full socket is, when a listener is too far behind). Returns the next flush
    /// timer.
    pub fn log_packets(&self, packets: Vec<LogPacket>) -> Option<Instant> {
        let out = lock(&self.state)
            .engine
            .log_packets(packets, Instant::now());
        self.deliver_nflog(out)
    }

    /// nfnetlink_log: the flush timers that fired.
    pub fn flush_nflog(&self) -> Option<Instant> {
        let out = lock(&self.state).engine.flush_nflog(Instant::now());
        self.deliver_nflog(out)
    }

    fn deliver_nflog(&self, (datagrams, next): NflogOut) -> Option<Instant> {
        if datagrams.is_empty() {
            return next;
        }
        let sessions: Vec<Arc<SessionLink>> = lock(&self.sessions).values().cloned().collect();
        for (portid, d) in datagrams {
            if let Some(s) = sessions
                .iter()
                .find(|s| s.portid.load(Ordering::Relaxed) == portid)
            {
                s.socket.send_multicast(d);
            }
        }
        next
    }

    /// Generation id (blocking: waits for a running batch).
    pub fn genid(&self) -> u32 {
        lock(&self.state).engine.genid()
    }

    pub fn dataplane_stats(&self) -> Option<nftshim_engine::DataplaneStats> {
        lock(&self.state).dataplane.stats()
    }

    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Re-binds a session to an explicit port id, as `bind()` does.
    pub fn rebind(&self, old: u32, new: u32) -> Result<(), AddrInUse> {
        let mut ports = lock(&self.ports);
        ports.claim(new)?;
        ports.release(old);
        Ok(())
    }
}

/// Makes the data plane of a namespace (it finds the namespace by its identity when,
/// and only while, it has something to enforce there).
pub type DataplaneFactory = Box<dyn Fn(NetnsId) -> Box<dyn Dataplane> + Send + Sync>;

pub struct Registry<S> {
    namespaces: Mutex<HashMap<u64, Arc<Namespace<S>>>>,
    make_dataplane: DataplaneFactory,
    /// To the nfnetlink_log thread: packets a namespace's data plane logged.
    nflog: Mutex<Sender<NflogWork<S>>>,
}

type NflogWork<S> = (Weak<Namespace<S>>, Vec<LogPacket>);

/// The nfnetlink_log thread: hands logged packets to their namespace's groups and
/// fires the flush timers. It ends when every sender (the registry's, the data
/// planes' sinks) is gone.
fn nflog_thread<S: NamespaceState>(rx: std::sync::mpsc::Receiver<NflogWork<S>>) {
    let mut timers: Vec<(Weak<Namespace<S>>, Instant)> = Vec::new();
    loop {
        let next = timers.iter().map(|(_, t)| *t).min();
        let work = match next {
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut set_timer = |ns: &Weak<Namespace<S>>, t: Option<Instant>| {
            timers.retain(|(w, _)| !w.ptr_eq(ns));
            if let Some(t) = t {
                timers.push((ns.clone(), t));
            }
        };
        match work {
            Ok((weak, packets)) => {
                if let Some(ns) = weak.upgrade() {
                    set_timer(&weak, ns.log_packets(packets));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let due: Vec<Weak<Namespace<S>>> = timers
            .iter()
            .filter(|(_, t)| *t <= now)
            .map(|(w, _)| w.clone())
            .collect();
        for weak in due {
            let next = weak.upgrade().and_then(|ns| ns.flush_nflog());
            timers.retain(|(w, _)| !w.ptr_eq(&weak));
            if let Some(t) = next {
                timers.push((weak, t));
            }
        }
    }
}

impl<S: NamespaceState> Registry<S> {
    pub fn new(make_dataplane: DataplaneFactory) -> Self {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("nftshim-nflog".into())
            .spawn(move || nflog_thread::<S>(rx))
            .expect("spawning the nfnetlink_log thread");
        Registry {
            namespaces: Mutex::new(HashMap::new()),
            make_dataplane,
            nflog: Mutex::new(tx),
        }
    }

    /// A namespace whose data plane hands logged packets to the nfnetlink_log thread.
    fn make_namespace(&self, id: NetnsId, engine: S, has_state: bool) -> Arc<Namespace<S>> {
        let tx = lock(&self.nflog).clone();
        Arc::new_cyclic(|weak: &Weak<Namespace<S>>| {
            let mut dataplane = (self.make_dataplane)(id);
            let weak = weak.clone();
            let tx = Mutex::new(tx);
            dataplane.set_nflog_sink(Arc::new(move |packets| {
                let _ = lock(&tx).send((weak.clone(), packets));
            }));
            if has_state {
                engine.apply_to(dataplane.as_mut());
            }
            Namespace::new(id, engine, dataplane, has_state)
        })
    }

    /// Installs a namespace restored from the state directory and enforces its ruleset
    /// again.
    pub fn restore(&self, id: NetnsId, engine: S) {
        let ns = self.make_namespace(id, engine, true);
        lock(&self.namespaces).insert(id.cookie, ns);
    }

    /// Adds a session to its namespace (created on first use) and autobinds its port id.
    pub fn join(
        &self,
        id: NetnsId,
        session: SessionId,
        link: Arc<SessionLink>,
        tgid: u32,
    ) -> (Arc<Namespace<S>>, u32) {
        let mut all = lock(&self.namespaces);
        let ns = all
            .entry(id.cookie)
            .or_insert_with(|| self.make_namespace(id, S::empty(), false))
            .clone();
        let portid = lock(&ns.ports).autobind(tgid);
        lock(&ns.sessions).insert(session, link);
        (ns, portid)
    }

    /// Removes a session. A namespace whose ruleset never changed is forgotten with its
    /// last session: there is nothing to keep, and the namespace may be gone for good.
    pub fn leave(&self, ns: &Arc<Namespace<S>>, session: SessionId, portid: u32) {
        let mut all = lock(&self.namespaces);
        lock(&ns.ports).release(portid);
        let mut sessions = lock(&ns.sessions);
        sessions.remove(&session);
        if sessions.is_empty() && !ns.has_state.load(Ordering::Relaxed) {
            all.remove(&ns.id.cookie);
        }
    }

    pub fn snapshot(&self) -> Vec<Arc<Namespace<S>>> {
        let mut v: Vec<_> = lock(&self.namespaces).values().cloned().collect();
        v.sort_by_key(|n| n.id.cookie);
        v
    }

    pub fn get(&self, cookie: u64) -> Option<Arc<Namespace<S>>> {
        lock(&self.namespaces).get(&cookie).cloned()
    }
}
