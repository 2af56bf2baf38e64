//! Values shared by many messages: registers, verdicts, and `NFTA_DATA_*` nests
//! (`struct nft_data` on the wire: either a value or a verdict).

use crate::consts::*;
use crate::typed::{attr_enum, u32_enum, Nest, Str};

u32_enum! {
    /// An nf_tables register (`enum nft_registers`). `Reg1`..`Reg4` are the old
    /// 16-byte registers; `Reg32_00`.. the 4-byte ones.
    pub enum Register {
        Verdict = NFT_REG_VERDICT,
        Reg1 = NFT_REG_1,
        Reg2 = NFT_REG_2,
        Reg3 = NFT_REG_3,
        Reg4 = NFT_REG_4,
        Reg32_00 = NFT_REG32_00,
        Reg32_01 = NFT_REG32_01,
        Reg32_02 = NFT_REG32_02,
        Reg32_03 = NFT_REG32_03,
        Reg32_04 = NFT_REG32_04,
        Reg32_05 = NFT_REG32_05,
        Reg32_06 = NFT_REG32_06,
        Reg32_07 = NFT_REG32_07,
        Reg32_08 = NFT_REG32_08,
        Reg32_09 = NFT_REG32_09,
        Reg32_10 = NFT_REG32_10,
        Reg32_11 = NFT_REG32_11,
        Reg32_12 = NFT_REG32_12,
        Reg32_13 = NFT_REG32_13,
        Reg32_14 = NFT_REG32_14,
        Reg32_15 = NFT_REG32_15,
    }
}

impl Register {
    /// Byte offset of the register in the kernel's register file (`struct nft_regs`),
    /// as `nft_parse_register` maps it: the verdict and old registers are 16 bytes
    /// apart, the 32-bit ones 4 bytes apart. None for numbers the kernel rejects.
    pub fn byte_offset(self) -> Option<u32> {
        let n = u32::from(self);
        match n {
            0..=4 => Some(n * 16),
            8..=23 => Some(16 + (n - 8) * 4),
            _ => None,
        }
    }
}

u32_enum! {
    /// A verdict code (`NFTA_VERDICT_CODE`): the netfilter verdicts and nf_tables' own
    /// negative ones, sent as a big-endian `u32`.
    pub enum VerdictCode {
        Drop = NF_DROP,
        Accept = NF_ACCEPT,
        Stolen = NF_STOLEN,
        Queue = NF_QUEUE,
        Repeat = NF_REPEAT,
        Stop = NF_STOP,
        Continue = NFT_CONTINUE,
        Break = NFT_BREAK,
        Jump = NFT_JUMP,
        Goto = NFT_GOTO,
        Return = NFT_RETURN,
    }
}

attr_enum! {
    /// `NFTA_VERDICT_*`, inside `NFTA_DATA_VERDICT`, `NFTA_TRACE_VERDICT`.
    pub enum VerdictAttr {
        Code(VerdictCode) = NFTA_VERDICT_CODE,
        /// Target chain of a jump or goto.
        Chain(Str) = NFTA_VERDICT_CHAIN,
        /// Target chain by its id in the same batch.
        ChainId(u32) = NFTA_VERDICT_CHAIN_ID,
    }
}

attr_enum! {
    /// `NFTA_DATA_*`: what a `struct nft_data` nest holds.
    pub enum DataAttr {
        /// Raw value bytes (at most 64).
        Value(Vec<u8>) = NFTA_DATA_VALUE,
        Verdict(Nest<VerdictAttr>) = NFTA_DATA_VERDICT,
    }
}

/// A `struct nft_data` nest (cmp data, immediate data, set keys and data, ...).
pub type Data = Nest<DataAttr>;

impl Nest<DataAttr> {
    /// A value nest, flagged as libnftnl sends it.
    pub fn value(bytes: impl Into<Vec<u8>>) -> Self {
        Nest::new(vec![DataAttr::Value(bytes.into())])
    }
    /// A verdict nest, flagged as libnftnl sends it.
    pub fn verdict(code: VerdictCode, chain: Option<&str>) -> Self {
        let mut v = vec![VerdictAttr::Code(code)];
        if let Some(c) = chain {
            v.push(VerdictAttr::Chain(c.into()));
        }
        Nest::new(vec![DataAttr::Verdict(Nest::new(v))])
    }
    /// The value bytes, if this is a value.
    pub fn value_bytes(&self) -> Option<&[u8]> {
        self.items.iter().rev().find_map(|a| match a {
            DataAttr::Value(v) => Some(v.as_slice()),
            _ => None,
        })
    }
    /// The verdict attributes, if this is a verdict.
    pub fn verdict_attrs(&self) -> Option<&Nest<VerdictAttr>> {
        self.items.iter().rev().find_map(|a| match a {
            DataAttr::Verdict(v) => Some(v),
            _ => None,
        })
    }
    /// Verdict code and target chain name, if this is a verdict.
    pub fn verdict_code(&self) -> Option<VerdictCode> {
        self.verdict_attrs()?.code()
    }
}

impl Nest<VerdictAttr> {
    pub fn code(&self) -> Option<VerdictCode> {
        self.items.iter().rev().find_map(|a| match a {
            VerdictAttr::Code(c) => Some(*c),
            _ => None,
        })
    }
    pub fn chain(&self) -> Option<&str> {
        self.items.iter().rev().find_map(|a| match a {
            VerdictAttr::Chain(c) => Some(c.as_str()),
            _ => None,
        })
    }
    pub fn chain_id(&self) -> Option<u32> {
        self.items.iter().rev().find_map(|a| match a {
            VerdictAttr::ChainId(c) => Some(*c),
            _ => None,
        })
    }
}

attr_enum! {
    /// `NFTA_DEVICE_*`: one entry of a device list (`NFTA_HOOK_DEVS`,
    /// `NFTA_FLOWTABLE_HOOK_DEVS`).
    pub enum DeviceAttr {
        Name(Str) = NFTA_DEVICE_NAME,
        /// Matches every device whose name starts with this (kernel 6.16+).
        Prefix(Str) = crate::extra::NFTA_DEVICE_PREFIX,
    }
}

/// Device names of a device list, in order, skipping entries that are not names.
pub fn device_names(devs: &Nest<DeviceAttr>) -> Vec<&str> {
    devs.items
        .iter()
        .filter_map(|d| match d {
            DeviceAttr::Name(n) => Some(n.as_str()),
            _ => None,
        })
        .collect()
}

u32_enum! {
    /// Stateful object type (`NFT_OBJECT_*`): `NFTA_OBJ_TYPE`, `NFTA_SET_OBJ_TYPE`,
    /// `NFTA_OBJREF_IMM_TYPE`.
    pub enum ObjType {
        Unspec = NFT_OBJECT_UNSPEC,
        Counter = NFT_OBJECT_COUNTER,
        Quota = NFT_OBJECT_QUOTA,
        CtHelper = NFT_OBJECT_CT_HELPER,
        Limit = NFT_OBJECT_LIMIT,
        Connlimit = NFT_OBJECT_CONNLIMIT,
        Tunnel = NFT_OBJECT_TUNNEL,
        CtTimeout = NFT_OBJECT_CT_TIMEOUT,
        Secmark = NFT_OBJECT_SECMARK,
        CtExpect = NFT_OBJECT_CT_EXPECT,
        Synproxy = NFT_OBJECT_SYNPROXY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::testutil::hex;
    use crate::typed::{AttrItem, AttrValue};

    #[test]
    fn jump_verdict_roundtrip() {
        // NFTA_IMMEDIATE_DATA of `jump other`, as nft 1.0.6 sends it.
        let bytes = hex(&("1c00028018000280" /* data, verdict nests */
            .to_owned() + "08000100fffffffd" /* code: jump */ + "0a0002006f74686572000000"/* chain */));
        let a = crate::attr::parse_attrs(&bytes).unwrap().remove(0);
        let d = Data::decode(&a).unwrap();
        assert_eq!(d.verdict_code(), Some(VerdictCode::Jump));
        assert_eq!(d.verdict_attrs().unwrap().chain(), Some("other"));
        assert_eq!(d.encode(2), a);
    }

    #[test]
    fn registers_map_to_offsets() {
        assert_eq!(Register::from(1), Register::Reg1);
        assert_eq!(Register::Reg1.byte_offset(), Some(16));
        assert_eq!(Register::Reg32_00.byte_offset(), Some(16));
        assert_eq!(Register::Reg32_01.byte_offset(), Some(20));
        assert_eq!(Register::from(99), Register::Unknown(99));
        assert_eq!(Register::Unknown(99).byte_offset(), None);
        assert_eq!(VerdictCode::from(0xffff_fffd), VerdictCode::Jump);
        assert_eq!(u32::from(VerdictCode::Return), 0xffff_fffb);
    }

    #[test]
    fn odd_verdict_is_raw_but_exact() {
        // A queue verdict carries the queue number in the high bits.
        let a = Attr::u32_be(NFTA_VERDICT_CODE, 0x0005_0003);
        let v = VerdictAttr::from_attr(&a);
        assert_eq!(v, VerdictAttr::Code(VerdictCode::Unknown(0x0005_0003)));
        assert_eq!(v.to_attr(), a);
    }
}
