//! `fib`: Looks the packet up in the routing table.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// What the lookup returns (`enum nft_fib_result`).
    pub enum FibResult {
        Unspec = NFT_FIB_RESULT_UNSPEC,
        Oif = NFT_FIB_RESULT_OIF,
        Oifname = NFT_FIB_RESULT_OIFNAME,
        Addrtype = NFT_FIB_RESULT_ADDRTYPE,
    }
}

attr_enum! {
    /// `fib` expression attributes.
    pub enum FibAttr {
        Dreg(Register) = NFTA_FIB_DREG,
        Result(FibResult) = NFTA_FIB_RESULT,
        Flags(u32) = NFTA_FIB_FLAGS,
    }
}

expr_struct! {
    /// The `fib` expression.
    pub struct Fib(FibAttr) = "fib";
}

impl Fib {
    getters! { FibAttr {
        dreg: Dreg => copy<Register>,
        result: Result => copy<FibResult>,
        flags: Flags => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn oif_by_saddr_and_iif() {
        // nft add rule ip test-ip prerouting 'fib saddr . iif oif ne 0'
        let e = elem(
            "2800018008000100666962001c000280080003000000000908000200000000010800010000000001",
        );
        let Expr::Fib(f) = &e.expr else { panic!() };
        assert_eq!(
            f.flags(),
            Some(u32::from(NFTA_FIB_F_SADDR | NFTA_FIB_F_IIF))
        );
        assert_eq!(
            (f.result(), f.dreg()),
            (Some(FibResult::Oif), Some(Register::Reg1))
        );
    }
}
