//! Reading the configuration file (behaviour.md §8): at most [`MAX_CONFIG_BYTES`], then parsed and
//! validated by the core ([`Config::from_yaml`]); errors name the file.
//!
//! Files are read through [`read_bounded`] (issue 28, item 9): opened without blocking, refused
//! unless they are regular files (a FIFO at the path would block the reader forever), and read to at
//! most one byte past the limit (a 400 MB file is never read whole).

use std::io::Read;
use std::path::Path;

use crate::core::config::{Config, ConfigError, MAX_CONFIG_BYTES};

/// Why [`read_bounded`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum BoundedReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file (a FIFO, socket, device or folder); point it at a file")]
    NotRegular,
    #[error("larger than {limit} bytes")]
    TooLarge { limit: u64 },
}

impl From<BoundedReadError> for std::io::Error {
    fn from(e: BoundedReadError) -> Self {
        match e {
            BoundedReadError::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// The contents of the regular file at `path` (symlinks followed), at most `limit` bytes. The file
/// is opened non-blocking and checked on the open descriptor, so a FIFO, a socket or a device is
/// refused without waiting for a writer, and no swap between a check and the read can slip one in;
/// at most `limit + 1` bytes are read, whatever the file's size.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, BoundedReadError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(BoundedReadError::NotRegular);
    }
    if meta.len() > limit {
        return Err(BoundedReadError::TooLarge { limit });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        // Grown since the check.
        return Err(BoundedReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// The configuration file's bytes, bounded as [`read_bounded`] says.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, ConfigError> {
    read_bounded(path, MAX_CONFIG_BYTES).map_err(|e| match e {
        BoundedReadError::TooLarge { .. } => ConfigError::TooLarge {
            path: path.to_path_buf(),
        },
        other => ConfigError::Read {
            path: path.to_path_buf(),
            source: other.into(),
        },
    })
}

/// Parses and validates configuration bytes read from `path` (named in errors).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: format!("the file is not UTF-8: {e}"),
    })?;
    Config::from_yaml(text).map_err(|message| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// Reads and validates a configuration file.
pub fn read(path: &Path) -> Result<Config, ConfigError> {
    parse(path, &read_bytes(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_error_names_the_file() {
        let dir = std::env::temp_dir().join(format!("wa-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "mutateTemplate: false\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.yaml") && err.contains("mutateTemplate"),
            "{err}"
        );
    }

    #[test]
    fn config_read_refuses_a_fifo_at_once_and_reads_a_huge_file_no_further_than_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.yaml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let start = std::time::Instant::now();
        let err = read(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));

        let huge = dir.path().join("huge.yaml");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(400 * 1024 * 1024).unwrap(); // sparse: no disk used
        let err = read(&huge).unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }), "{err}");
    }
}
