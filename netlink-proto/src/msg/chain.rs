//! Chains: `NFT_MSG_{NEW,GET,DEL,DESTROY}CHAIN`, with the base chain hook.

use crate::consts::*;
use crate::data::{DeviceAttr, VerdictCode};
use crate::expr::counter::CounterAttr;
use crate::typed::{attr_enum, attr_list, getters, Nest, Str};

attr_enum! {
    /// `NFTA_HOOK_*`: where a base chain hooks in.
    pub enum HookAttr {
        Hooknum(u32) = NFTA_HOOK_HOOKNUM,
        /// Signed, big-endian.
        Priority(i32) = NFTA_HOOK_PRIORITY,
        /// The one device of a netdev chain.
        Dev(Str) = NFTA_HOOK_DEV,
        /// Several devices (`devices = { a, b }`).
        Devs(Nest<DeviceAttr>) = NFTA_HOOK_DEVS,
    }
}

/// The hook nest of a base chain.
pub type Hook = Nest<HookAttr>;

impl Nest<HookAttr> {
    getters! { HookAttr in items {
        hooknum: Hooknum => copy<u32>,
        priority: Priority => copy<i32>,
        dev: Dev => str,
        devs: Devs => nest<Nest<DeviceAttr>>,
    } }
}

attr_enum! {
    /// `NFTA_CHAIN_*`.
    pub enum ChainAttr {
        Table(Str) = NFTA_CHAIN_TABLE,
        Handle(u64) = NFTA_CHAIN_HANDLE,
        Name(Str) = NFTA_CHAIN_NAME,
        Hook(Hook) = NFTA_CHAIN_HOOK,
        /// Base chain policy: `Accept` or `Drop`.
        Policy(VerdictCode) = NFTA_CHAIN_POLICY,
        /// Number of references (jumps, rules) in dumps.
        Use(u32) = NFTA_CHAIN_USE,
        /// `filter`, `nat`, `route`.
        Type(Str) = NFTA_CHAIN_TYPE,
        Counters(Nest<CounterAttr>) = NFTA_CHAIN_COUNTERS,
        /// `NFT_CHAIN_BASE`, `NFT_CHAIN_HW_OFFLOAD`, `NFT_CHAIN_BINDING`.
        Flags(u32) = NFTA_CHAIN_FLAGS,
        /// Batch-local id, referenced by rules and jumps in the same batch.
        Id(u32) = NFTA_CHAIN_ID,
        Userdata(Vec<u8>) = NFTA_CHAIN_USERDATA,
    }
}

attr_list! {
    /// A chain message's attributes.
    pub struct Chain(ChainAttr);
}

impl Chain {
    getters! { ChainAttr {
        table: Table => str,
        handle: Handle => copy<u64>,
        name: Name => str,
        hook: Hook => nest<Hook>,
        policy: Policy => copy<VerdictCode>,
        use_count: Use => copy<u32>,
        chain_type: Type => str,
        counters: Counters => nest<Nest<CounterAttr>>,
        flags: Flags => copy<u32>,
        id: Id => copy<u32>,
        userdata: Userdata => bytes,
    } }
}
