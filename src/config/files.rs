//! The configuration's edge with the file system: the files flags name (hostfile, password
//! files, properties files, TLS material) are read or checked here, and nowhere else in
//! `config`. Every failure is one line naming the flag and the file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::security::Secret;

/// The text of the file `flag` names.
pub fn read(flag: &str, path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("{flag} {}: {e}", path.display())))
}

/// Checks that the file `flag` names can be opened.
pub fn readable(flag: &str, path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| Error::Config(format!("{flag} {}: {e}", path.display())))
}

/// The first `n` addresses of a hostfile: one `host:port` per line, `#` comments.
pub fn hostfile(path: &Path, n: usize) -> Result<Vec<String>> {
    let text = read("--hostfile", path)?;
    let addresses: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if addresses.len() < n {
        return Err(Error::Config(format!(
            "--hostfile {} lists {} addresses but -n is {n}; list one host:port per process",
            path.display(),
            addresses.len()
        )));
    }
    Ok(addresses.into_iter().take(n).collect())
}

/// A secret given at most once: as a value (flag or environment variable) or in a file
/// (trailing newline ignored; an empty file is an error).
pub fn secret_from(
    what: &str,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
    file_flag: &str,
) -> Result<Option<Secret>> {
    match (value, file) {
        (Some(_), Some(_)) => Err(Error::Config(format!("set {what}, not both"))),
        (Some(value), None) => Ok(Some(value.clone())),
        (None, Some(path)) => {
            let text = read(file_flag, path)?;
            let secret = text.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                return Err(Error::Config(format!(
                    "{file_flag} {} is empty",
                    path.display()
                )));
            }
            Ok(Some(Secret::from(secret.to_string())))
        }
        (None, None) => Ok(None),
    }
}
