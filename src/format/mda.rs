//! A metadata area: a 512-byte header, then a circular buffer of metadata texts.
//!
//! Header layout (little-endian, `lib/format_text/layout.h`):
//! ```text
//!   0  u32  CRC of bytes 4..512
//!   4  16-byte magic " LVM2 x[5A%r0N*>"
//!  20  u32  version (1)
//!  24  u64  absolute byte offset of this header on the device
//!  32  u64  size of the whole area in bytes, header included
//!  40  raw locations {u64 offset, u64 size, u32 checksum, u32 flags}, 24 bytes each
//! ```
//!
//! What lvm2 (2.03.16, `format-text.c`) does with the raw locations:
//! - Slot 0 is the committed text: `offset` relative to the area start, `size` in bytes
//!   (the text's trailing NUL included), `checksum` the CRC of those bytes. lvm2 reads the
//!   VG from slot 0 only, and only when its offset is non-zero.
//! - Slot 1 is the precommitted text. A commit is three writes per area: the new text
//!   into the buffer (`vg_write`), then the header with slot 1 pointing at it
//!   (`vg_precommit`), then the header with slot 0 pointing at it and slot 1 zeroed
//!   (`vg_commit`). Slot 1 is only read by activation code that wants the VG as it will be
//!   after an interrupted command; placing the next text looks at slot 0 only.
//! - Flag `RAW_LOCN_IGNORED` on slot 0 marks an area lvm2 does not keep up to date
//!   (`pvchange --metadataignore y`, or `vgmetadatacopies`). The commit that sets the
//!   flag still writes the text and points slot 0 at it; later commits leave the area
//!   alone, so its text goes stale. lvm2 never reads the text of an ignored area, and
//!   when the area is taken back into use the next text goes to the start of the buffer
//!   as if the area were empty. `vgremove` zeroes slots 0 and 1 but keeps the flag.
//! - Placement of each new text: see [`MdaHeader::next_text_location`]. lvm2 writes each
//!   piece's last sector whole, zeros after the text, so the gap up to the next text's
//!   aligned start is zero on disk; it reads only `size` bytes, so the padding is
//!   cosmetic.
//! - Slots past 1 are unused. lvm2 rewrites the header it read, so it keeps them (and the
//!   16 bytes after the last slot) as they were; we keep the slots and zero those bytes.

use crate::format::crc::lvm_crc;
use crate::units::Bytes;
use std::fmt;

pub const MDA_HEADER_SIZE: u64 = 512;
pub const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
pub const MDA_VERSION: u32 = 1;
/// Slot 0 flag: lvm2 neither reads nor updates this area's text.
pub const RAW_LOCN_IGNORED: u32 = 1;
/// Each text starts on a multiple of this (relative to the area start).
pub const TEXT_ALIGNMENT: u64 = 512;

const HDR: usize = MDA_HEADER_SIZE as usize;
const RAW_LOCNS_AT: usize = 40;
const RAW_LOCN_SIZE: usize = 24;
/// Raw locations that fit in the header.
pub const MAX_RAW_LOCNS: usize = (HDR - RAW_LOCNS_AT) / RAW_LOCN_SIZE;

/// Where a text lies in the area, as a header slot records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RawLocn {
    /// Relative to the start of the area (so at least [`MDA_HEADER_SIZE`]).
    pub offset: Bytes,
    pub size: Bytes,
    pub checksum: u32,
    pub flags: u32,
}

impl RawLocn {
    pub const EMPTY: RawLocn = RawLocn {
        offset: Bytes(0),
        size: Bytes(0),
        checksum: 0,
        flags: 0,
    };

    pub fn is_ignored(&self) -> bool {
        self.flags & RAW_LOCN_IGNORED != 0
    }

    /// Points at no text (flags aside).
    pub fn is_empty(&self) -> bool {
        self.offset.0 == 0 && self.size.0 == 0
    }

    fn is_zero(&self) -> bool {
        *self == RawLocn::EMPTY
    }

    fn clear_location(&mut self) {
        self.offset = Bytes(0);
        self.size = Bytes(0);
        self.checksum = 0;
    }
}

/// Absolute bytes on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    pub start: Bytes,
    pub len: Bytes,
}

impl ByteRange {
    pub fn end(&self) -> Bytes {
        self.start + self.len
    }
}

/// A text in the circular buffer: where it is relative to the area (as in a [`RawLocn`])
/// and the one or two absolute ranges it occupies on the device. A text that runs past
/// the end of the area continues just after the header; its checksum covers the first
/// range followed by the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextLocation {
    pub offset: Bytes,
    pub size: Bytes,
    pub checksum: u32,
    pub first: ByteRange,
    pub second: Option<ByteRange>,
}

impl TextLocation {
    /// The ranges to read or write, in text order.
    pub fn ranges(&self) -> impl Iterator<Item = ByteRange> {
        std::iter::once(self.first).chain(self.second)
    }

    /// Splits `text` (of this location's size) into the pieces for [`Self::first`] and
    /// [`Self::second`].
    pub fn split<'t>(&self, text: &'t [u8]) -> (&'t [u8], &'t [u8]) {
        text.split_at((self.first.len.0 as usize).min(text.len()))
    }

    /// The same place, with the checksum of the text that goes there.
    pub fn with_checksum(self, checksum: u32) -> TextLocation {
        TextLocation { checksum, ..self }
    }

    /// Checks text read from [`Self::ranges`] (concatenated) against size and checksum.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), MdaError> {
        verify_text(self, bytes)
    }
}

/// Checks text read from `loc`'s ranges (both pieces, concatenated in order) against the
/// size and checksum the header recorded.
pub fn verify_text(loc: &TextLocation, bytes: &[u8]) -> Result<(), MdaError> {
    if bytes.len() as u64 != loc.size.0 {
        return Err(MdaError::TextSizeMismatch {
            expected: loc.size.0,
            got: bytes.len() as u64,
        });
    }
    let computed = lvm_crc(bytes);
    if computed != loc.checksum {
        return Err(MdaError::TextChecksum {
            stored: loc.checksum,
            computed,
        });
    }
    Ok(())
}

/// The text without the NUL byte lvm2 stores after it (and counts in the size). lvm2's
/// reader does not require the NUL, so neither do we.
pub fn strip_nul(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\0").unwrap_or(text)
}

/// 16 bytes from disk, shown escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Magic(pub [u8; 16]);

impl fmt::Display for Magic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdaError {
    #[error("metadata area header needs 512 bytes, got {len}")]
    Truncated { len: usize },
    #[error(
        "metadata area header at {start} has checksum {stored:#010x}, computed {computed:#010x}"
    )]
    BadCrc {
        start: u64,
        stored: u32,
        computed: u32,
    },
    #[error("metadata area header at {start} has magic {found}")]
    BadMagic { start: u64, found: Magic },
    #[error("metadata area header at {start} has version {version}, expected 1")]
    BadVersion { start: u64, version: u32 },
    #[error("metadata area header read at {expected} says it is at {stored}")]
    WrongStart { expected: u64, stored: u64 },
    #[error("metadata area at {start} has size {size}, smaller than its header")]
    AreaTooSmall { start: u64, size: u64 },
    #[error("metadata area at {start} with size {size} runs past 2^64")]
    AreaOverflow { start: u64, size: u64 },
    #[error("metadata area at {start} has {count} raw locations, at most {MAX_RAW_LOCNS} fit")]
    TooManyRawLocns { start: u64, count: usize },
    #[error(
        "metadata area at {start} (size {area_size}): slot {slot} points at {size} bytes at \
         offset {offset}, outside the circular buffer"
    )]
    BadRawLocn {
        start: u64,
        slot: usize,
        offset: u64,
        size: u64,
        area_size: u64,
    },
    #[error("metadata area full: the text needs {needed} bytes, at most {available} fit")]
    MetadataAreaFull { needed: u64, available: u64 },
    #[error(
        "metadata area full: {size} bytes at offset {offset} would overwrite the live text \
         ({live_size} bytes at offset {live_offset})"
    )]
    TextWouldOverlap {
        offset: u64,
        size: u64,
        live_offset: u64,
        live_size: u64,
    },
    #[error("an empty metadata text cannot be stored")]
    EmptyText,
    #[error("metadata text is {got} bytes, the header says {expected}")]
    TextSizeMismatch { expected: u64, got: u64 },
    #[error("metadata text has checksum {computed:#010x}, the header says {stored:#010x}")]
    TextChecksum { stored: u32, computed: u32 },
}

/// A metadata area header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdaHeader {
    /// Absolute byte offset of the header (the area's start).
    pub start: Bytes,
    /// The whole area, header included.
    pub size: Bytes,
    pub version: u32,
    /// Slot 0 committed, slot 1 precommitted, as on disk up to the last non-zero slot
    /// (so usually one entry, none in a fresh area).
    pub raw_locns: Vec<RawLocn>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl MdaHeader {
    /// The header `pvcreate` writes: no text yet.
    pub fn new_empty(start: Bytes, size: Bytes) -> MdaHeader {
        MdaHeader {
            start,
            size,
            version: MDA_VERSION,
            raw_locns: Vec::new(),
        }
    }

    /// Parses the 512 bytes read at `expected_start`. Like lvm2 it checks the checksum,
    /// magic, version and that the header names the place it was read from; it also
    /// checks that slots 0 and 1 point inside the circular buffer.
    pub fn parse(bytes: &[u8], expected_start: Bytes) -> Result<MdaHeader, MdaError> {
        let b = bytes
            .get(..HDR)
            .ok_or(MdaError::Truncated { len: bytes.len() })?;
        let start = expected_start.0;
        let stored = u32_at(b, 0);
        let computed = lvm_crc(&b[4..]);
        if stored != computed {
            return Err(MdaError::BadCrc {
                start,
                stored,
                computed,
            });
        }
        if &b[4..20] != MDA_MAGIC {
            return Err(MdaError::BadMagic {
                start,
                found: Magic(b[4..20].try_into().expect("16 bytes")),
            });
        }
        let version = u32_at(b, 20);
        if version != MDA_VERSION {
            return Err(MdaError::BadVersion { start, version });
        }
        let stored_start = u64_at(b, 24);
        if stored_start != start {
            return Err(MdaError::WrongStart {
                expected: start,
                stored: stored_start,
            });
        }
        let mut raw_locns: Vec<RawLocn> = (0..MAX_RAW_LOCNS)
            .map(|i| {
                let at = RAW_LOCNS_AT + i * RAW_LOCN_SIZE;
                RawLocn {
                    offset: Bytes(u64_at(b, at)),
                    size: Bytes(u64_at(b, at + 8)),
                    checksum: u32_at(b, at + 16),
                    flags: u32_at(b, at + 20),
                }
            })
            .collect();
        while raw_locns.last().is_some_and(RawLocn::is_zero) {
            raw_locns.pop();
        }
        let h = MdaHeader {
            start: expected_start,
            size: Bytes(u64_at(b, 32)),
            version,
            raw_locns,
        };
        h.check()?;
        Ok(h)
    }

    /// The geometry checks of [`MdaHeader::parse`], for a header built in memory.
    pub fn check(&self) -> Result<(), MdaError> {
        let (start, size) = (self.start.0, self.size.0);
        if size < MDA_HEADER_SIZE {
            return Err(MdaError::AreaTooSmall { start, size });
        }
        if start.checked_add(size).is_none() {
            return Err(MdaError::AreaOverflow { start, size });
        }
        if self.raw_locns.len() > MAX_RAW_LOCNS {
            return Err(MdaError::TooManyRawLocns {
                start,
                count: self.raw_locns.len(),
            });
        }
        for (slot, r) in self.raw_locns.iter().take(2).enumerate() {
            if r.is_empty() {
                continue;
            }
            // A text must start inside the buffer, be non-empty and not longer than the
            // buffer (it would overlap itself).
            let (o, n) = (r.offset.0, r.size.0);
            if o < MDA_HEADER_SIZE || o >= size || n == 0 || n > size - MDA_HEADER_SIZE {
                return Err(MdaError::BadRawLocn {
                    start,
                    slot,
                    offset: o,
                    size: n,
                    area_size: size,
                });
            }
        }
        Ok(())
    }

    /// The 512 header bytes, checksum included.
    ///
    /// # Panics
    /// With more than [`MAX_RAW_LOCNS`] raw locations ([`MdaHeader::check`] reports it).
    pub fn to_bytes(&self) -> [u8; 512] {
        assert!(
            self.raw_locns.len() <= MAX_RAW_LOCNS,
            "{} raw locations do not fit in a metadata area header",
            self.raw_locns.len()
        );
        let mut b = [0u8; HDR];
        b[4..20].copy_from_slice(MDA_MAGIC);
        b[20..24].copy_from_slice(&self.version.to_le_bytes());
        b[24..32].copy_from_slice(&self.start.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.size.0.to_le_bytes());
        for (i, r) in self.raw_locns.iter().enumerate() {
            let at = RAW_LOCNS_AT + i * RAW_LOCN_SIZE;
            b[at..at + 8].copy_from_slice(&r.offset.0.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&r.size.0.to_le_bytes());
            b[at + 16..at + 20].copy_from_slice(&r.checksum.to_le_bytes());
            b[at + 20..at + 24].copy_from_slice(&r.flags.to_le_bytes());
        }
        let crc = lvm_crc(&b[4..]);
        b[0..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn slot(&self, i: usize) -> RawLocn {
        self.raw_locns.get(i).copied().unwrap_or(RawLocn::EMPTY)
    }

    /// Slot 0 as stored (may be empty or ignored).
    pub fn committed(&self) -> RawLocn {
        self.slot(0)
    }

    /// Slot 1 as stored: non-empty only between lvm2's precommit and commit.
    pub fn precommitted(&self) -> RawLocn {
        self.slot(1)
    }

    /// Whether lvm2 keeps this area's text up to date (slot 0's ignored flag).
    pub fn is_ignored(&self) -> bool {
        self.committed().is_ignored()
    }

    /// The end of the area (exclusive, absolute).
    pub fn end(&self) -> Bytes {
        self.start + self.size
    }

    /// lvm2's limit on one text: half the circular buffer, less 512 for the alignment of
    /// the next copy. (For an area under 1536 bytes lvm2's unsigned arithmetic wraps and
    /// it relies on its overlap check instead; such an area holds nothing, so we say 0.)
    pub fn max_text_size(&self) -> u64 {
        ((self.size.0.saturating_sub(MDA_HEADER_SIZE)) / 2).saturating_sub(TEXT_ALIGNMENT)
    }

    /// Where a slot's text lies, or `None` for an empty slot or a slot that does not
    /// pass [`MdaHeader::check`].
    fn locate(&self, r: RawLocn) -> Option<TextLocation> {
        let size = self.size.0;
        let (o, n) = (r.offset.0, r.size.0);
        if o < MDA_HEADER_SIZE
            || o >= size
            || n == 0
            || n > size - MDA_HEADER_SIZE
            || self.start.0.checked_add(size).is_none()
        {
            return None;
        }
        Some(self.place(o, n, r.checksum))
    }

    /// Ranges for `n` bytes at relative offset `o`; `o` inside the buffer and `n` at
    /// most the buffer's length.
    fn place(&self, o: u64, n: u64, checksum: u32) -> TextLocation {
        let room = self.size.0 - o;
        let (first, second) = if n > room {
            (
                room,
                Some(ByteRange {
                    start: self.start + Bytes(MDA_HEADER_SIZE),
                    len: Bytes(n - room),
                }),
            )
        } else {
            (n, None)
        };
        TextLocation {
            offset: Bytes(o),
            size: Bytes(n),
            checksum,
            first: ByteRange {
                start: self.start + Bytes(o),
                len: Bytes(first),
            },
            second,
        }
    }

    /// The text lvm2 reads: slot 0, unless the area is ignored or holds no text yet.
    pub fn live_text(&self) -> Option<TextLocation> {
        let r = self.committed();
        if r.is_ignored() || r.offset.0 == 0 {
            return None;
        }
        self.locate(r)
    }

    /// Slot 0's text even when the area is ignored (then it is stale: the VG as it was
    /// when the area was set to be ignored).
    pub fn committed_text(&self) -> Option<TextLocation> {
        self.locate(self.committed())
    }

    /// Slot 1's text, if a command stopped between precommit and commit.
    pub fn precommitted_text(&self) -> Option<TextLocation> {
        self.locate(self.precommitted())
    }

    /// Where the next commit's text of `text_len` bytes goes, decided as lvm2 2.03.16's
    /// `_vg_write_raw` and `_next_rlocn_offset` decide it:
    /// - longer than [`MdaHeader::max_text_size`]: the area is full;
    /// - no live text (fresh, emptied by vgremove, or ignored): just after the header;
    /// - otherwise just after the live text's last byte, rounded up to 512 relative to
    ///   the area; back to just after the header when the live text ends less than 512
    ///   bytes before the end of the area or the rounded start is less than 512 bytes
    ///   before it;
    /// - a text running past the end of the area continues just after the header;
    /// - the new text must not touch the live one (lvm2 keeps this check "as a sanity
    ///   check"; with the size limit it only fires for live texts over the limit, which
    ///   older lvm2 could write). Its conditions are mirrored exactly, including that
    ///   it refuses a 1-byte text.
    ///
    /// The checksum of the result is 0: see [`MdaHeader::place_text`].
    pub fn next_text_location(&self, text_len: u64) -> Result<TextLocation, MdaError> {
        self.check()?;
        if text_len == 0 {
            return Err(MdaError::EmptyText);
        }
        let max = self.max_text_size();
        if text_len > max {
            return Err(MdaError::MetadataAreaFull {
                needed: text_len,
                available: max,
            });
        }
        let size = self.size.0;
        let old = self.committed();
        let old = (!old.is_ignored() && !old.is_empty()).then_some(old);
        // "last" values are inclusive byte offsets relative to the area, as in lvm2.
        let (old_start, old_last, old_wrap) = match old {
            None => (0, 0, false),
            Some(r) => {
                // check() holds o < size and n <= size - 512; sums are arranged so that
                // areas near 2^64 bytes cannot overflow.
                let (o, n) = (r.offset.0, r.size.0);
                let room = size - o;
                if n > room {
                    (o, n - room + MDA_HEADER_SIZE - 1, true)
                } else {
                    (o, o + n - 1, false)
                }
            }
        };
        let new_start = match old {
            None => MDA_HEADER_SIZE,
            Some(_) if size - old_last < TEXT_ALIGNMENT => MDA_HEADER_SIZE,
            Some(_) => match (old_last + 1).checked_next_multiple_of(TEXT_ALIGNMENT) {
                Some(next) if next <= size - TEXT_ALIGNMENT => next,
                _ => MDA_HEADER_SIZE,
            },
        };
        // new_start < size and text_len <= max < size.
        let room = size - new_start;
        let new_wrap = text_len > room;
        let new_last = if new_wrap {
            text_len - room + MDA_HEADER_SIZE - 1
        } else {
            new_start + text_len - 1
        };
        let fits = match (old_wrap, new_wrap) {
            (true, true) => false,
            (false, false) => {
                (new_start > old_last && new_last > new_start)
                    || (new_start < old_start && new_last < old_start)
            }
            (true, false) => old_last < new_start && new_start < new_last && new_last < old_start,
            (false, true) => new_last < old_start && old_start < old_last && old_last < new_start,
        };
        if !fits {
            return Err(MdaError::TextWouldOverlap {
                offset: new_start,
                size: text_len,
                live_offset: old.map_or(0, |r| r.offset.0),
                live_size: old.map_or(0, |r| r.size.0),
            });
        }
        Ok(self.place(new_start, text_len, 0))
    }

    /// [`MdaHeader::next_text_location`] for this text, with its checksum.
    pub fn place_text(&self, text: &[u8]) -> Result<TextLocation, MdaError> {
        Ok(self
            .next_text_location(text.len() as u64)?
            .with_checksum(lvm_crc(text)))
    }

    /// Slot 0 and 1 as lvm2's `_vg_commit_raw_rlocn` leaves them: an ignored or empty
    /// slot 0 first loses its location and slot 1 with it; flags are kept.
    fn with_slots(&self, edit: impl FnOnce(&mut RawLocn, &mut RawLocn)) -> MdaHeader {
        let mut h = self.clone();
        if h.raw_locns.len() < 2 {
            h.raw_locns.resize(2, RawLocn::EMPTY);
        }
        let (s0, rest) = h.raw_locns.split_first_mut().expect("two slots");
        let s1 = &mut rest[0];
        if s0.is_ignored() || s0.is_empty() {
            s0.clear_location();
            s1.clear_location();
        }
        edit(s0, s1);
        while h.raw_locns.last().is_some_and(RawLocn::is_zero) {
            h.raw_locns.pop();
        }
        h
    }

    /// The header after a commit of the text at `loc` (lvm2's `vg_commit`): slot 0
    /// points at it, slot 1 is cleared. The ignored flag stays as it was (lvm2 sets it
    /// from the area's state; change it with [`MdaHeader::with_ignored`]).
    pub fn with_live_text(&self, loc: &TextLocation) -> MdaHeader {
        self.with_slots(|s0, s1| {
            s0.offset = loc.offset;
            s0.size = loc.size;
            s0.checksum = loc.checksum;
            s1.clear_location();
        })
    }

    /// The header after lvm2's `vg_precommit` of the text at `loc`: slot 1 points at it,
    /// slot 0 still at the live text.
    pub fn with_precommitted_text(&self, loc: &TextLocation) -> MdaHeader {
        self.with_slots(|_, s1| {
            s1.offset = loc.offset;
            s1.size = loc.size;
            s1.checksum = loc.checksum;
        })
    }

    /// The header after `vgremove`: no text, flags kept.
    pub fn without_text(&self) -> MdaHeader {
        self.with_slots(|s0, s1| {
            s0.clear_location();
            s1.clear_location();
        })
    }

    /// The header with slot 0's ignored flag set or cleared.
    pub fn with_ignored(&self, ignored: bool) -> MdaHeader {
        let mut h = self.clone();
        if h.raw_locns.is_empty() {
            h.raw_locns.push(RawLocn::EMPTY);
        }
        if ignored {
            h.raw_locns[0].flags |= RAW_LOCN_IGNORED;
        } else {
            h.raw_locns[0].flags &= !RAW_LOCN_IGNORED;
        }
        while h.raw_locns.last().is_some_and(RawLocn::is_zero) {
            h.raw_locns.pop();
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::test_fixtures as fx;
    use proptest::prelude::*;

    const KIB: u64 = 1024;

    fn area(start: u64, size: u64) -> MdaHeader {
        MdaHeader::new_empty(Bytes(start), Bytes(size))
    }

    fn text_at(mda_region: &[u8], h: &MdaHeader, loc: &TextLocation) -> Vec<u8> {
        loc.ranges()
            .flat_map(|r| {
                let at = (r.start.0 - h.start.0) as usize;
                mda_region[at..at + r.len.0 as usize].to_vec()
            })
            .collect()
    }

    #[test]
    fn reads_a_real_metadata_area() {
        let region = fx::mda_region();
        let h = MdaHeader::parse(region, Bytes(4096)).unwrap();
        assert_eq!(h.start, Bytes(4096));
        assert_eq!(h.size, Bytes(1044480));
        assert_eq!(h.version, 1);
        assert_eq!(
            h.raw_locns.len(),
            1,
            "lvm2 clears the precommit slot on commit"
        );
        assert!(!h.is_ignored());
        let loc = h.live_text().unwrap();
        assert_eq!(loc.offset, Bytes(fx::LIVE_OFFSET));
        assert_eq!(loc.second, None);
        let text = text_at(region, &h, &loc);
        loc.verify(&text).unwrap();
        // The size counts one trailing NUL after the final newline.
        assert_eq!(text.last(), Some(&0));
        assert_eq!(strip_nul(&text).last(), Some(&b'\n'));
        assert!(!strip_nul(&text).contains(&0));
        assert!(text.starts_with(b"vgfmt {\n"));
        // Writing the header back gives lvm2's bytes exactly.
        assert_eq!(&h.to_bytes()[..], &region[..512]);
    }

    #[test]
    fn reads_the_second_metadata_area_at_the_end() {
        let region = fx::mda2_region();
        let start = Bytes(fx::MDA2_START);
        let h = MdaHeader::parse(region, start).unwrap();
        assert_eq!(h.size, Bytes(1 << 20));
        assert_eq!(h.end(), Bytes(64 << 20));
        let loc = h.live_text().unwrap();
        let text = text_at(region, &h, &loc);
        loc.verify(&text).unwrap();
        assert!(text.starts_with(b"vgfmt2 {\n"));
        // Read at the wrong place, the header says so.
        assert_eq!(
            MdaHeader::parse(region, Bytes(4096)),
            Err(MdaError::WrongStart {
                expected: 4096,
                stored: fx::MDA2_START
            })
        );
    }

    #[test]
    fn reads_a_real_wrapped_text() {
        let region = fx::wrapped_mda();
        let h = MdaHeader::parse(region, Bytes(4096)).unwrap();
        let loc = h.live_text().unwrap();
        let second = loc.second.expect("the fixture's live text wraps");
        assert_eq!(loc.first.end(), h.end());
        assert_eq!(second.start, Bytes(4096 + 512));
        assert_eq!(loc.first.len + second.len, loc.size);
        let text = text_at(region, &h, &loc);
        loc.verify(&text).unwrap();
        assert!(text.starts_with(b"vgfmtw {\n"));
        assert_eq!(text.last(), Some(&0));
        assert_eq!(&h.to_bytes()[..], &region[..512]);
    }

    #[test]
    fn header_errors() {
        let h = area(4096, KIB * KIB);
        let good = h.to_bytes();
        assert_eq!(MdaHeader::parse(&good, Bytes(4096)).unwrap(), h);
        assert_eq!(
            MdaHeader::parse(&good[..100], Bytes(4096)),
            Err(MdaError::Truncated { len: 100 })
        );
        let mut b = good;
        b[100] = 1;
        assert!(matches!(
            MdaHeader::parse(&b, Bytes(4096)),
            Err(MdaError::BadCrc { .. })
        ));
        let reseal = |mut b: [u8; 512]| {
            let crc = lvm_crc(&b[4..]);
            b[..4].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut b = good;
        b[5] = b'X';
        let e = MdaHeader::parse(&reseal(b), Bytes(4096)).unwrap_err();
        assert!(matches!(e, MdaError::BadMagic { .. }));
        assert!(e.to_string().contains("\" XVM2"), "{e}");
        let mut b = good;
        b[20] = 2;
        assert_eq!(
            MdaHeader::parse(&reseal(b), Bytes(4096)),
            Err(MdaError::BadVersion {
                start: 4096,
                version: 2
            })
        );
        let mut bad = h.clone();
        bad.raw_locns.push(RawLocn {
            offset: Bytes(100),
            size: Bytes(10),
            checksum: 0,
            flags: 0,
        });
        assert!(matches!(
            MdaHeader::parse(&bad.to_bytes(), Bytes(4096)),
            Err(MdaError::BadRawLocn { slot: 0, .. })
        ));
        bad.raw_locns[0].offset = Bytes(512);
        bad.raw_locns[0].size = Bytes(KIB * KIB);
        assert!(matches!(bad.check(), Err(MdaError::BadRawLocn { .. })));
        let small = area(4096, 100);
        assert!(matches!(
            MdaHeader::parse(&small.to_bytes(), Bytes(4096)),
            Err(MdaError::AreaTooSmall { .. })
        ));
    }

    #[test]
    fn first_texts_follow_each_other() {
        // 2.03.16 on a fresh 1020 KiB area: texts of 896, 1203, ... bytes at 512, 1536, ...
        let mut h = area(4096, 1044480);
        let mut expect = 512;
        for len in [896u64, 1203, 1500, 1755] {
            let loc = h.next_text_location(len).unwrap();
            assert_eq!(loc.offset.0, expect);
            assert_eq!(loc.first.start.0, 4096 + expect);
            expect = (expect + len).next_multiple_of(512);
            h = h.with_live_text(&loc.with_checksum(7));
        }
        assert_eq!(h.raw_locns.len(), 1);
    }

    #[test]
    fn wraps_and_splits() {
        // 32 KiB area: buffer is 512..32768, max text 15616 bytes.
        let h = area(0, 32 * KIB);
        assert_eq!(h.max_text_size(), 15616);
        let live = h.place(20 * KIB, 10 * KIB, 1);
        let h = h.with_live_text(&live);
        let loc = h.next_text_location(5000).unwrap();
        // 30720 is 2048 bytes before the end: the text starts there and wraps.
        assert_eq!(loc.offset.0, 30 * KIB);
        assert_eq!(loc.first.len.0, 2048);
        assert_eq!(
            loc.second,
            Some(ByteRange {
                start: Bytes(512),
                len: Bytes(5000 - 2048)
            })
        );
        let h = h.with_live_text(&loc);
        assert_eq!(h.live_text().unwrap().second, loc.second);
        // The next one follows the wrapped end.
        let next = h.next_text_location(100).unwrap();
        assert_eq!(next.offset.0, (512 + 5000 - 2048u64).next_multiple_of(512));

        // A live text ending less than 512 bytes before the end: restart after the header.
        let h =
            area(0, 32 * KIB).with_live_text(&area(0, 32 * KIB).place(20 * KIB, 12 * KIB - 100, 0));
        assert_eq!(h.next_text_location(10).unwrap().offset.0, 512);
        // Rounded start exactly 512 before the end is still used.
        let h = area(0, 32 * KIB).with_live_text(&area(0, 32 * KIB).place(20 * KIB, 11 * KIB, 0));
        assert_eq!(h.next_text_location(10).unwrap().offset.0, 31 * KIB);
    }

    #[test]
    fn full_area() {
        let h = area(0, 32 * KIB);
        assert_eq!(
            h.next_text_location(15617),
            Err(MdaError::MetadataAreaFull {
                needed: 15617,
                available: 15616
            })
        );
        assert_eq!(h.next_text_location(0), Err(MdaError::EmptyText));
        // An over-long live text (older lvm2 had no size limit) leaves no room.
        let big = h.with_live_text(&h.place(512, 30 * KIB, 0));
        assert!(matches!(
            big.next_text_location(5000),
            Err(MdaError::TextWouldOverlap { .. })
        ));
        // Tiny areas hold nothing.
        assert!(matches!(
            area(0, 1024).next_text_location(1),
            Err(MdaError::MetadataAreaFull { .. })
        ));
    }

    #[test]
    fn areas_near_the_top_of_the_address_space() {
        // Found by fuzzing: offset + size of a live text overflowed u64.
        let size = u64::MAX - 4096;
        let h = area(4096, size);
        let live = h.place(size - 1024, size / 4, 1);
        let h = h.with_live_text(&live);
        assert_eq!(h.live_text(), Some(live));
        let next = h.next_text_location(1000).unwrap();
        assert_eq!(next.offset.0, (size / 4 - 1024 + 512).next_multiple_of(512));
        let h = h.with_live_text(&h.place(size - 1000, 100, 1));
        assert_eq!(h.next_text_location(10).unwrap().offset.0, 512);
    }

    #[test]
    fn precommit_commit_remove_and_ignore() {
        let h = area(4096, 64 * KIB);
        let a = h.place_text(b"a {\n}\n\0").unwrap();
        let h = h.with_precommitted_text(&a);
        assert_eq!(h.live_text(), None);
        assert_eq!(h.precommitted_text(), Some(a));
        assert_eq!(h.raw_locns[0], RawLocn::EMPTY);
        let h = h.with_live_text(&a);
        assert_eq!(h.live_text(), Some(a));
        assert_eq!(h.precommitted(), RawLocn::EMPTY);
        let b = h.place_text(b"b {\n}\n\0").unwrap();
        let pre = h.with_precommitted_text(&b);
        assert_eq!(pre.live_text(), Some(a));
        assert_eq!(pre.precommitted_text(), Some(b));
        // Round trips through bytes with both slots.
        assert_eq!(MdaHeader::parse(&pre.to_bytes(), Bytes(4096)).unwrap(), pre);
        let h = pre.with_live_text(&b);
        assert_eq!(h.raw_locns.len(), 1);
        assert_eq!(h.live_text(), Some(b));

        // Ignored: lvm2 does not read it, and the next text starts over.
        let ign = h.with_ignored(true);
        assert!(ign.is_ignored());
        assert_eq!(ign.live_text(), None);
        assert_eq!(ign.committed_text(), Some(b));
        assert_eq!(ign.next_text_location(10).unwrap().offset.0, 512);
        // Committing to an ignored area keeps the flag (lvm2 sets it from the PV's state).
        let c = ign.place_text(b"c\0").unwrap();
        let ign2 = ign.with_live_text(&c);
        assert!(ign2.is_ignored());
        assert_eq!(ign2.committed_text(), Some(c));
        assert!(!ign2.with_ignored(false).is_ignored());

        // vgremove: no text, flag kept.
        let gone = ign2.without_text();
        assert_eq!(gone.committed_text(), None);
        assert!(gone.is_ignored());
        assert_eq!(gone.raw_locns.len(), 1);
        assert_eq!(h.without_text().raw_locns, vec![]);
    }

    #[test]
    fn verify_catches_damage() {
        let h = area(0, 64 * KIB);
        let text = b"vg {\n}\n\0".to_vec();
        let loc = h.place_text(&text).unwrap();
        loc.verify(&text).unwrap();
        assert!(matches!(
            verify_text(&loc, &text[1..]),
            Err(MdaError::TextSizeMismatch { .. })
        ));
        let mut bad = text.clone();
        bad[0] = b'w';
        assert!(matches!(
            verify_text(&loc, &bad),
            Err(MdaError::TextChecksum { .. })
        ));
        assert_eq!(loc.split(&text), (&text[..], &[][..]));
    }

    fn occupied(loc: &TextLocation) -> Vec<(u64, u64)> {
        loc.ranges().map(|r| (r.start.0, r.end().0)).collect()
    }

    fn overlaps(a: &TextLocation, b: &TextLocation) -> bool {
        occupied(a)
            .iter()
            .any(|&(a0, a1)| occupied(b).iter().any(|&(b0, b1)| a0 < b1 && b0 < a1))
    }

    proptest! {
        #[test]
        fn header_round_trips(
            start in (0u64..1 << 40).prop_map(|s| s * 512),
            size in 1536u64..(1 << 30),
            slots in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()), 0..MAX_RAW_LOCNS),
        ) {
            let mut h = area(start, size);
            h.raw_locns = slots.into_iter().enumerate().map(|(i, (o, n, c, f))| {
                if i < 2 {
                    // Valid geometry for the slots that are checked.
                    let o = 512 + o % (size - 512);
                    let n = 1 + n % (size - 512);
                    RawLocn { offset: Bytes(o), size: Bytes(n), checksum: c, flags: f }
                } else {
                    RawLocn { offset: Bytes(o), size: Bytes(n), checksum: c, flags: f | 2 }
                }
            }).collect();
            let got = MdaHeader::parse(&h.to_bytes(), Bytes(start)).unwrap();
            prop_assert_eq!(got, h);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), start in any::<u64>()) {
            if let Ok(h) = MdaHeader::parse(&bytes, Bytes(start)) {
                let _ = h.live_text();
                let _ = h.next_text_location(bytes.len() as u64);
            }
        }

        /// Long runs of commits: every new text lies inside the buffer, never touches the
        /// live one, starts aligned, and the buffer wraps.
        #[test]
        fn commits_never_overlap_the_live_text(
            start in (1u64..1000).prop_map(|s| s * 512),
            size_kib in 32u64..256,
            lens in proptest::collection::vec(1u64..20_000, 1..300),
        ) {
            let mut h = area(start, size_kib * KIB);
            let max = h.max_text_size();
            let mut wrapped = 0;
            for len in lens {
                let len = 2 + len % max.max(1);
                let live = h.live_text();
                let loc = match h.next_text_location(len) {
                    Ok(loc) => loc,
                    Err(e) => {
                        prop_assert!(len > max, "refused {len} <= {max}: {e}");
                        continue;
                    }
                };
                prop_assert_eq!(loc.size.0, len);
                prop_assert_eq!(loc.offset.0 % 512, 0);
                prop_assert_eq!(loc.ranges().map(|r| r.len.0).sum::<u64>(), len);
                for (a, b) in occupied(&loc) {
                    prop_assert!(a >= start + 512 && b <= start + size_kib * KIB && a < b);
                }
                if let Some(second) = loc.second {
                    wrapped += 1;
                    prop_assert_eq!(loc.first.end(), h.end());
                    prop_assert_eq!(second.start.0, start + 512);
                }
                if let Some(live) = live {
                    prop_assert!(!overlaps(&loc, &live), "{loc:?} overlaps {live:?}");
                }
                h = h.with_live_text(&loc);
                prop_assert_eq!(h.live_text(), Some(loc));
                prop_assert_eq!(MdaHeader::parse(&h.to_bytes(), h.start).unwrap(), h.clone());
            }
            let _ = wrapped;
        }

        #[test]
        fn wrapping_happens(lens in proptest::collection::vec(500u64..15_000, 20..40)) {
            let mut h = area(4096, 32 * KIB);
            let mut wrapped = false;
            for len in lens {
                let loc = h.next_text_location(len).unwrap();
                wrapped |= loc.second.is_some() || loc.offset.0 < h.committed().offset.0;
                h = h.with_live_text(&loc);
            }
            prop_assert!(wrapped);
        }
    }
}
