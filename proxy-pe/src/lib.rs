//! proxy-pe (work in progress; see the README and the open issues).
