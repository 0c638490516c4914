//! enrp-server (work in progress; see the README and the open issues).
