//! A device class names the devices that compute a unit to the same f32 bits: the exact fold
//! makes a job's scores independent of order, not of the hardware that made the partial
//! sums. Workers state theirs (`WorkerHello.device_class`, made in the worker crate), a job
//! may name one (`attrib submit --device-class`); this is the one check both must pass, run
//! by the client before sending and by the coordinator, which is the authority.

/// Most characters a device class may have: it is shown in listings and stored per job.
pub const MAX_DEVICE_CLASS_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceClassError {
    #[error("the device class is empty")]
    Empty,
    #[error("the device class has {got} characters; at most {MAX_DEVICE_CLASS_CHARS} are allowed")]
    TooLong { got: usize },
    #[error("the device class holds {ch:?} (character {at}); a class is made of A-Z a-z 0-9 . _ + - (e.g. cpu-avx512+libtorch-2.11.0+cpu)")]
    BadChar { ch: char, at: usize },
}

/// Refuses an empty class, one over `MAX_DEVICE_CLASS_CHARS` characters, or one with a
/// character outside `A-Z a-z 0-9 . _ + -` (a class is an identifier: it is compared, listed
/// and written to scores files, never parsed).
pub fn check_device_class(class: &str) -> Result<(), DeviceClassError> {
    if class.is_empty() {
        return Err(DeviceClassError::Empty);
    }
    if let Some((at, ch)) = class
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return Err(DeviceClassError::BadChar { ch, at });
    }
    let got = class.chars().count();
    if got > MAX_DEVICE_CLASS_CHARS {
        return Err(DeviceClassError::TooLong { got });
    }
    Ok(())
}

/// clap's parser for a `--device-class` flag.
pub fn parse_device_class(s: &str) -> Result<String, String> {
    check_device_class(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_short_identifiers() {
        for good in [
            "cpu",
            "cpu-avx512+libtorch-2.11.0+cpu",
            "cuda-sm90+libtorch-2.11.0+cu130",
            "sim_A.1",
        ] {
            assert_eq!(check_device_class(good), Ok(()), "{good}");
        }
        assert_eq!(check_device_class(""), Err(DeviceClassError::Empty));
        let long = "c".repeat(MAX_DEVICE_CLASS_CHARS + 1);
        assert_eq!(
            check_device_class(&long),
            Err(DeviceClassError::TooLong { got: 65 })
        );
        assert_eq!(check_device_class(&long[1..]), Ok(()));
        for (bad, ch, at) in [
            ("cpu avx2", ' ', 3),
            ("gpu/0", '/', 3),
            ("é", 'é', 0),
            ("a\u{1b}", '\u{1b}', 1),
        ] {
            assert_eq!(
                check_device_class(bad),
                Err(DeviceClassError::BadChar { ch, at }),
                "{bad:?}"
            );
        }
        let e = parse_device_class("x;y").unwrap_err();
        assert!(e.contains("A-Z a-z 0-9 . _ + -"), "{e}");
    }
}
