//! Why a PROXY header was rejected.

/// A rejected PROXY header. [`ProxyError::label`] is a bounded metric label; `Display` is
/// the specific reason for the log line (untrusted text in it is quoted and escaped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "not a PROXY header: byte {offset} is {byte:#04x}, which neither the v1 nor the v2 signature has there"
    )]
    BadSignature { offset: usize, byte: u8 },
    #[error("PROXY v2 header has version {0}, not 2")]
    UnsupportedVersion(u8),
    #[error("PROXY v2 command {0} is neither LOCAL (0) nor PROXY (1)")]
    BadCommand(u8),
    #[error("PROXY v2 family/transport byte {0:#04x} is not one the spec defines")]
    BadFamily(u8),
    #[error(
        "PROXY v2 family/transport {0:#04x} is UDP or UNIX, which carries no TCP client address"
    )]
    UnsupportedFamily(u8),
    #[error(
        "PROXY v2 length {len} is shorter than the {needed}-byte address block of family {family:#04x}"
    )]
    ShortAddressBlock { family: u8, len: u16, needed: usize },
    #[error("PROXY v2 header of {len} bytes is over the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("PROXY v1 line has no CRLF within 107 bytes")]
    V1TooLong,
    #[error(
        "PROXY v2 TLV at header byte {offset} needs {needed} bytes but the header has {available} left"
    )]
    TlvOverrun {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("PROXY v2 TLV {kind:#04x} is malformed: {reason}")]
    BadTlv { kind: u8, reason: &'static str },
    #[error(
        "PROXY v2 CRC32C mismatch: the header says {expected:#010x}, its bytes give {computed:#010x}"
    )]
    BadCrc { expected: u32, computed: u32 },
    #[error("malformed PROXY v1 line: {0}")]
    BadV1Line(&'static str),
    #[error("PROXY v1 {field} {value:?} is invalid")]
    BadAddress { field: &'static str, value: String },
}

impl ProxyError {
    /// A metric label from a fixed set.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadSignature { .. } => "bad_signature",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::BadCommand(_) => "bad_command",
            Self::BadFamily(_) => "bad_family",
            Self::UnsupportedFamily(_) => "unsupported_family",
            Self::ShortAddressBlock { .. } => "bad_length",
            Self::TooLong { .. } | Self::V1TooLong => "too_long",
            Self::TlvOverrun { .. } => "tlv_overrun",
            Self::BadTlv { .. } => "bad_tlv",
            Self::BadCrc { .. } => "bad_crc",
            Self::BadV1Line(_) => "bad_v1_line",
            Self::BadAddress { .. } => "bad_address",
        }
    }
}
