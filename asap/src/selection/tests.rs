//! Unit tests of the selection policies.
