//! The passphrase of an encrypted volume, held only in memory that is zeroed when it is
//! dropped (and on every reallocation: it is never grown once made).
//!
//! It has no `Display`, no `Clone`, no `Serialize`, and its `Debug` shows no byte and
//! not even the length, so a key cannot reach a log line, an error message or a metric
//! by formatting. The bytes leave this type only into libcryptsetup, which copies them
//! into its own wiped memory.

use super::CryptError;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// Longest passphrase accepted: a bound on what one request can make lvmd hold, far
/// above any real secret (Kubernetes secrets are capped at 1 MiB, a random key file is
/// a few KiB).
pub const MAX_PASSPHRASE: usize = 64 * 1024;

pub struct Passphrase(Zeroizing<Box<[u8]>>);

impl Passphrase {
    /// Takes the bytes as they are (no trimming: a key file or a secret value is the
    /// key exactly, as `cryptsetup --key-file` reads it). The vector is moved into
    /// zeroized memory without a copy; refused (and zeroed) when empty or too long.
    pub fn new(bytes: Vec<u8>) -> Result<Passphrase, CryptError> {
        let bytes = Zeroizing::new(bytes.into_boxed_slice());
        if bytes.is_empty() {
            return Err(CryptError::InvalidKey {
                why: "the passphrase is empty".into(),
            });
        }
        if bytes.len() > MAX_PASSPHRASE {
            return Err(CryptError::InvalidKey {
                why: format!("the passphrase is longer than {MAX_PASSPHRASE} bytes"),
            });
        }
        Ok(Passphrase(bytes))
    }

    /// A secret's value (CSI's `passphrase` key), moved in without a copy: take it out
    /// of the request's map (`remove`) so no other copy stays behind in lvmd's memory.
    pub fn from_string(text: String) -> Result<Passphrase, CryptError> {
        Passphrase::new(text.into_bytes())
    }

    /// Reads a key file (`lvmd-ctl`'s `--key-file`): its whole content is the key.
    /// The file is read into a buffer sized once, so no partial copy is left behind
    /// by a reallocation.
    pub fn from_file(path: &Path) -> Result<Passphrase, CryptError> {
        let io_err = |source| CryptError::KeyFile {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len > MAX_PASSPHRASE as u64 {
            return Err(CryptError::InvalidKey {
                why: format!(
                    "key file {} is larger than {MAX_PASSPHRASE} bytes",
                    path.display()
                ),
            });
        }
        // One more byte than the size: a file that grew since fstat is noticed, not cut.
        let mut buf = Zeroizing::new(vec![0u8; len as usize + 1]);
        let mut filled = 0;
        loop {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Err(CryptError::InvalidKey {
                            why: format!("key file {} changed while read", path.display()),
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Passphrase::new(buf[..filled].to_vec())
    }

    /// Whether two keys are the same bytes (the simulated node's "keyslot"), compared
    /// in constant time.
    pub fn matches(&self, other: &Passphrase) -> bool {
        let (a, b) = (self.expose(), other.expose());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// A second zeroized copy, for the simulated node, which keeps a volume's key as
    /// its "keyslot" (the real node keeps no key).
    pub fn duplicate(&self) -> Passphrase {
        Passphrase(Zeroizing::new(self.expose().to_vec().into_boxed_slice()))
    }

    /// The key moved out (no copy) into a request's `bytes` field, for a message whose
    /// `Drop` zeroes that field (the key-carrying requests of `crate::rpc`); nowhere else.
    pub fn into_wire(mut self) -> Vec<u8> {
        Vec::from(std::mem::take(&mut *self.0))
    }

    /// The key's bytes, for libcryptsetup only.
    pub(super) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn debug_shows_neither_the_key_nor_its_length() {
        let key = Passphrase::new(b"correct horse battery staple".to_vec()).unwrap();
        for text in [format!("{key:?}"), format!("{key:#?}")] {
            assert_eq!(text, "Passphrase(<redacted>)");
            assert!(!text.contains("horse"));
            assert!(!text.contains("28"));
        }
        // In a containing struct's derived Debug too.
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Request {
            volume: &'static str,
            key: Passphrase,
        }
        let r = Request {
            volume: "vg/lv",
            key,
        };
        let text = format!("{r:?}");
        assert!(text.contains("vg/lv") && !text.contains("horse"), "{text}");
    }

    #[test]
    fn empty_and_oversized_keys_are_refused_without_echoing_them() {
        let e = Passphrase::new(Vec::new()).unwrap_err();
        assert!(matches!(e, CryptError::InvalidKey { .. }), "{e}");
        let big = vec![b'k'; MAX_PASSPHRASE + 1];
        let e = Passphrase::new(big).unwrap_err().to_string();
        assert!(e.contains("longer than") && !e.contains("kkkk"), "{e}");
        assert_eq!(
            Passphrase::new(vec![7; MAX_PASSPHRASE])
                .unwrap()
                .expose()
                .len(),
            MAX_PASSPHRASE
        );
    }

    #[test]
    fn a_secret_string_is_the_key_as_is() {
        let key = Passphrase::from_string(" pass word \n".to_owned()).unwrap();
        assert_eq!(key.expose(), b" pass word \n");
        assert!(Passphrase::from_string(String::new()).is_err());
    }

    #[test]
    fn a_key_file_is_read_exactly_newline_and_all() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"s3cret\n").unwrap();
        let key = Passphrase::from_file(f.path()).unwrap();
        assert_eq!(key.expose(), b"s3cret\n");

        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(
            Passphrase::from_file(empty.path()),
            Err(CryptError::InvalidKey { .. })
        ));
        let e = Passphrase::from_file(Path::new("/nonexistent/key")).unwrap_err();
        assert!(matches!(e, CryptError::KeyFile { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/key"), "{e}");
    }
}
