//! The daemon: shared state, start-up (state restore, socket), the accept loop, shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;

use crate::caller::Home;
use crate::config::{choose_dataplane, DataplaneKind};
use crate::engine::NamespaceState;
use crate::namespace::{Registry, SessionId};
use crate::netns::NetnsId;
use crate::outqueue::Limits;
use crate::persist::StateStore;
use crate::seqpacket::SeqPacketListener;
use crate::session;

#[derive(Clone, Debug)]
pub struct Options {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub dataplane: DataplaneKind,
    pub limits: Limits,
}

#[derive(Clone, Copy, Debug)]
pub struct DataplaneInfo {
    pub name: &'static str,
    pub enforcing: bool,
}

/// What every session shares.
pub struct Daemon<S> {
    pub registry: Registry<S>,
    pub store: Arc<StateStore>,
    pub home: Arc<Home>,
    pub dataplane: DataplaneInfo,
    pub limits: Limits,
    next_session: AtomicU64,
}

impl<S> Daemon<S> {
    pub fn next_session_id(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}

pub struct Server<S> {
    daemon: Arc<Daemon<S>>,
    listener: SeqPacketListener,
}

/// Loads every namespace saved during this boot.
fn restore<S: NamespaceState>(store: &StateStore, registry: &Registry<S>) -> anyhow::Result<()> {
    let found = store
        .restore()
        .with_context(|| format!("reading state directory {}", store.dir().display()))?;
    for path in &found.discarded {
        tracing::info!(path = %path.display(), "discarded state from a previous boot");
    }
    for (path, why) in &found.unreadable {
        tracing::warn!(path = %path.display(), reason = %why, "state file ignored");
    }
    for saved in found.namespaces {
        match S::from_persisted(saved.state) {
            Ok(engine) => {
                tracing::info!(
                    netns_cookie = saved.cookie,
                    netns_inode = saved.inode,
                    genid = engine.genid(),
                    "restored namespace ruleset"
                );
                registry.restore(
                    NetnsId {
                        cookie: saved.cookie,
                        inode: saved.inode,
                    },
                    engine,
                );
            }
            Err(e) => {
                tracing::warn!(netns_cookie = saved.cookie, error = %e, "state file does not load; ignored")
            }
        }
    }
    Ok(())
}

impl<S: NamespaceState> Server<S> {
    /// Prepares everything and binds the socket; clients can connect when this returns.
    /// Must run inside a tokio runtime.
    pub fn start(opts: &Options) -> anyhow::Result<Self> {
        let dataplane = choose_dataplane(opts.dataplane)?;
        if !dataplane.enforcing {
            eprintln!(
                "nftshimd: dataplane={}: rules are stored and listed but NOT enforced",
                dataplane.name
            );
            tracing::warn!(
                dataplane = dataplane.name,
                "rules are stored and listed but NOT enforced"
            );
        }
        let home = Home::open().context("opening the daemon's own namespaces")?;
        let store = StateStore::open(&opts.state_dir)
            .with_context(|| format!("opening state directory {}", opts.state_dir.display()))?;
        let registry = Registry::new(dataplane.factory);
        restore(&store, &registry)?;
        let listener = SeqPacketListener::bind(&opts.socket)
            .with_context(|| format!("listening on {}", opts.socket.display()))?;
        tracing::info!(socket = %opts.socket.display(), state_dir = %opts.state_dir.display(), "nftshimd listening");
        Ok(Server {
            daemon: Arc::new(Daemon {
                registry,
                store: Arc::new(store),
                home: Arc::new(home),
                dataplane: DataplaneInfo {
                    name: dataplane.name,
                    enforcing: dataplane.enforcing,
                },
                limits: opts.limits,
                next_session: AtomicU64::new(1),
            }),
            listener,
        })
    }

    pub fn daemon(&self) -> &Arc<Daemon<S>> {
        &self.daemon
    }

    /// Serves until `shutdown` completes, then closes every session and removes the socket.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => {
                        sessions.spawn(session::serve(self.daemon.clone(), conn));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(finished) = sessions.join_next(), if !sessions.is_empty() => {
                    if let Err(e) = finished {
                        if e.is_panic() {
                            tracing::error!(error = %e, "a session panicked; the others carry on");
                        }
                    }
                }
            }
        }
        tracing::info!("shutting down");
        self.listener.remove_file();
        sessions.shutdown().await;
        // Every change acknowledged so far is on disk before the daemon goes.
        let store = self.daemon.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.flush()).await;
        Ok(())
    }
}
