//! How a volume is formatted: cipher, key size, sector size and the PBKDF that turns a
//! passphrase into a keyslot key. One value per device class; checked before any device
//! is touched, so a bad setting is refused at start-up, not at the first volume.
//!
//! ```toml
//! [device_classes.ssd.encryption]
//! cipher = "aes-xts-plain64"     # LUKS2's default
//! key_bits = 512
//! pbkdf = { type = "argon2id", memory = "256MiB", parallel = 4, time_ms = 2000 }
//! # tests: pbkdf = { type = "pbkdf2", iterations = 1000 }
//! no_read_workqueue = true       # NVMe: dm-crypt's I/O inline, at each open
//! no_write_workqueue = true
//! ```

use super::{CryptError, OpenOptions};
use crate::units::{deserialize_size as size, Bytes};
use serde::Deserialize;

/// libcryptsetup's own bounds (`lib/utils_pbkdf.c`): refused there anyway, but here the
/// error names the setting.
const PBKDF2_MIN_ITERATIONS: u32 = 1000;
const ARGON2_MIN_ITERATIONS: u32 = 4;
const ARGON2_MIN_MEMORY: Bytes = Bytes(32 * 1024);
const ARGON2_MAX_MEMORY: Bytes = Bytes(4 * 1024 * 1024 * 1024);
const ARGON2_MAX_PARALLEL: u32 = 4;
/// A target above a minute would make every open stall the daemon's crypt calls
/// (libcryptsetup serializes them) for that long.
const MAX_TIME_MS: u32 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuksConfig {
    /// dm-crypt's `cipher-chainmode-ivmode`, as `cryptsetup --cipher` takes it.
    #[serde(default = "default_cipher")]
    pub cipher: String,
    /// Volume key size; xts splits it in two, so 512 is AES-256.
    #[serde(default = "default_key_bits")]
    pub key_bits: u32,
    /// Encryption sector size in bytes; `None`: libcryptsetup's default (512).
    #[serde(default)]
    pub sector_size: Option<u32>,
    #[serde(default)]
    pub pbkdf: Pbkdf,
    /// dm-crypt's `no_read_workqueue` at every open (`cryptsetup open
    /// --perf-no_read_workqueue`): reads decrypted in the I/O's own context, not queued
    /// to kcryptd; lower latency on fast (NVMe) devices, more CPU in the submitter. Not
    /// in the header: a mapping open already keeps its flags until it is closed.
    #[serde(default)]
    pub no_read_workqueue: bool,
    /// dm-crypt's `no_write_workqueue` (`--perf-no_write_workqueue`): writes encrypted
    /// inline, not through the write workqueue.
    #[serde(default)]
    pub no_write_workqueue: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Pbkdf {
    /// Memory-hard, LUKS2's default. `time_ms` set: benchmarked on this node to take
    /// that long (as cryptsetup does); `iterations` set instead: fixed, no benchmark.
    Argon2id {
        #[serde(deserialize_with = "size")]
        memory: Bytes,
        parallel: u32,
        #[serde(default)]
        time_ms: Option<u32>,
        #[serde(default)]
        iterations: Option<u32>,
    },
    /// Fixed iterations, no benchmark: the tests' choice (argon2id takes seconds under
    /// emulation), or for FIPS nodes.
    Pbkdf2 {
        #[serde(default = "default_hash")]
        hash: String,
        iterations: u32,
    },
}

impl Default for LuksConfig {
    fn default() -> Self {
        LuksConfig {
            cipher: default_cipher(),
            key_bits: default_key_bits(),
            sector_size: None,
            pbkdf: Pbkdf::default(),
            no_read_workqueue: false,
            no_write_workqueue: false,
        }
    }
}

/// argon2id as cryptsetup benchmarks it (2 s, 4 threads), with a quarter of its 1 GiB
/// memory ceiling: a node opens many volumes at start-up, each open costs that memory
/// for its duration.
impl Default for Pbkdf {
    fn default() -> Self {
        Pbkdf::Argon2id {
            memory: Bytes(256 * 1024 * 1024),
            parallel: 4,
            time_ms: Some(2000),
            iterations: None,
        }
    }
}

fn default_cipher() -> String {
    "aes-xts-plain64".into()
}
fn default_key_bits() -> u32 {
    512
}
fn default_hash() -> String {
    "sha256".into()
}

impl LuksConfig {
    /// A cheap configuration for tests: pbkdf2 with its minimum iterations.
    pub fn fast_for_tests() -> LuksConfig {
        LuksConfig {
            pbkdf: Pbkdf::Pbkdf2 {
                hash: default_hash(),
                iterations: PBKDF2_MIN_ITERATIONS,
            },
            ..LuksConfig::default()
        }
    }

    /// Every setting within what libcryptsetup accepts.
    pub fn validate(&self) -> Result<(), CryptError> {
        let bad = |why: String| Err(CryptError::InvalidConfig { why });
        self.cipher_and_mode()?;
        if self.key_bits == 0 || self.key_bits % 8 != 0 || self.key_bits > 1024 {
            return bad(format!(
                "key_bits {} is not a multiple of 8 between 8 and 1024",
                self.key_bits
            ));
        }
        if let Some(s) = self.sector_size {
            if !(512..=4096).contains(&s) || !s.is_power_of_two() {
                return bad(format!(
                    "sector_size {s} is not a power of two from 512 to 4096"
                ));
            }
        }
        self.pbkdf.validate()
    }

    /// `aes-xts-plain64` -> (`aes`, `xts-plain64`), as cryptsetup splits `--cipher`.
    pub fn cipher_and_mode(&self) -> Result<(&str, &str), CryptError> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '(' | ')'))
        };
        match self.cipher.split_once('-') {
            Some((cipher, mode)) if ok(cipher) && ok(mode) => Ok((cipher, mode)),
            _ => Err(CryptError::InvalidConfig {
                why: format!(
                    "cipher {:?} is not of the form cipher-chainmode-ivmode (aes-xts-plain64)",
                    self.cipher
                ),
            }),
        }
    }

    pub fn key_bytes(&self) -> usize {
        self.key_bits as usize / 8
    }

    /// How the daemon opens this class's volumes.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            no_read_workqueue: self.no_read_workqueue,
            no_write_workqueue: self.no_write_workqueue,
            ..OpenOptions::default()
        }
    }
}

impl Pbkdf {
    pub fn validate(&self) -> Result<(), CryptError> {
        let bad = |why: String| Err(CryptError::InvalidConfig { why });
        match self {
            Pbkdf::Pbkdf2 { hash, iterations } => {
                if !matches!(hash.as_str(), "sha1" | "sha256" | "sha512") {
                    return bad(format!(
                        "pbkdf2 hash {hash:?} is not sha1, sha256 or sha512"
                    ));
                }
                if *iterations < PBKDF2_MIN_ITERATIONS {
                    return bad(format!(
                        "pbkdf2 iterations {iterations} below libcryptsetup's minimum {PBKDF2_MIN_ITERATIONS}"
                    ));
                }
            }
            Pbkdf::Argon2id {
                memory,
                parallel,
                time_ms,
                iterations,
            } => {
                if *memory < ARGON2_MIN_MEMORY || *memory > ARGON2_MAX_MEMORY {
                    return bad(format!(
                        "argon2id memory {memory} outside {ARGON2_MIN_MEMORY}..={ARGON2_MAX_MEMORY}"
                    ));
                }
                if memory.0 % 1024 != 0 {
                    return bad(format!("argon2id memory {memory} is not whole KiB"));
                }
                if !(1..=ARGON2_MAX_PARALLEL).contains(parallel) {
                    return bad(format!(
                        "argon2id parallel {parallel} outside 1..={ARGON2_MAX_PARALLEL}"
                    ));
                }
                match (time_ms, iterations) {
                    (Some(_), Some(_)) | (None, None) => {
                        return bad("argon2id takes exactly one of time_ms and iterations".into())
                    }
                    (Some(t), None) if *t == 0 || *t > MAX_TIME_MS => {
                        return bad(format!("argon2id time_ms {t} outside 1..={MAX_TIME_MS}"))
                    }
                    (None, Some(i)) if *i < ARGON2_MIN_ITERATIONS => {
                        return bad(format!(
                            "argon2id iterations {i} below libcryptsetup's minimum {ARGON2_MIN_ITERATIONS}"
                        ))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The name `cryptsetup luksDump` shows.
    pub fn name(&self) -> &'static str {
        match self {
            Pbkdf::Argon2id { .. } => "argon2id",
            Pbkdf::Pbkdf2 { .. } => "pbkdf2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LuksConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_luks2_s_with_a_node_sized_argon2id() {
        let c = parse("").unwrap();
        assert_eq!(c, LuksConfig::default());
        assert_eq!(c.cipher_and_mode().unwrap(), ("aes", "xts-plain64"));
        assert_eq!(c.key_bytes(), 64);
        assert_eq!(c.pbkdf.name(), "argon2id");
        let Pbkdf::Argon2id { memory, .. } = c.pbkdf else {
            panic!()
        };
        assert_eq!(memory, Bytes(256 << 20));
        c.validate().unwrap();
        LuksConfig::fast_for_tests().validate().unwrap();
    }

    #[test]
    fn toml_forms_parse() {
        let c = parse(
            r#"cipher = "serpent-xts-plain64"
               key_bits = 256
               sector_size = 4096
               pbkdf = { type = "argon2id", memory = "64MiB", parallel = 2, iterations = 5 }"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.cipher_and_mode().unwrap(), ("serpent", "xts-plain64"));
        assert_eq!(
            c.pbkdf,
            Pbkdf::Argon2id {
                memory: Bytes(64 << 20),
                parallel: 2,
                time_ms: None,
                iterations: Some(5)
            }
        );
        let c = parse(r#"pbkdf = { type = "pbkdf2", iterations = 2000 }"#).unwrap();
        assert_eq!(
            c.pbkdf,
            Pbkdf::Pbkdf2 {
                hash: "sha256".into(),
                iterations: 2000
            }
        );
        // A typo is an error, not a silent default.
        assert!(parse("ciphr = \"aes-xts-plain64\"").is_err());
        assert!(parse("no_read_work_queue = true").is_err());
        assert!(parse("no_read_workqueue = \"yes\"").is_err());
        assert!(parse(r#"pbkdf = { type = "pbkdf2", iterations = 2000, memory = 1 }"#).is_err());
        assert!(parse(r#"pbkdf = { type = "scrypt", iterations = 2000 }"#).is_err());
    }

    #[test]
    fn workqueue_flags_are_off_unless_set_and_reach_the_open_options() {
        let c = parse("").unwrap();
        assert!(!c.no_read_workqueue && !c.no_write_workqueue);
        assert_eq!(c.open_options(), OpenOptions::default());
        let c = parse("no_read_workqueue = true").unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.open_options(),
            OpenOptions {
                no_read_workqueue: true,
                ..OpenOptions::default()
            }
        );
        let c = parse(
            r#"no_write_workqueue = true
               no_read_workqueue = true
               pbkdf = { type = "pbkdf2", iterations = 1000 }"#,
        )
        .unwrap();
        let o = c.open_options();
        assert!(o.no_read_workqueue && o.no_write_workqueue);
        // Open flags only: nothing of how a volume is read or written is changed.
        assert!(!o.read_only && !o.allow_discards);
        assert_eq!(c.pbkdf.name(), "pbkdf2");
    }

    #[test]
    fn out_of_range_settings_are_refused_naming_the_setting() {
        let with = |f: &dyn Fn(&mut LuksConfig)| {
            let mut c = LuksConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(with(&|c| c.cipher = "aes".into()).contains("cipher \"aes\""));
        assert!(with(&|c| c.cipher = "aes-xts plain".into()).contains("cipher"));
        assert!(with(&|c| c.key_bits = 500).contains("key_bits 500"));
        assert!(with(&|c| c.sector_size = Some(1000)).contains("sector_size 1000"));
        assert!(with(&|c| c.sector_size = Some(8192)).contains("sector_size 8192"));
        let pb = |p: Pbkdf| with(&move |c| c.pbkdf = p.clone());
        assert!(pb(Pbkdf::Pbkdf2 {
            hash: "sha256".into(),
            iterations: 999
        })
        .contains("iterations 999"));
        assert!(pb(Pbkdf::Pbkdf2 {
            hash: "md5".into(),
            iterations: 1000
        })
        .contains("md5"));
        let argon = |memory: u64, parallel, time_ms, iterations| {
            pb(Pbkdf::Argon2id {
                memory: Bytes(memory),
                parallel,
                time_ms,
                iterations,
            })
        };
        assert!(argon(16 << 10, 4, Some(100), None).contains("memory"));
        assert!(argon(8 << 30, 4, Some(100), None).contains("memory"));
        assert!(argon(64 << 20, 0, Some(100), None).contains("parallel 0"));
        assert!(argon(64 << 20, 8, Some(100), None).contains("parallel 8"));
        assert!(argon(64 << 20, 4, Some(100), Some(4)).contains("exactly one"));
        assert!(argon(64 << 20, 4, None, None).contains("exactly one"));
        assert!(argon(64 << 20, 4, Some(0), None).contains("time_ms 0"));
        assert!(argon(64 << 20, 4, None, Some(3)).contains("iterations 3"));
    }
}
