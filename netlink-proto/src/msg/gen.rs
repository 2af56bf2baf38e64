//! Generation: `NFT_MSG_GETGEN` and its `NFT_MSG_NEWGEN` answer (also sent as an event
//! after each commit).

use crate::consts::*;
use crate::typed::{attr_enum, attr_list, getters, Str};

attr_enum! {
    /// `NFTA_GEN_*`.
    pub enum GenAttr {
        Id(u32) = NFTA_GEN_ID,
        /// Pid of the process that made the last commit.
        ProcPid(u32) = NFTA_GEN_PROC_PID,
        ProcName(Str) = NFTA_GEN_PROC_NAME,
    }
}

attr_list! {
    /// A generation message's attributes.
    pub struct Gen(GenAttr);
}

impl Gen {
    getters! { GenAttr {
        id: Id => copy<u32>,
        proc_pid: ProcPid => copy<u32>,
        proc_name: ProcName => str,
    } }
}
