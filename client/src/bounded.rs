//! Reading bytes someone else chose the length of: a log's or a registry's
//! answer, a file named on the command line, a bundle on disk.
//!
//! # Contract
//! [`read_bounded`] reads at most `limit + 1` bytes whatever the source
//! holds, so the memory it spends is bounded by the caller, never by the
//! sender; a source holding more than `limit` bytes is
//! [`BoundedReadError::TooLarge`], never a silently truncated value.

use std::io::Read;

/// Why [`read_bounded`] returned no bytes.
#[derive(Debug, thiserror::Error)]
pub enum BoundedReadError {
    /// The source holds more than the limit (only `limit + 1` bytes of it
    /// were read).
    #[error("larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// All of `source`, if it holds at most `limit` bytes.
pub fn read_bounded(source: impl Read, limit: u64) -> Result<Vec<u8>, BoundedReadError> {
    let mut bytes = Vec::new();
    source
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(BoundedReadError::TooLarge { limit });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_refuses_one_byte_more() {
        assert_eq!(read_bounded(&b"abc"[..], 3).unwrap(), b"abc");
        assert_eq!(read_bounded(&b""[..], 0).unwrap(), b"");
        let err = read_bounded(&b"abcd"[..], 3).unwrap_err();
        assert!(matches!(err, BoundedReadError::TooLarge { limit: 3 }));
        assert_eq!(err.to_string(), "larger than 3 bytes");
    }

    #[test]
    fn an_endless_source_is_read_only_to_the_limit() {
        let err = read_bounded(std::io::repeat(7), 1 << 20).unwrap_err();
        assert!(matches!(err, BoundedReadError::TooLarge { .. }));
        // A limit of u64::MAX does not overflow.
        assert_eq!(read_bounded(&b"x"[..], u64::MAX).unwrap(), b"x");
    }
}
