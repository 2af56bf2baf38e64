//! The namespaces the daemon serves: one nf_tables state, one port-id space and one set
//! of sessions per network namespace, keyed by namespace cookie.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use nftshim_engine::{Caller, Dataplane};

use crate::appsock::AppSocket;
use crate::engine::NamespaceState;
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
}

impl<S: NamespaceState> Registry<S> {
    pub fn new(make_dataplane: DataplaneFactory) -> Self {
        Registry {
            namespaces: Mutex::new(HashMap::new()),
            make_dataplane,
        }
    }

    /// Installs a namespace restored from the state directory and enforces its ruleset
    /// again.
    pub fn restore(&self, id: NetnsId, engine: S) {
        let mut dataplane = (self.make_dataplane)(id);
        engine.apply_to(dataplane.as_mut());
        let ns = Arc::new(Namespace::new(id, engine, dataplane, true));
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
            .or_insert_with(|| {
                Arc::new(Namespace::new(
                    id,
                    S::empty(),
                    (self.make_dataplane)(id),
                    false,
                ))
            })
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
