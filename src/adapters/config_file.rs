//! Reading the configuration file (behaviour.md §8): at most [`MAX_CONFIG_BYTES`], then parsed and
//! validated by the core ([`Config::from_yaml`]); errors name the file.

use std::path::Path;

use crate::core::config::{Config, ConfigError, MAX_CONFIG_BYTES};

/// Reads and validates a configuration file.
pub fn read(path: &Path) -> Result<Config, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    Config::from_yaml(&text).map_err(|message| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    })
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
}
