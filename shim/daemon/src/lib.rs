//! nftshimd: speaks the kernel's side of nf_tables netlink.
