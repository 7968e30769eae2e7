//! TensorBoard event files, written directly: TFRecord framing (length, masked CRC-32C, payload,
//! masked CRC-32C) around hand-encoded `tensorflow.Event` protobuf messages carrying scalar summaries.
//!
//! The protobuf subset used (field numbers from tensorflow/core/util/event.proto and summary.proto):
//! ```text
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
//!           SessionLog session_log = 7; }
//! Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
//! SessionLog { SessionStatus status = 1; }   // START = 1
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Appends scalar events to one `events.out.tfevents.*` file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates a new event file in `dir` (one file per process; TensorBoard reads all files of a dir).
    /// `first_step` is recorded in a SessionLog START event, which tells TensorBoard to discard
    /// events at or after that step from earlier files (orphans of a run that was killed and resumed).
    pub fn create(dir: &Path, first_step: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let now = wall_time();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{}.{}",
            now as u64,
            host,
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = Self {
            path,
            out: BufWriter::new(file),
        };
        w.write_event(&encode_event(
            now,
            0,
            EventBody::FileVersion("brain.Event:2"),
        ))?;
        if first_step > 0 {
            w.write_event(&encode_event(now, first_step, EventBody::SessionStart))?;
        }
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event holding the given scalars at `step`.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let event = encode_event(wall_time(), step, EventBody::Scalars(values));
        self.write_event(&event)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn write_event(&mut self, payload: &[u8]) -> Result<()> {
        let record = tfrecord(payload);
        self.out
            .write_all(&record)
            .map_err(|e| Error::io(&self.path, e))
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// TFRecord's CRC: CRC-32C rotated right by 15 bits plus a constant.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: u64 length (LE), masked CRC of the length, payload, masked CRC of the payload.
pub fn tfrecord(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
    out
}

/// What an event carries.
pub enum EventBody<'a> {
    FileVersion(&'a str),
    SessionStart,
    Scalars(&'a [(&'a str, f64)]),
}

/// Encodes a `tensorflow.Event` message.
pub fn encode_event(wall_time: f64, step: u64, body: EventBody<'_>) -> Vec<u8> {
    let mut e = Vec::new();
    // wall_time: field 1, wire type 1 (64-bit).
    e.push(0x09);
    e.extend_from_slice(&wall_time.to_le_bytes());
    // step: field 2, wire type 0 (varint).
    e.push(0x10);
    varint(&mut e, step);
    match body {
        EventBody::FileVersion(v) => length_delimited(&mut e, 3, v.as_bytes()),
        EventBody::SessionStart => {
            // SessionLog { status = START (1) }
            length_delimited(&mut e, 7, &[0x08, 0x01]);
        }
        EventBody::Scalars(values) => {
            let mut summary = Vec::new();
            for (tag, v) in values {
                let mut value = Vec::new();
                length_delimited(&mut value, 1, tag.as_bytes());
                // simple_value: field 2, wire type 5 (32-bit).
                value.push(0x15);
                value.extend_from_slice(&(*v as f32).to_le_bytes());
                length_delimited(&mut summary, 1, &value);
            }
            length_delimited(&mut e, 5, &summary);
        }
    }
    e
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn length_delimited(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, ((field as u64) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads back the records of an event file, checking both CRCs (used by tests and `inspect`).
pub fn read_records(path: &Path) -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let corrupt = |msg: &str| Error::data(path, format!("corrupt TFRecord: {msg}"));
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        if data.len() - at < 12 {
            return Err(corrupt("truncated header"));
        }
        let len_bytes = &data[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| corrupt("length"))?) as usize;
        let crc = u32::from_le_bytes(
            data[at + 8..at + 12]
                .try_into()
                .map_err(|_| corrupt("length crc"))?,
        );
        if crc != masked_crc32c(len_bytes) {
            return Err(corrupt("length CRC mismatch"));
        }
        let start = at + 12;
        if data.len() < start + len + 4 {
            return Err(corrupt("truncated payload"));
        }
        let payload = &data[start..start + len];
        let crc = u32::from_le_bytes(
            data[start + len..start + len + 4]
                .try_into()
                .map_err(|_| corrupt("crc"))?,
        );
        if crc != masked_crc32c(payload) {
            return Err(corrupt("payload CRC mismatch"));
        }
        records.push(payload.to_vec());
        at = start + len + 4;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_known_check_value() {
        // CRC-32C of "123456789" is 0xE3069283 (RFC 3720 check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            masked_crc32c(b"123456789"),
            0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn scalar_event_bytes_are_the_expected_protobuf() {
        let e = encode_event(1.5, 300, EventBody::Scalars(&[("loss", 2.0)]));
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xac, 0x02]); // 300 as a varint
                                                     // summary (field 5): value (field 1) { tag "loss", simple_value 2.0 }
        let value: Vec<u8> = [&[0x0a, 4][..], b"loss", &[0x15], &2.0f32.to_le_bytes()].concat();
        let summary: Vec<u8> = [&[0x0a, value.len() as u8][..], &value].concat();
        want.extend_from_slice(&[0x2a, summary.len() as u8]);
        want.extend_from_slice(&summary);
        assert_eq!(e, want);
    }

    #[test]
    fn written_file_reads_back_with_valid_crcs() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path(), 5).unwrap();
        w.scalars(6, &[("train/loss", 1.25), ("train/lr", 1e-3)])
            .unwrap();
        w.flush().unwrap();
        let recs = read_records(w.path()).unwrap();
        assert_eq!(
            recs.len(),
            3,
            "file_version, session start, one scalar event"
        );
        assert!(recs[0].ends_with(b"brain.Event:2"));
        assert!(recs[2].windows(10).any(|x| x == b"train/loss"));
        // Corrupting one byte is detected.
        let mut bytes = std::fs::read(w.path()).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 0x40;
        std::fs::write(w.path(), &bytes).unwrap();
        assert!(read_records(w.path()).is_err());
    }
}
