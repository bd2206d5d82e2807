//! `root=` as the kernel command line names the device: a path, `MAJ:MIN`,
//! `UUID=`, `LABEL=`, `PARTUUID=` or `PARTLABEL=`.

use std::fmt;

/// How `root=` names the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `/dev/NAME` (NAME as in `/sys/class/block`, `/` written as `!`).
    Name(String),
    /// `MAJ:MIN` in decimal.
    Number {
        major: u32,
        minor: u32,
    },
    /// Filesystem UUID (compared case-insensitively).
    Uuid(String),
    Label(String),
    /// GPT unique partition GUID, or MBR `SSSSSSSS-PP`.
    PartUuid(String),
    /// GPT partition name.
    PartLabel(String),
}

/// A `root=` value we cannot interpret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpecError {
    pub spec: String,
}

impl fmt::Display for DeviceSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "root device {:?} is not /dev/NAME, MAJ:MIN, UUID=, LABEL=, PARTUUID= or PARTLABEL=",
            self.spec
        )
    }
}

impl std::error::Error for DeviceSpecError {}

impl DeviceSpec {
    /// Parses a `root=` value. Quotes around the value are removed.
    pub fn parse(raw: &str) -> Result<DeviceSpec, DeviceSpecError> {
        let s = raw.trim().trim_matches('"');
        let err = || DeviceSpecError {
            spec: raw.to_string(),
        };
        let nonempty = |v: &str| {
            if v.is_empty() {
                Err(err())
            } else {
                Ok(v.to_string())
            }
        };
        if let Some(v) = s.strip_prefix("UUID=") {
            return nonempty(v).map(DeviceSpec::Uuid);
        }
        if let Some(v) = s.strip_prefix("LABEL=") {
            return nonempty(v).map(DeviceSpec::Label);
        }
        if let Some(v) = s.strip_prefix("PARTUUID=") {
            return nonempty(v).map(DeviceSpec::PartUuid);
        }
        if let Some(v) = s.strip_prefix("PARTLABEL=") {
            return nonempty(v).map(DeviceSpec::PartLabel);
        }
        if let Some(v) = s.strip_prefix("/dev/") {
            // No udev here, so /dev/disk/by-* links do not exist; map them
            // to the tag they stand for.
            if let Some(u) = v.strip_prefix("disk/by-uuid/") {
                return nonempty(u).map(DeviceSpec::Uuid);
            }
            if let Some(u) = v.strip_prefix("disk/by-label/") {
                return nonempty(u).map(DeviceSpec::Label);
            }
            if let Some(u) = v.strip_prefix("disk/by-partuuid/") {
                return nonempty(u).map(DeviceSpec::PartUuid);
            }
            if v.is_empty() || v.split('/').any(|c| c.is_empty() || c == "..") {
                return Err(err());
            }
            return Ok(DeviceSpec::Name(v.replace('/', "!")));
        }
        if let Some((ma, mi)) = s.split_once(':') {
            if let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) {
                return Ok(DeviceSpec::Number { major, minor });
            }
        }
        Err(err())
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Name(n) => write!(f, "/dev/{}", n.replace('!', "/")),
            DeviceSpec::Number { major, minor } => write!(f, "{major}:{minor}"),
            DeviceSpec::Uuid(u) => write!(f, "UUID={u}"),
            DeviceSpec::Label(l) => write!(f, "LABEL={l}"),
            DeviceSpec::PartUuid(u) => write!(f, "PARTUUID={u}"),
            DeviceSpec::PartLabel(l) => write!(f, "PARTLABEL={l}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn parses_device_specs() {
        assert_eq!(
            DeviceSpec::parse("/dev/vda1"),
            Ok(DeviceSpec::Name("vda1".into()))
        );
        assert_eq!(
            DeviceSpec::parse("/dev/cciss/c0d0"),
            Ok(DeviceSpec::Name("cciss!c0d0".into()))
        );
        assert_eq!(
            DeviceSpec::parse("UUID=ab-cd"),
            Ok(DeviceSpec::Uuid("ab-cd".into()))
        );
        assert_eq!(
            DeviceSpec::parse("\"LABEL=my root\""),
            Ok(DeviceSpec::Label("my root".into()))
        );
        assert_eq!(
            DeviceSpec::parse("PARTUUID=x"),
            Ok(DeviceSpec::PartUuid("x".into()))
        );
        assert_eq!(
            DeviceSpec::parse("PARTLABEL=p"),
            Ok(DeviceSpec::PartLabel("p".into()))
        );
        assert_eq!(
            DeviceSpec::parse("/dev/disk/by-uuid/1234"),
            Ok(DeviceSpec::Uuid("1234".into()))
        );
        assert_eq!(
            DeviceSpec::parse("254:1"),
            Ok(DeviceSpec::Number {
                major: 254,
                minor: 1
            })
        );
        for bad in [
            "",
            "UUID=",
            "vda",
            "/dev/",
            "/dev/../etc",
            "x:y",
            "/dev/a//b",
        ] {
            assert!(DeviceSpec::parse(bad).is_err(), "{bad:?} must not parse");
        }
        assert_eq!(
            DeviceSpec::parse("/dev/cciss/c0d0").map(|d| d.to_string()),
            Ok("/dev/cciss/c0d0".into())
        );
    }
}
