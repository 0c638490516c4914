//! Loader for `pcap-fixtures/manifest.toml`: the reference captures, what they hold
//! according to tshark, and what must hold for them. Written by
//! `pcap-fixtures/make_manifest.py`; read by the capture and conformance tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CaptureOptions, Carrier, Proto};

/// Errors loading the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// File name.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid manifest.
    #[error("{file}: {source}")]
    Toml {
        /// File name.
        file: String,
        /// The parse error.
        #[source]
        source: toml::de::Error,
    },
    /// A count key is not a message type number.
    #[error("{file}: {path}: message type key {key:?} is not a number 0-255")]
    BadTypeKey {
        /// File name.
        file: String,
        /// Fixture path.
        path: String,
        /// The key.
        key: String,
    },
}

/// Which encoding generation a capture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Era {
    /// RFC 5351–5356 encoding.
    Rfc,
    /// Pre-RFC drafts of January 2007 (other parameter type codes, 8-bit policy types).
    Draft2007,
}

/// Message counts per protocol: type byte (as a TOML key) → count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Counts {
    /// ASAP message counts by type.
    #[serde(default)]
    pub asap: BTreeMap<String, u64>,
    /// ENRP message counts by type.
    #[serde(default)]
    pub enrp: BTreeMap<String, u64>,
}

impl Counts {
    /// The counts keyed by (protocol, type byte), zero counts left out.
    pub fn by_type(&self) -> Result<BTreeMap<(Proto, u8), u64>, String> {
        let mut out = BTreeMap::new();
        for (proto, map) in [(Proto::Asap, &self.asap), (Proto::Enrp, &self.enrp)] {
            for (k, v) in map {
                let t: u8 = k.parse().map_err(|_| k.clone())?;
                if *v > 0 {
                    out.insert((proto, t), *v);
                }
            }
        }
        Ok(out)
    }

    /// Total messages.
    pub fn total(&self) -> u64 {
        self.asap.values().chain(self.enrp.values()).sum()
    }
}

/// The raw bytes of one message as tshark showed them (`-T json -x`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OracleMessage {
    /// 1-based frame number.
    pub frame: u64,
    /// Protocol tshark dissected it as.
    pub proto: Proto,
    /// Lower-case hex of the bytes.
    pub hex: String,
}

impl OracleMessage {
    /// The bytes, or `None` if `hex` is not valid hex.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let h = self.hex.as_bytes();
        if h.len() & 1 == 1 {
            return None;
        }
        h.chunks(2)
            .map(|p| {
                std::str::from_utf8(p)
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok())
            })
            .collect()
    }
}

/// One reference capture.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Fixture {
    /// Path relative to the fixtures folder.
    pub path: String,
    /// What it shows.
    pub description: String,
    /// Where it comes from.
    pub origin: String,
    /// Encoding generation.
    pub era: Era,
    /// Carriers of its RSerPool messages.
    #[serde(default)]
    pub carriers: Vec<Carrier>,
    /// UDP ports to treat as SCTP over UDP in addition to 9899.
    #[serde(default)]
    pub sctp_over_udp_ports: Vec<u16>,
    /// Extra tshark arguments needed to dissect it (paths relative to the fixtures folder).
    #[serde(default)]
    pub tshark_args: Vec<String>,
    /// What must hold (free text, for people and the conformance test's messages).
    #[serde(default)]
    pub notes: Vec<String>,
    /// tshark's message count per carrier.
    #[serde(default)]
    pub tshark_by_carrier: BTreeMap<Carrier, u64>,
    /// tshark's message counts.
    pub tshark: Counts,
    /// The reader's counts where they must differ from tshark's.
    #[serde(default)]
    pub expected: Option<Counts>,
    /// tshark's bytes of each message it showed.
    #[serde(default)]
    pub oracle: Vec<OracleMessage>,
}

impl Fixture {
    /// The counts the capture reader must produce: `expected` where given, else tshark's.
    pub fn expected_counts(&self) -> &Counts {
        self.expected.as_ref().unwrap_or(&self.tshark)
    }

    /// Whether the reader must agree with tshark on every message.
    pub fn agrees_with_tshark(&self) -> bool {
        self.expected.is_none()
    }

    /// Reader options for this capture.
    pub fn capture_options(&self) -> CaptureOptions {
        let mut o = CaptureOptions::default();
        o.sctp_over_udp_ports
            .extend_from_slice(&self.sctp_over_udp_ports);
        o
    }
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    /// tshark version the counts come from.
    pub tshark_version: String,
    /// Every capture.
    #[serde(rename = "file")]
    pub files: Vec<Fixture>,
    /// Folder the manifest was loaded from (fixture paths are relative to it).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Manifest {
    /// The fixtures folder of this repository (`<workspace>/pcap-fixtures`).
    pub fn default_dir() -> PathBuf {
        // This crate sits at `<workspace>/asap/capture`.
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("..")
            .join("pcap-fixtures")
    }

    /// Load `manifest.toml` from the repository's fixtures folder.
    pub fn load_default() -> Result<Manifest, ManifestError> {
        Manifest::load(Manifest::default_dir().join("manifest.toml"))
    }

    /// Load a manifest file; fixture paths are taken relative to its folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        let path = path.as_ref();
        let (file, text) = crate::read_named(path, std::fs::read_to_string)
            .map_err(|(file, source)| ManifestError::Io { file, source })?;
        let mut m: Manifest = toml::from_str(&text).map_err(|source| ManifestError::Toml {
            file: file.clone(),
            source,
        })?;
        for f in &m.files {
            for counts in std::iter::once(&f.tshark).chain(f.expected.as_ref()) {
                counts.by_type().map_err(|key| ManifestError::BadTypeKey {
                    file: file.clone(),
                    path: f.path.clone(),
                    key,
                })?;
            }
        }
        m.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(m)
    }

    /// The fixture listed under `path` (relative to the fixtures folder), if any.
    pub fn fixture(&self, path: &str) -> Option<&Fixture> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Absolute path of a fixture.
    pub fn path_of(&self, fixture: &Fixture) -> PathBuf {
        self.dir.join(&fixture.path)
    }
}
