//! Device selection: `auto` (CUDA when available, else CPU, as the reference's
//! `torch.device("cuda" if torch.cuda.is_available() else "cpu")`), `cpu`, `cuda`, `cuda:N`.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use tch::{Cuda, Device};

use crate::error::{Error, Result};

/// A device as the user asked for it, resolved against the machine by [`DeviceSpec::resolve`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The first CUDA device when one is available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device by index (`cuda` means `cuda:0`).
    Cuda(usize),
}

impl DeviceSpec {
    /// The concrete device.
    ///
    /// # Errors
    /// [`Error::DeviceUnavailable`] when a CUDA device is asked for and this process sees none
    /// with that index.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceSpec::Auto => Ok(Device::cuda_if_available()),
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(i) => {
                let count = Cuda::device_count();
                if (i as i64) < count {
                    Ok(Device::Cuda(i))
                } else {
                    let reason = if count == 0 {
                        format!("no CUDA device is visible (see `{}`)", crate::program::command(&["info"]))
                    } else {
                        format!("only {count} CUDA device(s) are visible (cuda:0..cuda:{})", count - 1)
                    };
                    Err(Error::DeviceUnavailable { requested: self.to_string(), reason })
                }
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidConfig {
            field: "device",
            value: s.to_string(),
            expected: "one of auto, cpu, cuda, cuda:N".to_string(),
        };
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(DeviceSpec::Cuda).ok_or_else(bad),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

/// The CPUs this process may run on (logical ones: cores, or hardware threads where a core has
/// several), or `None` where the system does not say.
pub fn logical_cpus() -> Option<usize> {
    std::thread::available_parallelism().ok().map(usize::from)
}

/// A short name for a resolved device, as PyTorch prints it (`cpu`, `cuda:0`).
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Cpu => "cpu".to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_device_specs() {
        for (s, d) in [("auto", DeviceSpec::Auto), ("cpu", DeviceSpec::Cpu), ("cuda:3", DeviceSpec::Cuda(3))] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn cuda_beyond_visible_devices_is_an_error() {
        let err = DeviceSpec::Cuda(1000).resolve().unwrap_err();
        assert!(err.to_string().contains("cuda:1000"), "{err}");
    }
}
