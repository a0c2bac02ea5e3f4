//! Typed sizes. LVM2 mixes bytes (labels, metadata areas), 512-byte sectors (text
//! metadata, device-mapper tables) and extents (allocation); each has its own type so
//! that a size in the wrong unit does not compile.

use serde::Serialize;
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// Bytes in a sector, as LVM2 and device-mapper count them (independent of the
/// device's logical block size).
pub const SECTOR_SIZE: u64 = 512;

macro_rules! unit {
    ($name:ident, $suffix:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            pub const ZERO: $name = $name(0);

            pub fn checked_add(self, other: $name) -> Option<$name> {
                self.0.checked_add(other.0).map($name)
            }
            pub fn checked_sub(self, other: $name) -> Option<$name> {
                self.0.checked_sub(other.0).map($name)
            }
            pub fn checked_mul(self, factor: u64) -> Option<$name> {
                self.0.checked_mul(factor).map($name)
            }
        }

        // Sums saturate: sizes come from metadata on disk, and a sum that cannot be
        // represented must compare as huge (and fail a bounds check), never wrap small.
        impl Add for $name {
            type Output = $name;
            fn add(self, other: $name) -> $name {
                $name(self.0.saturating_add(other.0))
            }
        }
        impl AddAssign for $name {
            fn add_assign(&mut self, other: $name) {
                self.0 = self.0.saturating_add(other.0);
            }
        }
        impl Sub for $name {
            type Output = $name;
            fn sub(self, other: $name) -> $name {
                $name(self.0 - other.0)
            }
        }
        impl SubAssign for $name {
            fn sub_assign(&mut self, other: $name) {
                self.0 -= other.0;
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", self.0, $suffix)
            }
        }
    };
}

unit!(Bytes, "B");
unit!(Sectors, "s");
unit!(Extents, "e");

impl Bytes {
    /// Whole sectors, or `None` when the size is not a multiple of 512.
    pub fn to_sectors_exact(self) -> Option<Sectors> {
        (self.0 % SECTOR_SIZE == 0).then_some(Sectors(self.0 / SECTOR_SIZE))
    }
    /// Sectors, rounding a partial sector down.
    pub fn to_sectors_floor(self) -> Sectors {
        Sectors(self.0 / SECTOR_SIZE)
    }
    /// Sectors, rounding a partial sector up.
    pub fn to_sectors_ceil(self) -> Sectors {
        Sectors(self.0.div_ceil(SECTOR_SIZE))
    }
}

impl Sectors {
    pub fn to_bytes(self) -> Bytes {
        Bytes(self.0.saturating_mul(SECTOR_SIZE))
    }
}

/// The size of one extent of a volume group, in sectors. Never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ExtentSize(Sectors);

impl ExtentSize {
    /// lvm2's default: 4 MiB.
    pub const DEFAULT: ExtentSize = ExtentSize(Sectors(8192));

    /// lvm2 accepts any power of two of at least one KiB (2 sectors); we do the same.
    pub fn new(sectors: Sectors) -> Option<ExtentSize> {
        (sectors.0 >= 2 && sectors.0.is_power_of_two()).then_some(ExtentSize(sectors))
    }
    pub fn sectors(self) -> Sectors {
        self.0
    }
    pub fn bytes(self) -> Bytes {
        self.0.to_bytes()
    }
    /// The sectors spanned by `n` extents (saturating, like the sums above).
    pub fn span(self, n: Extents) -> Sectors {
        Sectors(n.0.saturating_mul(self.0 .0))
    }
    /// How many whole extents fit in `s` (partial extent dropped).
    pub fn extents_floor(self, s: Sectors) -> Extents {
        Extents(s.0 / self.0 .0)
    }
    /// Extents needed to hold `s` (partial extent rounded up).
    pub fn extents_ceil(self, s: Sectors) -> Extents {
        Extents(s.0.div_ceil(self.0 .0))
    }
}

impl fmt::Display for ExtentSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", human_bytes(self.bytes()))
    }
}

/// A size for people: `4MiB`, `1.50GiB`, `512B`.
pub fn human_bytes(b: Bytes) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if b.0 < 1024 {
        return format!("{}B", b.0);
    }
    let mut value = b.0 as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{}{}", value as u64, UNITS[unit])
    } else {
        format!("{:.2}{}", value, UNITS[unit])
    }
}

/// Parses a size as people write it: `1048576`, `64MiB`, `64M`, `1G`, `1.5GiB`, `512B`,
/// and Kubernetes' `1Gi`.
/// Suffixes are binary (K = KiB), as lvm2's own `-L` treats them.
pub fn parse_size(text: &str) -> Result<Bytes, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("size {text:?} does not start with a number"));
    }
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        "p" | "pb" | "pi" | "pib" => 50,
        other => return Err(format!("size {text:?} has an unknown unit {other:?}")),
    };
    let bytes = if num.contains('.') {
        let v: f64 = num
            .parse()
            .map_err(|_| format!("size {text:?} is not a number"))?;
        let b = v * (1u64 << shift) as f64;
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err(format!("size {text:?} is too large"));
        }
        b.round() as u64
    } else {
        let v: u64 = num
            .parse()
            .map_err(|_| format!("size {text:?} is not a number"))?;
        v.checked_mul(1u64 << shift)
            .ok_or_else(|| format!("size {text:?} is too large"))?
    };
    Ok(Bytes(bytes))
}

/// A size in a config file: a number of bytes or [`parse_size`]'s text (`"64MiB"`),
/// for `#[serde(deserialize_with = "...")]`.
pub fn deserialize_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match <Raw as serde::Deserialize>::deserialize(d)? {
        Raw::Int(n) => Ok(Bytes(n)),
        Raw::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_math() {
        let es = ExtentSize::DEFAULT;
        assert_eq!(es.bytes(), Bytes(4 << 20));
        assert_eq!(es.extents_ceil(Sectors(8193)), Extents(2));
        assert_eq!(es.extents_floor(Sectors(8193)), Extents(1));
        assert_eq!(es.span(Extents(3)), Sectors(3 * 8192));
        assert!(ExtentSize::new(Sectors(3)).is_none());
        assert!(ExtentSize::new(Sectors(1)).is_none());
        assert!(ExtentSize::new(Sectors(2)).is_some());
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("64MiB").unwrap(), Bytes(64 << 20));
        assert_eq!(parse_size("64M").unwrap(), Bytes(64 << 20));
        assert_eq!(parse_size("1G").unwrap(), Bytes(1 << 30));
        assert_eq!(parse_size("1.5GiB").unwrap(), Bytes(3 << 29));
        assert_eq!(parse_size("4096").unwrap(), Bytes(4096));
        assert!(parse_size("12Q").unwrap_err().contains("\"q\""));
        assert!(parse_size("MiB").is_err());
        // Kubernetes' binary suffixes, as written in volumeAttributes.
        assert_eq!(parse_size("1Gi").unwrap(), Bytes(1 << 30));
        assert_eq!(parse_size("512Mi").unwrap(), Bytes(512 << 20));
        assert!(parse_size("99999999999999999999").is_err());
        assert_eq!(human_bytes(Bytes(4 << 20)), "4MiB");
        assert_eq!(human_bytes(Bytes(3 << 29)), "1.50GiB");
        assert_eq!(human_bytes(Bytes(100)), "100B");
    }
}
