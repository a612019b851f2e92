//! The backup stream: a whole store as one engine-neutral, versioned, checksummed byte stream
//! (what `suppressd backup` writes, `suppressd restore` reads, and `suppressd migrate` pipes
//! from one engine to another).
//!
//! It holds logical keys and values (the key space of `keys`, the same on every engine), the
//! engine metadata that gives them meaning (address-hash key, page-token secret, schema version,
//! keyring id) and the keyring file, never an engine's own files.
//!
//! ```text
//! stream  = magic "SPDSNAP\0", u16 major, u16 minor, frame*
//! frame   = u8 kind, u32 payload length, u64 xxh3(kind, payload), payload
//! kinds   = 'H' header (once, first): protobuf `Header`
//!           'M' metadata (any number): protobuf `MetaEntry`
//!           'K' keyring (any number): the next bytes of the keyring file
//!           'D' data chunk (any number): u32 count, then per entry
//!               u32 key length, key, u32 value length, value; keys strictly increasing
//!               across the whole stream
//!           'T' trailer (once, last): protobuf `Trailer`, with the entry count of each kind of
//!               key and the xxh3 of every byte before the trailer frame
//! ```
//! Numbers are little-endian. The header and trailer are tag-based protobuf: a newer minor
//! version only adds fields, which older readers skip; a new major version is refused by older
//! readers with a clear error before anything else is read.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use prost::Message;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use super::StoreError;

/// The first bytes of a backup stream.
pub const MAGIC: &[u8; 8] = b"SPDSNAP\0";
/// The format's major version: a reader refuses any other.
pub const MAJOR: u16 = 1;
/// The format's minor version: fields added to the header or trailer.
pub const MINOR: u16 = 0;
/// Bytes of a frame's head: kind, length, checksum.
const FRAME_HEAD: usize = 13;
/// A data chunk is closed once it holds this many bytes.
const CHUNK_BYTES: usize = 1 << 20;
/// The largest frame a reader accepts (a chunk's limit plus its largest possible entry).
const MAX_FRAME: usize = 64 << 20;

const HEADER: u8 = b'H';
const META: u8 = b'M';
const KEYRING: u8 = b'K';
const DATA: u8 = b'D';
const TRAILER: u8 = b'T';

/// What the stream says about itself before its data.
#[derive(Clone, PartialEq, Message)]
pub struct Header {
    /// When the snapshot was taken, microseconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub created_at_micros: i64,
    /// The last sequence number committed at the snapshot: the stream holds exactly the writes
    /// committed up to it.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// The schema version of the stored data.
    #[prost(uint32, tag = "3")]
    pub schema_version: u32,
    /// The engine the snapshot was read from (for the record only).
    #[prost(string, tag = "4")]
    pub source_engine: String,
}

/// One engine metadata value.
#[derive(Clone, PartialEq, Message)]
struct MetaEntry {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// How many entries the stream holds of one kind of key.
#[derive(Clone, PartialEq, Message)]
struct KindCount {
    #[prost(uint32, tag = "1")]
    kind: u32,
    #[prost(uint64, tag = "2")]
    count: u64,
}

/// The end of the stream.
#[derive(Clone, PartialEq, Message)]
struct TrailerRecord {
    #[prost(message, repeated, tag = "1")]
    kinds: Vec<KindCount>,
    #[prost(uint64, tag = "2")]
    entries: u64,
    #[prost(uint64, tag = "3")]
    data_chunks: u64,
    #[prost(uint64, tag = "4")]
    keyring_bytes: u64,
    #[prost(uint64, tag = "5")]
    meta_entries: u64,
    /// xxh3 of every byte of the stream before the trailer frame.
    #[prost(uint64, tag = "6")]
    digest: u64,
}

/// What a whole stream held, as its trailer says (and a reader checked).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Entries per kind of key (the key's first byte).
    pub kinds: BTreeMap<u8, u64>,
    /// Entries in all.
    pub entries: u64,
    /// Data chunks.
    pub data_chunks: u64,
    /// Bytes of the keyring file.
    pub keyring_bytes: u64,
    /// Metadata values.
    pub meta_entries: u64,
    /// xxh3 of the stream before its trailer.
    pub digest: u64,
    /// Bytes of the whole stream.
    pub bytes: u64,
}

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::Backup(message.into())
}

fn io_error(what: &str, e: std::io::Error) -> StoreError {
    StoreError::engine(format!("backup stream: cannot {what}"), e)
}

/// Writes a stream (see the module's documentation).
pub struct SnapshotWriter<W: Write> {
    out: W,
    digest: Xxh3,
    bytes: u64,
    chunk: Vec<u8>,
    chunk_entries: u32,
    last_key: Option<Vec<u8>>,
    summary: Summary,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a stream with its header.
    pub fn new(out: W, header: &Header) -> Result<SnapshotWriter<W>, StoreError> {
        let mut writer = SnapshotWriter {
            out,
            digest: Xxh3::new(),
            bytes: 0,
            chunk: Vec::with_capacity(CHUNK_BYTES + 4096),
            chunk_entries: 0,
            last_key: None,
            summary: Summary::default(),
        };
        let mut start = MAGIC.to_vec();
        start.extend_from_slice(&MAJOR.to_le_bytes());
        start.extend_from_slice(&MINOR.to_le_bytes());
        writer.raw(&start)?;
        writer.frame(HEADER, &header.encode_to_vec())?;
        Ok(writer)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.digest.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes).map_err(|e| io_error("write", e))
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) -> Result<(), StoreError> {
        let mut head = [0u8; FRAME_HEAD];
        head[0] = kind;
        head[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[5..].copy_from_slice(&frame_sum(kind, payload).to_le_bytes());
        self.raw(&head)?;
        self.raw(payload)
    }

    /// Adds an engine metadata value.
    pub fn meta(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let entry = MetaEntry {
            name: name.to_string(),
            value: value.to_vec(),
        };
        self.summary.meta_entries += 1;
        self.frame(META, &entry.encode_to_vec())
    }

    /// Adds the keyring file's bytes.
    pub fn keyring(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        for part in bytes.chunks(CHUNK_BYTES) {
            self.frame(KEYRING, part)?;
        }
        self.summary.keyring_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Adds one entry; keys must come in strictly increasing order.
    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if key.is_empty() || self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(bad("entries out of key order"));
        }
        if self.chunk.is_empty() {
            self.chunk.extend_from_slice(&[0; 4]);
        }
        self.chunk
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.chunk.extend_from_slice(key);
        self.chunk
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.chunk.extend_from_slice(value);
        self.chunk_entries += 1;
        *self.summary.kinds.entry(key[0]).or_default() += 1;
        self.summary.entries += 1;
        match &mut self.last_key {
            Some(last) => {
                last.clear();
                last.extend_from_slice(key);
            }
            None => self.last_key = Some(key.to_vec()),
        }
        if self.chunk.len() >= CHUNK_BYTES {
            self.close_chunk()?;
        }
        Ok(())
    }

    fn close_chunk(&mut self) -> Result<(), StoreError> {
        if self.chunk_entries == 0 {
            return Ok(());
        }
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk[..4].copy_from_slice(&self.chunk_entries.to_le_bytes());
        self.frame(DATA, &chunk)?;
        chunk.clear();
        self.chunk = chunk;
        self.chunk_entries = 0;
        self.summary.data_chunks += 1;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.summary.entries
    }

    /// Ends the stream with its trailer; flushes the output.
    pub fn finish(mut self) -> Result<(Summary, W), StoreError> {
        self.close_chunk()?;
        self.summary.digest = self.digest.digest();
        let trailer = TrailerRecord {
            kinds: self
                .summary
                .kinds
                .iter()
                .map(|(&kind, &count)| KindCount {
                    kind: u32::from(kind),
                    count,
                })
                .collect(),
            entries: self.summary.entries,
            data_chunks: self.summary.data_chunks,
            keyring_bytes: self.summary.keyring_bytes,
            meta_entries: self.summary.meta_entries,
            digest: self.summary.digest,
        };
        self.frame(TRAILER, &trailer.encode_to_vec())?;
        self.out.flush().map_err(|e| io_error("write", e))?;
        self.summary.bytes = self.bytes;
        Ok((self.summary, self.out))
    }
}

fn frame_sum(kind: u8, payload: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&[kind]);
    h.update(payload);
    h.digest()
}

/// One part of a stream, as [`SnapshotReader::next_part`] gives them.
#[derive(Debug)]
pub enum Part {
    /// An engine metadata value.
    Meta(String, Vec<u8>),
    /// The next bytes of the keyring file.
    Keyring(Vec<u8>),
    /// A data chunk, checked.
    Data(DataChunk),
    /// The end: the stream was whole.
    End(Summary),
}

/// The entries of one data chunk.
#[derive(Debug)]
pub struct DataChunk {
    payload: Vec<u8>,
}

impl DataChunk {
    /// The entries, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut at = 4;
        let count = u32::from_le_bytes(self.payload[..4].try_into().expect("checked")) as usize;
        (0..count).map(move |_| {
            let (key, next) = field(&self.payload, at).expect("checked when read");
            let (value, next) = field(&self.payload, next).expect("checked when read");
            at = next;
            (key, value)
        })
    }
}

/// The length-prefixed field at `at`, and where the next one starts.
fn field(payload: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(payload.get(at..at + 4)?.try_into().ok()?) as usize;
    let start = at + 4;
    Some((payload.get(start..start.checked_add(len)?)?, start + len))
}

/// Where a stream stands while it is read.
#[derive(PartialEq)]
enum Stage {
    Meta,
    Keyring,
    Data,
    Done,
}

/// Reads and checks a stream (see the module's documentation): each frame against its
/// checksum, the order of frames and keys, and at the end the trailer's counts and digest. A
/// problem is [`StoreError::Backup`] naming the frame (data chunks by number) and its byte
/// offset.
pub struct SnapshotReader<R: Read> {
    input: R,
    header: Header,
    version: (u16, u16),
    digest: Xxh3,
    offset: u64,
    stage: Stage,
    last_key: Vec<u8>,
    seen: Summary,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads the stream's start and header; refuses another format or major version.
    pub fn open(mut input: R) -> Result<SnapshotReader<R>, StoreError> {
        let mut start = [0u8; 12];
        read_full(&mut input, &mut start)
            .map_err(|e| io_error("read", e))?
            .then_some(())
            .ok_or_else(|| bad("not a suppressd backup: shorter than its first 12 bytes"))?;
        if &start[..8] != MAGIC {
            return Err(bad(
                "not a suppressd backup (its first bytes are not SPDSNAP)",
            ));
        }
        let major = u16::from_le_bytes([start[8], start[9]]);
        let minor = u16::from_le_bytes([start[10], start[11]]);
        if major != MAJOR {
            return Err(bad(format!(
                "backup format version {major}.{minor} is not readable by this build, which reads \
                 version {MAJOR}.x: use a suppressd of that version"
            )));
        }
        let mut reader = SnapshotReader {
            input,
            header: Header::default(),
            version: (major, minor),
            digest: Xxh3::new(),
            offset: 0,
            stage: Stage::Meta,
            last_key: Vec::new(),
            seen: Summary::default(),
        };
        reader.digest.update(&start);
        reader.offset = start.len() as u64;
        let (kind, payload, at) = reader.frame()?;
        if kind != HEADER {
            return Err(bad(format!("the header is missing (byte {at})")));
        }
        reader.header = Header::decode(payload.as_slice())
            .map_err(|e| bad(format!("the header is malformed (byte {at}): {e}")))?;
        Ok(reader)
    }

    /// The stream's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The format version the stream was written in.
    pub fn version(&self) -> (u16, u16) {
        self.version
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How errors name a frame of `kind`.
    fn name(&self, kind: u8) -> String {
        match kind {
            HEADER => "the header".into(),
            META => "a metadata frame".into(),
            KEYRING => "a keyring frame".into(),
            DATA => format!("data chunk {}", self.seen.data_chunks),
            TRAILER => "the trailer".into(),
            other => format!("a frame of unknown kind {other:#04x}"),
        }
    }

    /// Reads one frame: (kind, payload, offset of the frame).
    fn frame(&mut self) -> Result<(u8, Vec<u8>, u64), StoreError> {
        let at = self.offset;
        let mut head = [0u8; FRAME_HEAD];
        if !read_full(&mut self.input, &mut head).map_err(|e| io_error("read", e))? {
            return Err(bad(format!(
                "the backup is cut short: it ends at byte {at}, before its trailer"
            )));
        }
        let kind = head[0];
        let what = self.name(kind);
        let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
        let sum = u64::from_le_bytes(head[5..].try_into().expect("8 bytes"));
        if len > MAX_FRAME {
            return Err(bad(format!(
                "{what} at byte {at} is damaged: it claims {len} bytes"
            )));
        }
        let mut payload = vec![0u8; len];
        if !read_full(&mut self.input, &mut payload).map_err(|e| io_error("read", e))? {
            return Err(bad(format!(
                "the backup is cut short inside {what} at byte {at}"
            )));
        }
        if frame_sum(kind, &payload) != sum {
            return Err(bad(format!(
                "{what} at byte {at} is damaged: its checksum does not match"
            )));
        }
        self.digest.update(&head);
        self.digest.update(&payload);
        self.offset += (FRAME_HEAD + len) as u64;
        Ok((kind, payload, at))
    }

    /// The next part; `Part::End` once, after which the stream must end.
    pub fn next_part(&mut self) -> Result<Part, StoreError> {
        if self.stage == Stage::Done {
            return Err(bad("read past the end of the backup"));
        }
        let digest_before = self.digest.digest();
        let (kind, payload, at) = self.frame()?;
        match kind {
            META if self.stage == Stage::Meta => {
                let entry = MetaEntry::decode(payload.as_slice())
                    .map_err(|e| bad(format!("a metadata frame at byte {at} is malformed: {e}")))?;
                self.seen.meta_entries += 1;
                Ok(Part::Meta(entry.name, entry.value))
            }
            KEYRING if matches!(self.stage, Stage::Meta | Stage::Keyring) => {
                self.stage = Stage::Keyring;
                self.seen.keyring_bytes += payload.len() as u64;
                Ok(Part::Keyring(payload))
            }
            DATA if self.stage != Stage::Done => {
                self.stage = Stage::Data;
                let chunk = self.check_chunk(payload, at)?;
                self.seen.data_chunks += 1;
                Ok(Part::Data(chunk))
            }
            TRAILER => {
                let trailer = TrailerRecord::decode(payload.as_slice())
                    .map_err(|e| bad(format!("the trailer at byte {at} is malformed: {e}")))?;
                self.stage = Stage::Done;
                self.check_trailer(&trailer, digest_before)?;
                let mut extra = [0u8; 1];
                if read_full(&mut self.input, &mut extra).map_err(|e| io_error("read", e))? {
                    return Err(bad(format!(
                        "bytes follow the trailer (at byte {})",
                        self.offset
                    )));
                }
                self.seen.digest = trailer.digest;
                self.seen.bytes = self.offset;
                Ok(Part::End(self.seen.clone()))
            }
            other => Err(bad(format!(
                "unexpected frame {:?} at byte {at}",
                char::from(other)
            ))),
        }
    }

    /// Checks a data chunk's layout and key order; counts its entries.
    fn check_chunk(&mut self, payload: Vec<u8>, at: u64) -> Result<DataChunk, StoreError> {
        let n = self.seen.data_chunks;
        let malformed = || bad(format!("data chunk {n} at byte {at} is malformed"));
        let count = u32::from_le_bytes(
            payload
                .get(..4)
                .ok_or_else(malformed)?
                .try_into()
                .expect("4 bytes"),
        );
        let mut next = 4;
        for _ in 0..count {
            let (key, after_key) = field(&payload, next).ok_or_else(malformed)?;
            let (_, after_value) = field(&payload, after_key).ok_or_else(malformed)?;
            if key.is_empty() || key <= self.last_key.as_slice() {
                return Err(bad(format!(
                    "data chunk {n} at byte {at} holds keys out of order"
                )));
            }
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
            *self.seen.kinds.entry(key[0]).or_default() += 1;
            self.seen.entries += 1;
            next = after_value;
        }
        if next != payload.len() {
            return Err(malformed());
        }
        Ok(DataChunk { payload })
    }

    fn check_trailer(&self, trailer: &TrailerRecord, digest: u64) -> Result<(), StoreError> {
        if trailer.digest != digest {
            return Err(bad(
                "the backup's checksum of everything does not match its trailer",
            ));
        }
        let kinds: BTreeMap<u8, u64> = trailer
            .kinds
            .iter()
            .map(|k| (k.kind as u8, k.count))
            .collect();
        if kinds != self.seen.kinds
            || trailer.entries != self.seen.entries
            || trailer.data_chunks != self.seen.data_chunks
            || trailer.keyring_bytes != self.seen.keyring_bytes
            || trailer.meta_entries != self.seen.meta_entries
        {
            return Err(bad(format!(
                "the backup's trailer counts {} entries in {} chunks, the stream holds {} in {}",
                trailer.entries, trailer.data_chunks, self.seen.entries, self.seen.data_chunks
            )));
        }
        Ok(())
    }
}

/// Fills `buf`; `false` if the input ended first.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A digest of entries in order, the same whoever computes it (the reader of a stream, the
/// scan of a restored engine): restore compares them.
#[derive(Default)]
pub struct EntryDigest(Xxh3);

impl EntryDigest {
    /// Adds one entry.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.0.update(&(key.len() as u32).to_le_bytes());
        self.0.update(key);
        self.0.update(&(value.len() as u32).to_le_bytes());
        self.0.update(value);
    }

    /// The digest so far.
    pub fn value(&self) -> u64 {
        self.0.digest()
    }
}

/// A checksum of a whole file's bytes (the manifest names the stream's).
pub fn checksum(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            created_at_micros: 1_700_000_000_000_000,
            seq: 42,
            schema_version: 5,
            source_engine: "sled".into(),
        }
    }

    /// A stream of `n` entries of two kinds, with metadata and a keyring.
    fn stream(n: u32) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new(), &header()).unwrap();
        w.meta("token_secret", &[7; 32]).unwrap();
        w.keyring(&vec![9u8; CHUNK_BYTES + 10]).unwrap();
        for i in 0..n {
            let kind = if i < n / 2 { b'L' } else { b'R' };
            let key = [&[kind][..], &i.to_be_bytes()].concat();
            w.entry(&key, &vec![i as u8; 300]).unwrap();
        }
        w.finish().unwrap().1
    }

    fn read_all(bytes: &[u8]) -> Result<(Header, Vec<Part>), StoreError> {
        let mut r = SnapshotReader::open(bytes)?;
        let header = r.header().clone();
        let mut parts = Vec::new();
        loop {
            let part = r.next_part()?;
            let end = matches!(part, Part::End(_));
            parts.push(part);
            if end {
                return Ok((header, parts));
            }
        }
    }

    #[test]
    fn a_stream_reads_back_as_written() {
        let bytes = stream(10_000);
        let (h, parts) = read_all(&bytes).unwrap();
        assert_eq!(h, header());
        let mut meta = Vec::new();
        let mut keyring = Vec::new();
        let mut entries = Vec::new();
        let mut summary = None;
        for p in parts {
            match p {
                Part::Meta(n, v) => meta.push((n, v)),
                Part::Keyring(b) => keyring.extend(b),
                Part::Data(c) => entries.extend(c.entries().map(|(k, v)| (k.to_vec(), v.to_vec()))),
                Part::End(s) => summary = Some(s),
            }
        }
        assert_eq!(meta, vec![("token_secret".to_string(), vec![7; 32])]);
        assert_eq!(keyring, vec![9u8; CHUNK_BYTES + 10]);
        assert_eq!(entries.len(), 10_000);
        assert_eq!(
            entries[1234].0,
            [&b"L"[..], &1234u32.to_be_bytes()].concat()
        );
        assert_eq!(entries[1234].1, vec![1234u32 as u8; 300]);
        let summary = summary.unwrap();
        assert_eq!(summary.kinds, BTreeMap::from([(b'L', 5000), (b'R', 5000)]));
        assert!(summary.data_chunks >= 2, "{summary:?}");
        assert_eq!(summary.bytes, bytes.len() as u64);
    }

    #[test]
    fn a_flipped_byte_in_a_data_chunk_is_refused_naming_the_chunk() {
        let bytes = stream(10_000);
        // Past the header, the metadata, the keyring and the first chunk: inside chunk 1.
        let mut damaged = bytes.clone();
        let at = CHUNK_BYTES + 10 + CHUNK_BYTES + CHUNK_BYTES / 2;
        damaged[at] ^= 0x01;
        let err = read_all(&damaged).unwrap_err().to_string();
        assert!(err.contains("data chunk 1"), "{err}");
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn a_cut_short_or_extended_stream_is_refused() {
        let bytes = stream(100);
        let err = read_all(&bytes[..bytes.len() - 5]).unwrap_err().to_string();
        assert!(err.contains("cut short"), "{err}");
        let mut longer = bytes.clone();
        longer.push(0);
        let err = read_all(&longer).unwrap_err().to_string();
        assert!(err.contains("follow the trailer"), "{err}");
    }

    #[test]
    fn a_dropped_chunk_is_caught_by_the_trailer() {
        let bytes = stream(10_000);
        let mut r = SnapshotReader::open(&bytes[..]).unwrap();
        // The byte range of the first data chunk.
        let (start, end) = loop {
            let before = r.offset() as usize;
            if let Part::Data(_) = r.next_part().unwrap() {
                break (before, r.offset() as usize);
            }
        };
        let spliced = [&bytes[..start], &bytes[end..]].concat();
        let err = read_all(&spliced).unwrap_err().to_string();
        assert!(err.contains("trailer"), "{err}");
    }

    #[test]
    fn another_major_version_or_another_file_is_refused_up_front() {
        let mut bytes = stream(10);
        bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
        let err = read_all(&bytes).unwrap_err().to_string();
        assert!(err.contains("version 2.0"), "{err}");
        let err = read_all(b"PK\x03\x04 not a backup at all")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a suppressd backup"), "{err}");
    }

    #[test]
    fn the_writer_refuses_keys_out_of_order() {
        let mut w = SnapshotWriter::new(Vec::new(), &header()).unwrap();
        w.entry(b"b", b"").unwrap();
        assert!(w.entry(b"a", b"").is_err());
        assert!(w.entry(b"b", b"").is_err());
    }
}
