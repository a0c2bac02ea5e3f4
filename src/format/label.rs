//! The PV label: one 512-byte sector among the first four of a PV (lvm2 writes sector 1)
//! holding the PV's uuid, size and where its data, metadata and bootloader areas are.
//!
//! Layout (little-endian), from lvm2's `lib/label/label.h` and `lib/format_text/layout.h`:
//! ```text
//!   0  "LABELONE"
//!   8  u64  number of the sector the label sits in
//!  16  u32  CRC of bytes 20..512
//!  20  u32  offset of the PV header in the sector (lvm2 writes 32)
//!  24  "LVM2 001"
//!  32  PV header: 32-byte uuid, u64 device size in bytes,
//!      data areas {u64 offset, u64 size}..., {0, 0},
//!      metadata areas {u64 offset, u64 size}..., {0, 0},
//!      extension: u32 version, u32 flags, bootloader areas {u64, u64}..., {0, 0}
//! ```

use crate::format::crc::lvm_crc;
use crate::units::{Bytes, SECTOR_SIZE};
use crate::uuid::{Uuid, UuidError, UUID_LEN};
use std::fmt;

/// lvm2 reads this many bytes from the start of a device to look for a label.
pub const LABEL_SCAN_BYTES: usize = 2048;
/// Sectors that may hold the label.
pub const LABEL_SCAN_SECTORS: u64 = LABEL_SCAN_BYTES as u64 / SECTOR_SIZE;
pub const LABEL_ID: &[u8; 8] = b"LABELONE";
pub const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
/// The sector lvm2 writes the label to.
pub const DEFAULT_LABEL_SECTOR: u64 = 1;
/// Extension flag: the PV belongs to a VG (lets lvm2 tell a PV whose VG metadata is lost
/// from an unused one).
pub const PV_EXT_USED: u32 = 1;
/// The extension version lvm2 2.03 writes (1 added bootloader areas, 2 the flags).
pub const PV_HEADER_EXTENSION_VSN: u32 = 2;

const LABEL_HEADER_SIZE: usize = 32;
const PV_HEADER_FIXED: usize = UUID_LEN + 8;
const LOCN_SIZE: usize = 16;
const SECTOR: usize = SECTOR_SIZE as usize;
/// Bytes after the PV header's fixed part when it sits at its usual offset.
const LIST_ROOM: usize = SECTOR - LABEL_HEADER_SIZE - PV_HEADER_FIXED;
/// The most areas (of all three kinds together) one label can list: room for the
/// extension's version and flags, and for each list's terminator.
pub const MAX_AREAS: usize = (LIST_ROOM - 8) / LOCN_SIZE - 3;
/// Without the extension (version 0) only its version word and two terminators are needed.
const MAX_AREAS_NO_EXT: usize = (LIST_ROOM - 4) / LOCN_SIZE - 2;

fn max_areas(ext_version: u32) -> usize {
    if ext_version == 0 {
        MAX_AREAS_NO_EXT
    } else {
        MAX_AREAS
    }
}

/// An area of the device, in bytes from its start. A data area of size 0 runs to the
/// end of the device (that is what lvm2 writes: `{pe_start, 0}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiskLocn {
    pub offset: Bytes,
    pub size: Bytes,
}

/// The three kinds of area a label lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AreaKind {
    Data,
    Metadata,
    Bootloader,
}

impl fmt::Display for AreaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AreaKind::Data => "data area",
            AreaKind::Metadata => "metadata area",
            AreaKind::Bootloader => "bootloader area",
        })
    }
}

/// 8 bytes from disk, shown escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag8(pub [u8; 8]);

impl fmt::Display for Tag8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label in sector {sector} says it belongs in sector {stored}")]
    WrongSector { sector: u64, stored: u64 },
    #[error("label in sector {sector} has checksum {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        sector: u64,
        stored: u32,
        computed: u32,
    },
    #[error("label in sector {sector} has type {found}, expected \"LVM2 001\"")]
    WrongType { sector: u64, found: Tag8 },
    #[error("label in sector {sector} puts its PV header at byte {offset}, outside the sector")]
    BadHeaderOffset { sector: u64, offset: u32 },
    #[error("label in sector {sector}: {source}")]
    BadUuid {
        sector: u64,
        #[source]
        source: UuidError,
    },
    #[error("label in sector {sector}: the {kind} list is not terminated within the sector")]
    UnterminatedList { sector: u64, kind: AreaKind },
    #[error("label in sector {sector}: the header extension does not fit in the sector")]
    TruncatedExtension { sector: u64 },
    #[error("{kind} at byte {offset} is not sector aligned")]
    Misaligned { kind: AreaKind, offset: u64 },
    #[error("{kind} at byte {offset} with size {size} runs past 2^64")]
    AreaOverflow {
        kind: AreaKind,
        offset: u64,
        size: u64,
    },
    #[error("{kind} at byte {offset} size {size} lies outside the device ({device_size} bytes)")]
    OutsideDevice {
        kind: AreaKind,
        offset: u64,
        size: u64,
        device_size: u64,
    },
    #[error("{kind} at byte {offset} size {size} overlaps the label in sector {sector}")]
    OverlapsLabel {
        kind: AreaKind,
        offset: u64,
        size: u64,
        sector: u64,
    },
    #[error("{a} at byte {a_offset} size {a_size} overlaps {b} at byte {b_offset} size {b_size}")]
    AreasOverlap {
        a: AreaKind,
        a_offset: u64,
        a_size: u64,
        b: AreaKind,
        b_offset: u64,
        b_size: u64,
    },
    #[error("metadata area at byte {offset} has size {size}, smaller than its 512-byte header")]
    MetadataAreaTooSmall { offset: u64, size: u64 },
    #[error("{kind} at offset 0 cannot be stored: offset 0 ends the list on disk")]
    ZeroOffset { kind: AreaKind },
    #[error("label sector {sector} is not one of the first four")]
    SectorOutOfRange { sector: u64 },
    #[error("{count} areas do not fit in a label (at most {max})")]
    TooManyAreas { count: usize, max: usize },
    #[error("bootloader areas need the PV header extension (version 0 has none)")]
    BootloaderWithoutExtension,
}

/// A PV label as lvm2 reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvLabel {
    /// Which of sectors 0..=3 the label lives in.
    pub sector: u64,
    pub pv_uuid: Uuid,
    /// The device size recorded at `pvcreate`/`pvresize` time.
    pub device_size: Bytes,
    /// Normally one: `{pe_start, 0}`.
    pub data_areas: Vec<DiskLocn>,
    /// Zero, one (at 4096) or two (the second at the end of the device).
    pub metadata_areas: Vec<DiskLocn>,
    /// 0 for PVs written before the extension existed (they have no flags and no
    /// bootloader areas); lvm2 2.03 writes [`PV_HEADER_EXTENSION_VSN`].
    pub ext_version: u32,
    pub ext_flags: u32,
    pub bootloader_areas: Vec<DiskLocn>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads a list of `{offset, size}` ending, as lvm2 reads it, at the first entry whose
/// offset is 0. Returns the list and the position after the terminator.
fn read_list(
    s: &[u8],
    mut at: usize,
    sector: u64,
    kind: AreaKind,
) -> Result<(Vec<DiskLocn>, usize), LabelError> {
    let mut list = Vec::new();
    loop {
        if at + LOCN_SIZE > s.len() {
            return Err(LabelError::UnterminatedList { sector, kind });
        }
        let offset = u64_at(s, at);
        let size = u64_at(s, at + 8);
        at += LOCN_SIZE;
        if offset == 0 {
            return Ok((list, at));
        }
        list.push(DiskLocn {
            offset: Bytes(offset),
            size: Bytes(size),
        });
    }
}

impl PvLabel {
    /// A label for a new PV as lvm2 2.03 makes one: in sector 1, extension version 2.
    pub fn new(
        pv_uuid: Uuid,
        device_size: Bytes,
        data_areas: Vec<DiskLocn>,
        metadata_areas: Vec<DiskLocn>,
    ) -> PvLabel {
        PvLabel {
            sector: DEFAULT_LABEL_SECTOR,
            pv_uuid,
            device_size,
            data_areas,
            metadata_areas,
            ext_version: PV_HEADER_EXTENSION_VSN,
            ext_flags: 0,
            bootloader_areas: Vec::new(),
        }
    }

    /// Whether the PV says it belongs to a VG.
    pub fn is_used(&self) -> bool {
        self.ext_flags & PV_EXT_USED != 0
    }

    /// Looks for the label in the first sectors of a device (pass [`LABEL_SCAN_BYTES`];
    /// a shorter slice is scanned as far as it goes).
    ///
    /// Like lvm2, sectors 0..=3 are tried in order and the first sector with `LABELONE`,
    /// its own sector number, a good checksum and type `LVM2 001` is the label; a sector
    /// failing one of those is passed over. The label so chosen must then be well formed,
    /// or that is an error (lvm2 would use it, so skipping to a later one would disagree
    /// with lvm2). When no sector qualifies but some had `LABELONE`, the first such
    /// sector's fault is returned: a device that once was a PV should not pass as blank.
    ///
    /// lvm2 also takes a sector with type `LVM2 001` but no `LABELONE` (and so no checks
    /// at all); lvm2 never writes one and we do not accept it.
    pub fn find(first_sectors: &[u8]) -> Result<Option<PvLabel>, LabelError> {
        let mut first_fault = None;
        for sector in 0..LABEL_SCAN_SECTORS {
            let at = (sector * SECTOR_SIZE) as usize;
            let Some(s) = first_sectors.get(at..at + SECTOR) else {
                break;
            };
            if &s[..8] != LABEL_ID {
                continue;
            }
            match check_label_header(s, sector) {
                Ok(()) => {
                    let label = parse_pv_header(s, sector)?;
                    label.check()?;
                    return Ok(Some(label));
                }
                Err(e) => {
                    first_fault.get_or_insert(e);
                }
            }
        }
        match first_fault {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Checks what [`PvLabel::find`] checks of a label's contents, and that it fits in a
    /// sector: call it before [`PvLabel::to_sector`] on a label you built.
    pub fn check(&self) -> Result<(), LabelError> {
        if self.sector >= LABEL_SCAN_SECTORS {
            return Err(LabelError::SectorOutOfRange {
                sector: self.sector,
            });
        }
        let count = self.data_areas.len() + self.metadata_areas.len() + self.bootloader_areas.len();
        let max = max_areas(self.ext_version);
        if count > max {
            return Err(LabelError::TooManyAreas { count, max });
        }
        if self.ext_version == 0 && !self.bootloader_areas.is_empty() {
            return Err(LabelError::BootloaderWithoutExtension);
        }
        let label_start = self.sector * SECTOR_SIZE;
        let label_end = label_start + SECTOR_SIZE;
        let dev = self.device_size.0;
        // (kind, start, end-exclusive); a data area of size 0 runs to the end of the device.
        let mut spans: Vec<(AreaKind, u64, u64, u64)> = Vec::with_capacity(count);
        for (kind, list) in self.areas() {
            for a in list {
                let (offset, size) = (a.offset.0, a.size.0);
                if offset == 0 {
                    return Err(LabelError::ZeroOffset { kind });
                }
                if offset % SECTOR_SIZE != 0 {
                    return Err(LabelError::Misaligned { kind, offset });
                }
                let end = offset.checked_add(size).ok_or(LabelError::AreaOverflow {
                    kind,
                    offset,
                    size,
                })?;
                if kind == AreaKind::Metadata && size < crate::format::mda::MDA_HEADER_SIZE {
                    return Err(LabelError::MetadataAreaTooSmall { offset, size });
                }
                let open_ended = kind == AreaKind::Data && size == 0;
                let end = if open_ended { u64::MAX } else { end };
                // A device size of 0 means unknown; lvm2 never writes one for a real PV.
                if dev != 0 && (offset >= dev || (!open_ended && end > dev)) {
                    return Err(LabelError::OutsideDevice {
                        kind,
                        offset,
                        size,
                        device_size: dev,
                    });
                }
                if offset < label_end && end > label_start && (size != 0 || open_ended) {
                    return Err(LabelError::OverlapsLabel {
                        kind,
                        offset,
                        size,
                        sector: self.sector,
                    });
                }
                spans.push((kind, offset, end, size));
            }
        }
        for (i, &(ak, a0, a1, asz)) in spans.iter().enumerate() {
            for &(bk, b0, b1, bsz) in &spans[i + 1..] {
                // lvm2 writes the data area as {pe_start, 0} and a second metadata area
                // at the end of the device, "inside" that open-ended area: pe_count in the
                // VG metadata is what keeps extents off it. So an open-ended data area
                // only conflicts with areas that start before it and run into it.
                let a_open = ak == AreaKind::Data && asz == 0;
                let b_open = bk == AreaKind::Data && bsz == 0;
                let clash = match (a_open, b_open) {
                    (false, false) => a0 < b1 && b0 < a1 && asz != 0 && bsz != 0,
                    (true, false) => b0 < a0 && b1 > a0,
                    (false, true) => a0 < b0 && a1 > b0,
                    (true, true) => true,
                };
                if clash {
                    return Err(LabelError::AreasOverlap {
                        a: ak,
                        a_offset: a0,
                        a_size: asz,
                        b: bk,
                        b_offset: b0,
                        b_size: bsz,
                    });
                }
            }
        }
        Ok(())
    }

    fn areas(&self) -> [(AreaKind, &[DiskLocn]); 3] {
        [
            (AreaKind::Data, &self.data_areas),
            (AreaKind::Metadata, &self.metadata_areas),
            (AreaKind::Bootloader, &self.bootloader_areas),
        ]
    }

    /// The whole label sector, checksum included, to be written at `sector * 512`.
    ///
    /// # Panics
    /// If the label does not pass [`PvLabel::check`] for size: more than [`MAX_AREAS`]
    /// areas, or a sector number past 3. Other checks are not enforced here; bootloader
    /// areas of a label without extension (version 0) are not written.
    pub fn to_sector(&self) -> [u8; 512] {
        assert!(
            self.sector < LABEL_SCAN_SECTORS,
            "label sector {} is not one of the first four",
            self.sector
        );
        let count = self.data_areas.len() + self.metadata_areas.len() + self.bootloader_areas.len();
        let max = max_areas(self.ext_version);
        assert!(
            count <= max,
            "{count} areas do not fit in a label (at most {max})"
        );
        let mut s = [0u8; SECTOR];
        s[0..8].copy_from_slice(LABEL_ID);
        s[8..16].copy_from_slice(&self.sector.to_le_bytes());
        s[20..24].copy_from_slice(&(LABEL_HEADER_SIZE as u32).to_le_bytes());
        s[24..32].copy_from_slice(LABEL_TYPE);
        let mut at = LABEL_HEADER_SIZE;
        s[at..at + UUID_LEN].copy_from_slice(self.pv_uuid.as_raw());
        at += UUID_LEN;
        s[at..at + 8].copy_from_slice(&self.device_size.0.to_le_bytes());
        at += 8;
        let put_list = |s: &mut [u8; SECTOR], at: &mut usize, list: &[DiskLocn]| {
            for a in list {
                s[*at..*at + 8].copy_from_slice(&a.offset.0.to_le_bytes());
                s[*at + 8..*at + 16].copy_from_slice(&a.size.0.to_le_bytes());
                *at += LOCN_SIZE;
            }
            // The terminator is already zero.
            *at += LOCN_SIZE;
        };
        put_list(&mut s, &mut at, &self.data_areas);
        put_list(&mut s, &mut at, &self.metadata_areas);
        // Version 0 means "no extension": leave it all zero, as pre-extension lvm2 did.
        if self.ext_version != 0 {
            s[at..at + 4].copy_from_slice(&self.ext_version.to_le_bytes());
            s[at + 4..at + 8].copy_from_slice(&self.ext_flags.to_le_bytes());
            at += 8;
            put_list(&mut s, &mut at, &self.bootloader_areas);
        }
        let crc = lvm_crc(&s[20..]);
        s[16..20].copy_from_slice(&crc.to_le_bytes());
        s
    }
}

/// The checks lvm2 makes before it takes a sector as the label; failing them, lvm2 looks
/// at the next sector.
fn check_label_header(s: &[u8], sector: u64) -> Result<(), LabelError> {
    let stored_sector = u64_at(s, 8);
    if stored_sector != sector {
        return Err(LabelError::WrongSector {
            sector,
            stored: stored_sector,
        });
    }
    let stored = u32_at(s, 16);
    let computed = lvm_crc(&s[20..SECTOR]);
    if stored != computed {
        return Err(LabelError::BadCrc {
            sector,
            stored,
            computed,
        });
    }
    if &s[24..32] != LABEL_TYPE {
        return Err(LabelError::WrongType {
            sector,
            found: Tag8(s[24..32].try_into().expect("8 bytes")),
        });
    }
    Ok(())
}

fn parse_pv_header(s: &[u8], sector: u64) -> Result<PvLabel, LabelError> {
    let offset = u32_at(s, 20);
    // lvm2 follows the offset blindly; it always writes 32. Anything that would put the
    // header over the label header or past the sector is corruption.
    let start = offset as usize;
    if start < LABEL_HEADER_SIZE || start + PV_HEADER_FIXED > SECTOR {
        return Err(LabelError::BadHeaderOffset { sector, offset });
    }
    let pv_uuid = Uuid::from_raw(&s[start..start + UUID_LEN])
        .map_err(|source| LabelError::BadUuid { sector, source })?;
    let device_size = Bytes(u64_at(s, start + UUID_LEN));
    let at = start + PV_HEADER_FIXED;
    let (data_areas, at) = read_list(s, at, sector, AreaKind::Data)?;
    let (metadata_areas, at) = read_list(s, at, sector, AreaKind::Metadata)?;
    if at + 4 > SECTOR {
        return Err(LabelError::TruncatedExtension { sector });
    }
    let ext_version = u32_at(s, at);
    // Version 0: a PV from before the extension; lvm2 reads no flags or bootloader areas.
    // Any other version (lvm2 logs unknown ones and carries on) has both.
    let (ext_flags, bootloader_areas) = if ext_version == 0 {
        (0, Vec::new())
    } else {
        if at + 8 > SECTOR {
            return Err(LabelError::TruncatedExtension { sector });
        }
        let flags = u32_at(s, at + 4);
        let (bas, _) = read_list(s, at + 8, sector, AreaKind::Bootloader)?;
        (flags, bas)
    };
    Ok(PvLabel {
        sector,
        pv_uuid,
        device_size,
        data_areas,
        metadata_areas,
        ext_version,
        ext_flags,
        bootloader_areas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::test_fixtures as fx;
    use proptest::prelude::*;

    fn mib(n: u64) -> Bytes {
        Bytes(n << 20)
    }

    fn sample() -> PvLabel {
        let mut l = PvLabel::new(
            "Jpw4ZB-AE1X-xX1k-xGlB-Jc0c-lGsA-UR!DXp".parse().unwrap(),
            mib(64),
            vec![DiskLocn {
                offset: mib(1),
                size: Bytes(0),
            }],
            vec![DiskLocn {
                offset: Bytes(4096),
                size: Bytes(1044480),
            }],
        );
        l.ext_flags = PV_EXT_USED;
        l
    }

    fn in_scan_area(label: &PvLabel) -> Vec<u8> {
        let mut buf = vec![0u8; LABEL_SCAN_BYTES];
        let at = (label.sector * SECTOR_SIZE) as usize;
        buf[at..at + SECTOR].copy_from_slice(&label.to_sector());
        buf
    }

    #[test]
    fn reads_a_real_label() {
        let l = PvLabel::find(fx::first_4k()).unwrap().unwrap();
        assert_eq!(l.sector, 1);
        assert_eq!(l.pv_uuid.to_string(), fx::PV_UUID);
        assert_eq!(l.device_size, mib(64));
        assert_eq!(
            l.data_areas,
            vec![DiskLocn {
                offset: mib(1),
                size: Bytes(0)
            }]
        );
        assert_eq!(
            l.metadata_areas,
            vec![DiskLocn {
                offset: Bytes(4096),
                size: Bytes(1044480)
            }]
        );
        assert_eq!((l.ext_version, l.ext_flags), (2, PV_EXT_USED));
        assert!(l.bootloader_areas.is_empty());
        assert!(l.is_used());
        // Writing it back gives lvm2's bytes exactly.
        assert_eq!(&l.to_sector()[..], &fx::first_4k()[512..1024]);
    }

    #[test]
    fn reads_a_real_label_with_two_metadata_areas() {
        let l = PvLabel::find(fx::mda2_first_4k()).unwrap().unwrap();
        assert_eq!(l.metadata_areas.len(), 2);
        assert_eq!(l.metadata_areas[0].offset, Bytes(4096));
        let second = l.metadata_areas[1];
        assert_eq!(second.offset.0 + second.size.0, l.device_size.0);
        assert_eq!(second.offset, Bytes(fx::MDA2_START));
        assert_eq!(&l.to_sector()[..], &fx::mda2_first_4k()[512..1024]);
    }

    #[test]
    fn blank_device_has_no_label() {
        assert_eq!(PvLabel::find(&[0u8; LABEL_SCAN_BYTES]).unwrap(), None);
        assert_eq!(PvLabel::find(&[]).unwrap(), None);
        assert_eq!(PvLabel::find(&[0xffu8; 100]).unwrap(), None);
    }

    #[test]
    fn broken_labels_are_errors() {
        let good = in_scan_area(&sample());

        let mut b = good.clone();
        b[600] ^= 1;
        assert!(matches!(
            PvLabel::find(&b),
            Err(LabelError::BadCrc { sector: 1, .. })
        ));

        // A label copied to another sector names the wrong sector.
        let mut b = vec![0u8; LABEL_SCAN_BYTES];
        b[1024..1536].copy_from_slice(&good[512..1024]);
        assert_eq!(
            PvLabel::find(&b),
            Err(LabelError::WrongSector {
                sector: 2,
                stored: 1
            })
        );

        let mut l = sample();
        l.pv_uuid = Uuid::random();
        let mut s = l.to_sector();
        s[24..32].copy_from_slice(b"LVM1 001");
        let crc = lvm_crc(&s[20..]);
        s[16..20].copy_from_slice(&crc.to_le_bytes());
        let e = PvLabel::find(&[[0u8; 512], s].concat()).unwrap_err();
        assert!(matches!(e, LabelError::WrongType { sector: 1, .. }));
        assert!(e.to_string().contains("\"LVM1 001\""), "{e}");
    }

    fn resealed(mut s: [u8; 512], edit: impl FnOnce(&mut [u8; 512])) -> Vec<u8> {
        edit(&mut s);
        let crc = lvm_crc(&s[20..]);
        s[16..20].copy_from_slice(&crc.to_le_bytes());
        [[0u8; 512], s].concat()
    }

    #[test]
    fn bad_contents_are_errors() {
        let s = sample().to_sector();
        let e = PvLabel::find(&resealed(s, |s| s[40] = b'?')).unwrap_err();
        assert!(matches!(e, LabelError::BadUuid { sector: 1, .. }), "{e}");

        let e = PvLabel::find(&resealed(s, |s| s[20] = 8)).unwrap_err();
        assert_eq!(
            e,
            LabelError::BadHeaderOffset {
                sector: 1,
                offset: 8
            }
        );
        let e = PvLabel::find(&resealed(s, |s| {
            s[20..24].copy_from_slice(&500u32.to_le_bytes())
        }))
        .unwrap_err();
        assert!(matches!(e, LabelError::BadHeaderOffset { .. }));

        // Fill everything after the header with non-zero entries: no terminator.
        let e = PvLabel::find(&resealed(s, |s| {
            for b in &mut s[72..] {
                *b = 0x08;
            }
        }))
        .unwrap_err();
        assert_eq!(
            e,
            LabelError::UnterminatedList {
                sector: 1,
                kind: AreaKind::Data
            }
        );
    }

    #[test]
    fn bad_geometry_is_an_error() {
        let mut l = sample();
        l.metadata_areas[0].size = mib(2);
        assert!(matches!(l.check(), Err(LabelError::AreasOverlap { .. })));

        let mut l = sample();
        l.metadata_areas[0].offset = Bytes(512);
        assert!(matches!(l.check(), Err(LabelError::OverlapsLabel { .. })));

        let mut l = sample();
        l.metadata_areas.push(DiskLocn {
            offset: mib(63),
            size: mib(2),
        });
        assert!(matches!(l.check(), Err(LabelError::OutsideDevice { .. })));

        let mut l = sample();
        l.metadata_areas[0].offset = Bytes(4097);
        assert!(matches!(l.check(), Err(LabelError::Misaligned { .. })));

        let mut l = sample();
        l.metadata_areas[0].size = Bytes(100);
        assert!(matches!(
            l.check(),
            Err(LabelError::MetadataAreaTooSmall { .. })
        ));

        let mut l = sample();
        l.data_areas.push(DiskLocn {
            offset: mib(2),
            size: Bytes(0),
        });
        assert!(matches!(l.check(), Err(LabelError::AreasOverlap { .. })));

        let mut l = sample();
        l.data_areas[0].offset = Bytes(u64::MAX - 511);
        l.data_areas[0].size = Bytes(1024);
        l.device_size = Bytes(0);
        assert!(matches!(l.check(), Err(LabelError::AreaOverflow { .. })));

        // A second metadata area at the end of the device sits in the open-ended data area.
        let mut l = sample();
        l.metadata_areas.push(DiskLocn {
            offset: mib(63),
            size: mib(1),
        });
        l.check().unwrap();
        // The errors surface through find too.
        let mut l = sample();
        l.metadata_areas[0].size = mib(2);
        assert!(matches!(
            PvLabel::find(&in_scan_area(&l)),
            Err(LabelError::AreasOverlap { .. })
        ));
    }

    #[test]
    fn lvm2_sector_choice() {
        // A broken label in sector 0 is passed over for a good one in sector 1.
        let mut buf = in_scan_area(&sample());
        buf[..8].copy_from_slice(LABEL_ID);
        assert_eq!(PvLabel::find(&buf).unwrap().unwrap(), sample());

        // Two good labels: the first wins, as in lvm2.
        let mut a = sample();
        a.sector = 0;
        let mut b = sample();
        b.sector = 3;
        b.pv_uuid = Uuid::random();
        let mut buf = in_scan_area(&b);
        buf[..512].copy_from_slice(&a.to_sector());
        assert_eq!(PvLabel::find(&buf).unwrap().unwrap(), a);

        // The first acceptable label is malformed: an error, not the later label.
        let mut buf = in_scan_area(&b);
        buf[..512].copy_from_slice(&resealed(a.to_sector(), |s| s[40] = b'?')[512..]);
        assert!(matches!(
            PvLabel::find(&buf),
            Err(LabelError::BadUuid { sector: 0, .. })
        ));
    }

    #[test]
    fn old_pvs_without_extension() {
        let mut l = sample();
        l.ext_version = 0;
        l.ext_flags = 0;
        let got = PvLabel::find(&in_scan_area(&l)).unwrap().unwrap();
        assert_eq!(got, l);
        assert!(!got.is_used());
        // Version 1 (bootloader areas, no flags defined yet) reads flags all the same.
        let mut l = sample();
        l.ext_version = 1;
        l.metadata_areas[0].size = Bytes(1044480 - 4096);
        l.bootloader_areas.push(DiskLocn {
            offset: Bytes(1044480),
            size: Bytes(4096),
        });
        assert_eq!(PvLabel::find(&in_scan_area(&l)).unwrap().unwrap(), l);
        l.ext_version = 0;
        assert_eq!(l.check(), Err(LabelError::BootloaderWithoutExtension));
    }

    #[test]
    fn most_areas_fit() {
        let mut l = sample();
        l.device_size = Bytes(1 << 40);
        while l.data_areas.len() + l.metadata_areas.len() + l.bootloader_areas.len() < MAX_AREAS {
            let n = l.bootloader_areas.len() as u64;
            l.bootloader_areas.push(DiskLocn {
                offset: mib(100 + n),
                size: mib(1),
            });
        }
        l.data_areas[0].size = mib(10);
        assert_eq!(PvLabel::find(&in_scan_area(&l)).unwrap().unwrap(), l);
        l.bootloader_areas.push(DiskLocn {
            offset: mib(1000),
            size: mib(1),
        });
        assert!(matches!(l.check(), Err(LabelError::TooManyAreas { .. })));
    }

    fn arb_label() -> impl Strategy<Value = PvLabel> {
        // Areas laid out one after another in sector-sized steps so they never overlap.
        (
            0u64..4,
            proptest::collection::vec(0usize..3, 0..MAX_AREAS),
            proptest::collection::vec(1u64..1000, MAX_AREAS),
            prop_oneof![Just(0u32), Just(1), Just(2), any::<u32>()],
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(|(sector, kinds, sizes, ver, flags, open_end)| {
                let mut l = PvLabel::new(Uuid::random(), Bytes(0), vec![], vec![]);
                l.sector = sector;
                l.ext_version = ver;
                l.ext_flags = if ver == 0 { 0 } else { flags };
                let mut at = LABEL_SCAN_BYTES as u64;
                for (i, k) in kinds.iter().enumerate() {
                    let size = Bytes(sizes[i] * SECTOR_SIZE);
                    let a = DiskLocn {
                        offset: Bytes(at),
                        size,
                    };
                    at += size.0;
                    match (k, ver) {
                        (0, _) => l.data_areas.push(a),
                        (1, _) => l.metadata_areas.push(a),
                        (_, 0) => {}
                        _ => l.bootloader_areas.push(a),
                    }
                }
                if open_end {
                    l.data_areas.push(DiskLocn {
                        offset: Bytes(at),
                        size: Bytes(0),
                    });
                    at += SECTOR_SIZE;
                }
                l.device_size = Bytes(at);
                l
            })
    }

    proptest! {
        #[test]
        fn label_round_trips(l in arb_label()) {
            prop_assert!(l.check().is_ok());
            let buf = in_scan_area(&l);
            prop_assert_eq!(PvLabel::find(&buf).unwrap(), Some(l));
        }

        #[test]
        fn find_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2100)) {
            let _ = PvLabel::find(&bytes);
        }

        #[test]
        fn corrupted_label_never_panics(l in arb_label(), at in 20usize..512, val in any::<u8>()) {
            let mut s = l.to_sector();
            s[at] = val;
            let crc = lvm_crc(&s[20..]);
            s[16..20].copy_from_slice(&crc.to_le_bytes());
            let mut buf = vec![0u8; LABEL_SCAN_BYTES];
            let o = (l.sector * SECTOR_SIZE) as usize;
            buf[o..o + 512].copy_from_slice(&s);
            if let Ok(Some(found)) = PvLabel::find(&buf) {
                prop_assert!(found.check().is_ok());
                prop_assert_eq!(PvLabel::find(&in_scan_area(&found)).unwrap(), Some(found));
            }
        }
    }
}
