//! Flowtables: `NFT_MSG_{NEW,GET,DEL,DESTROY}FLOWTABLE`.

use crate::consts::*;
use crate::data::DeviceAttr;
use crate::typed::{attr_enum, attr_list, getters, Nest, Str};

attr_enum! {
    /// `NFTA_FLOWTABLE_HOOK_*`.
    pub enum FlowtableHookAttr {
        Num(u32) = NFTA_FLOWTABLE_HOOK_NUM,
        /// Signed, big-endian.
        Priority(i32) = NFTA_FLOWTABLE_HOOK_PRIORITY,
        Devs(Nest<DeviceAttr>) = NFTA_FLOWTABLE_HOOK_DEVS,
    }
}

impl Nest<FlowtableHookAttr> {
    getters! { FlowtableHookAttr in items {
        num: Num => copy<u32>,
        priority: Priority => copy<i32>,
        devs: Devs => nest<Nest<DeviceAttr>>,
    } }
}

attr_enum! {
    /// `NFTA_FLOWTABLE_*`.
    pub enum FlowtableAttr {
        Table(Str) = NFTA_FLOWTABLE_TABLE,
        Name(Str) = NFTA_FLOWTABLE_NAME,
        Hook(Nest<FlowtableHookAttr>) = NFTA_FLOWTABLE_HOOK,
        Use(u32) = NFTA_FLOWTABLE_USE,
        Handle(u64) = NFTA_FLOWTABLE_HANDLE,
        /// `NFT_FLOWTABLE_HW_OFFLOAD`, `NFT_FLOWTABLE_COUNTER`.
        Flags(u32) = NFTA_FLOWTABLE_FLAGS,
    }
}

attr_list! {
    /// A flowtable message's attributes.
    pub struct Flowtable(FlowtableAttr);
}

impl Flowtable {
    getters! { FlowtableAttr {
        table: Table => str,
        name: Name => str,
        hook: Hook => nest<Nest<FlowtableHookAttr>>,
        use_count: Use => copy<u32>,
        handle: Handle => copy<u64>,
        flags: Flags => copy<u32>,
    } }
}
