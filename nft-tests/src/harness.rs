//! Building blocks for integration tests (see `nft-tests/tests/`).
