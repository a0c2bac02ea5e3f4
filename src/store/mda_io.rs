//! Reading and writing metadata areas on a device: the byte-level rules live in
//! `format::mda`, this only moves the bytes.

use super::device::Device;
use super::StoreError;
use crate::format::label::DiskLocn;
use crate::format::mda::{
    strip_nul, MdaError, MdaHeader, TextLocation, MDA_HEADER_SIZE, TEXT_ALIGNMENT,
};
use crate::units::Bytes;

/// A metadata area as found on disk.
#[derive(Debug, Clone)]
pub struct MdaOnDisk {
    pub header: MdaHeader,
    /// The live text (without lvm2's trailing NUL); `None` for an empty or ignored area.
    pub text: Option<String>,
    pub location: Option<TextLocation>,
}

/// A text placed in an area and the header that will point at it.
pub struct TextPlan {
    pub location: TextLocation,
    pub text: Vec<u8>,
    pub new_header: MdaHeader,
}

fn mda_err(dev: &Device, start: Bytes) -> impl FnOnce(MdaError) -> StoreError + '_ {
    move |source| StoreError::Mda {
        path: dev.path().to_owned(),
        mda_start: start,
        source,
    }
}

pub fn read_header(dev: &Device, area: &DiskLocn) -> Result<MdaHeader, StoreError> {
    let bytes = dev.read_at(area.offset, MDA_HEADER_SIZE)?;
    header_from(dev, area, &bytes)
}

/// `area`'s header from its first [`MDA_HEADER_SIZE`] bytes, read by the caller along
/// with others (see `scan::Fingerprint::read`); checked as [`read_header`] checks it.
pub fn header_from(dev: &Device, area: &DiskLocn, bytes: &[u8]) -> Result<MdaHeader, StoreError> {
    let header = MdaHeader::parse(bytes, area.offset).map_err(mda_err(dev, area.offset))?;
    if header.size != area.size {
        return Err(StoreError::MdaSizeMismatch {
            path: dev.path().to_owned(),
            mda_start: area.offset,
            label: area.size,
            header: header.size,
        });
    }
    Ok(header)
}

fn read_location(dev: &Device, loc: &TextLocation) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::with_capacity(loc.size.0 as usize);
    for r in loc.ranges() {
        bytes.extend(dev.read_at(r.start, r.len.0)?);
    }
    Ok(bytes)
}

pub fn read_mda(dev: &Device, area: &DiskLocn) -> Result<MdaOnDisk, StoreError> {
    let header = read_header(dev, area)?;
    let Some(location) = header.live_text() else {
        return Ok(MdaOnDisk {
            header,
            text: None,
            location: None,
        });
    };
    let bytes = read_location(dev, &location)?;
    location.verify(&bytes).map_err(mda_err(dev, area.offset))?;
    let text =
        String::from_utf8(strip_nul(&bytes).to_vec()).map_err(|_| StoreError::TextNotUtf8 {
            path: dev.path().to_owned(),
            mda_start: area.offset,
        })?;
    Ok(MdaOnDisk {
        header,
        text: Some(text),
        location: Some(location),
    })
}

/// Plans the next text in an area; `None` for an area lvm2 keeps ignored.
pub fn plan_text(
    dev: &Device,
    header: &MdaHeader,
    text: &[u8],
) -> Result<Option<TextPlan>, StoreError> {
    if header.is_ignored() {
        return Ok(None);
    }
    // lvm2 stores a NUL after the text and counts it in the size.
    let mut stored = Vec::with_capacity(text.len() + 1);
    stored.extend_from_slice(text);
    stored.push(0);
    let location = header
        .place_text(&stored)
        .map_err(mda_err(dev, header.start))?;
    Ok(Some(TextPlan {
        new_header: header.with_live_text(&location),
        location,
        text: stored,
    }))
}

/// Writes the text's pieces, each padded with zeros to the end of its sector as lvm2
/// does, so no bytes of an older text linger right behind the new one. Texts start on
/// sector boundaries and never touch the live one, so the padding cannot reach it.
pub fn write_text(dev: &Device, plan: &TextPlan) -> Result<(), StoreError> {
    let (a, b) = plan.location.split(&plan.text);
    let pieces = std::iter::once((plan.location.first.start, a))
        .chain(plan.location.second.map(|r| (r.start, b)));
    for (start, bytes) in pieces {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().next_multiple_of(TEXT_ALIGNMENT as usize), 0);
        let end = (start + Bytes(padded.len() as u64)).min(dev.size());
        padded.truncate((end - start).0 as usize);
        dev.write_at(start, &padded)?;
    }
    Ok(())
}

pub fn write_header(dev: &Device, header: &MdaHeader) -> Result<(), StoreError> {
    dev.write_at(header.start, &header.to_bytes())
}
