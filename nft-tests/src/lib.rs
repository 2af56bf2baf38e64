//! Harness shared by the conformance runner and the integration tests.
