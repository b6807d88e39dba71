//! The file source: a directory of JSON-lines files, one per partition, for backfills and
//! benchmarks.
//!
//! Files are the directory's `*.jsonl` entries sorted by name; the n-th is partition n. A
//! message is one line (without its newline); its offset is the byte position where the line
//! starts, so progress resumes exactly at a line. Files are read to their end and then the
//! partition is finished (bounded input).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Message, Reader, StartAt};
use crate::error::{Error, Result};

/// Lists the partition files of `dir`.
pub fn partition_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Config(format!(
            "--input {}: cannot read the directory ({e})",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Config(format!(
            "--input {}: no *.jsonl files (one file per partition)",
            dir.display()
        )));
    }
    Ok(files)
}

struct OpenPartition {
    partition: i32,
    reader: BufReader<File>,
    position: i64,
    /// Length when opened.
    len: i64,
    done: bool,
}

/// Reads the partition files assigned to this worker, round-robin.
pub struct FileReader {
    files: Vec<PathBuf>,
    open: Vec<OpenPartition>,
    next: usize,
    line: Vec<u8>,
}

impl FileReader {
    /// A reader over the files of `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        Ok(FileReader {
            files: partition_files(dir)?,
            open: Vec::new(),
            next: 0,
            line: Vec::new(),
        })
    }
}

impl Reader for FileReader {
    fn partitions(&mut self) -> Result<Vec<i32>> {
        Ok((0..self.files.len() as i32).collect())
    }

    fn assign(&mut self, partitions: &[(i32, StartAt)]) -> Result<Vec<(i32, i64)>> {
        let mut positions = Vec::new();
        for (partition, start) in partitions {
            let path = &self.files[*partition as usize];
            let input_error = |e: std::io::Error| Error::Input(format!("{}: {e}", path.display()));
            let mut file = File::open(path).map_err(input_error)?;
            let len = file.metadata().map_err(input_error)?.len() as i64;
            let position = match start {
                StartAt::Offset(o) => (*o).min(len),
                StartAt::Earliest | StartAt::Time(_) => 0,
                StartAt::Latest => len,
            };
            file.seek(SeekFrom::Start(position as u64))
                .map_err(input_error)?;
            self.open.push(OpenPartition {
                partition: *partition,
                reader: BufReader::with_capacity(1 << 16, file),
                position,
                len,
                done: false,
            });
            positions.push((*partition, position));
        }
        Ok(positions)
    }

    fn read(&mut self, max: usize, emit: &mut dyn FnMut(Message<'_>)) -> Result<usize> {
        let mut read = 0;
        let mut idle_rounds = 0;
        while read < max && idle_rounds < self.open.len() {
            let i = self.next % self.open.len();
            self.next = self.next.wrapping_add(1);
            let part = &mut self.open[i];
            if part.done {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            // A small slice per partition keeps partitions interleaved.
            for _ in 0..64.min(max - read) {
                self.line.clear();
                let n = part.reader.read_until(b'\n', &mut self.line).map_err(|e| {
                    Error::Input(format!(
                        "{}: {e}",
                        self.files[part.partition as usize].display()
                    ))
                })?;
                if n == 0 {
                    part.done = true;
                    break;
                }
                let payload = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
                let payload = payload.strip_suffix(b"\r").unwrap_or(payload);
                let offset = part.position;
                part.position += n as i64;
                emit(Message {
                    partition: part.partition,
                    offset,
                    next_offset: part.position,
                    payload,
                    timestamp: None,
                });
                read += 1;
            }
        }
        Ok(read)
    }

    fn finished(&self, partition: i32) -> bool {
        self.open.iter().any(|p| p.partition == partition && p.done)
    }

    fn kind(&self) -> &'static str {
        "files"
    }

    fn high_watermark(&self, partition: i32) -> Option<i64> {
        // Offsets are byte positions: the file's length when it was opened.
        self.open
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.len)
    }
}
