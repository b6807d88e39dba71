//! The file source: a directory of JSON-lines files, one per partition, for backfills and
//! benchmarks.
//!
//! Files are the directory's `*.jsonl` entries sorted by name; the n-th is partition n. A
//! message is one line (without its newline); its offset is the byte position where the line
//! starts, so progress resumes exactly at a line. Files are read to their end and then the
//! partition is finished (bounded input).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
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
                let file = &self.files[part.partition as usize];
                let Some(n) = next_line(&mut part.reader, &mut self.line, |line, taken| {
                    let payload = line.strip_suffix(b"\r").unwrap_or(line);
                    emit(Message {
                        partition: part.partition,
                        offset: part.position,
                        next_offset: part.position + taken as i64,
                        payload,
                        timestamp: None,
                        key: None,
                        tombstone: false,
                    })
                })
                .map_err(|e| Error::Input(format!("{}: {e}", file.display())))?
                else {
                    part.done = true;
                    break;
                };
                part.position += n as i64;
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

/// Hands the next line of `reader` (without its newline) and the bytes it takes (newline
/// included, if there is one) to `line`; returns those bytes, or None at the end of the file.
/// A line inside the buffer is lent in place; only a line that crosses the buffer's end is
/// gathered in `spill`.
fn next_line<R: Read>(
    reader: &mut BufReader<R>,
    spill: &mut Vec<u8>,
    line: impl FnOnce(&[u8], usize),
) -> std::io::Result<Option<usize>> {
    let buf = reader.fill_buf()?;
    if let Some(end) = memchr::memchr(b'\n', buf) {
        line(&buf[..end], end + 1);
        reader.consume(end + 1);
        return Ok(Some(end + 1));
    }
    spill.clear();
    let n = reader.read_until(b'\n', spill)?;
    if n == 0 {
        return Ok(None);
    }
    line(spill.strip_suffix(b"\n").unwrap_or(spill), n);
    Ok(Some(n))
}

/// A directory of JSON-lines files, one per partition.
#[derive(Clone, Debug)]
pub struct FileInput {
    /// The directory.
    pub dir: PathBuf,
}

impl crate::source::Input for FileInput {
    /// A dataflow with `[[inputs]]` reads `--input DIR` as one directory per topic
    /// (`DIR/users_created/`, `DIR/user_events/`): the other topic is a sibling directory.
    fn for_topic(&self, topic: &str) -> Result<Box<dyn crate::source::Input>> {
        let root = self.dir.parent().unwrap_or(&self.dir);
        Ok(Box::new(FileInput {
            dir: root.join(topic),
        }))
    }
    fn id(&self) -> String {
        let dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        format!("file:{}", dir.display())
    }
    fn describe(&self) -> String {
        format!("files {}", self.dir.display())
    }
    fn check(&self) -> Result<()> {
        partition_files(&self.dir).map(drop)
    }
    fn reader(&self) -> Result<Box<dyn Reader>> {
        Ok(Box::new(FileReader::new(&self.dir)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines come out whole whether they sit inside the buffer or cross its end, and the
    /// last one may lack its newline.
    #[test]
    fn lines_across_buffer_ends() {
        let mut text: Vec<u8> = (0..200)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 37)))
            .collect::<String>()
            .into_bytes();
        text.extend_from_slice(b"last\r");
        for capacity in [1, 7, 64, 1 << 16] {
            let mut reader = BufReader::with_capacity(capacity, &text[..]);
            let (mut spill, mut lines, mut taken) = (Vec::new(), Vec::new(), 0);
            loop {
                let mut lent = 0;
                let Some(n) = next_line(&mut reader, &mut spill, |l, n| {
                    lines.push(l.to_vec());
                    lent = n;
                })
                .unwrap() else {
                    break;
                };
                assert_eq!(n, lent);
                taken += n;
            }
            let expected: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            assert_eq!(lines, expected, "capacity {capacity}");
            assert_eq!(taken, text.len());
        }
    }
}
