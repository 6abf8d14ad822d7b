//! Parallel gzip, pigz style: the input is cut into fixed 1 MiB chunks, each
//! compressed on the rayon pool as raw deflate primed with the previous
//! 32 KiB of input (so matches reach across chunks) and ended with a sync
//! flush (an empty stored block: byte-aligned, not final); the last chunk
//! ends the stream. The chunks, in order, form ONE deflate stream inside ONE
//! gzip member (fixed header: no name, mtime 0, OS unknown), CRC-32 and size
//! in the trailer. Output depends only on the input and the level, never on
//! the number of threads or on how the writes were split.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, TryRecvError};

use flate2::{Compress, FlushCompress, Status};

/// Input chunk size: fixed, so the output never depends on the thread count.
pub const CHUNK: usize = 1 << 20;
/// Deflate's window: how much preceding input primes each chunk.
const WINDOW: usize = 32 * 1024;

/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

type Job = Receiver<io::Result<Vec<u8>>>;

/// A writer producing a gzip stream into `out` with parallel compression.
/// Call [`ParGzWriter::finish`]; dropping it loses the stream's end.
pub struct ParGzWriter<W: Write> {
    out: W,
    level: u32,
    pool: Option<Arc<rayon::ThreadPool>>,
    chunk: Vec<u8>,
    /// The last `WINDOW` bytes of input before `chunk`.
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
    pending: VecDeque<Job>,
    max_pending: usize,
}

impl<W: Write> std::fmt::Debug for ParGzWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParGzWriter")
            .field("level", &self.level)
            .field("total", &self.total)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> ParGzWriter<W> {
    /// `level` 0..=9; `pool` `None` means rayon's global pool.
    pub fn new(mut out: W, level: u32, pool: Option<Arc<rayon::ThreadPool>>) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        let threads = pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
        Ok(ParGzWriter {
            out,
            level: level.min(9),
            pool,
            chunk: Vec::with_capacity(CHUNK),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            total: 0,
            pending: VecDeque::new(),
            // Enough in flight to keep every thread busy while the producer
            // fills the next chunks; bounded memory (~3 MiB per thread).
            max_pending: threads.max(1) * 3 / 2 + 2,
        })
    }

    /// Compresses what is left, writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_front()?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the input size modulo 2^32 (RFC 1952).
        trailer[4..].copy_from_slice(&(self.total as u32).to_le_bytes());
        self.out.write_all(&trailer)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        let dict = if input.len() >= WINDOW {
            input[input.len() - WINDOW..].to_vec()
        } else {
            // Short (last) chunk: the window spans the previous one too.
            let mut d = std::mem::take(&mut self.dict);
            d.extend_from_slice(&input);
            d.split_off(d.len().saturating_sub(WINDOW))
        };
        let prev = std::mem::replace(&mut self.dict, dict);
        let level = self.level;
        let (tx, rx) = mpsc::sync_channel(1);
        let job = move || {
            let _ = tx.send(deflate_chunk(level, &prev, &input, last));
        };
        match &self.pool {
            Some(pool) => pool.spawn(job),
            None => rayon::spawn(job),
        }
        self.pending.push_back(rx);
        while self.pending.len() > self.max_pending {
            self.write_front()?;
        }
        Ok(())
    }

    /// Waits for the oldest chunk and writes it out.
    fn write_front(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let data = wait(&rx)??;
        self.out.write_all(&data)
    }
}

/// Waits for a job's result. On a rayon worker thread it runs other jobs
/// meanwhile, so a caller inside a (small) pool cannot deadlock it.
fn wait<T>(rx: &Receiver<T>) -> io::Result<T> {
    let gone = || io::Error::other("a compression worker died");
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(gone()),
            Err(TryRecvError::Empty) => match rayon::yield_now() {
                Some(rayon::Yield::Executed) => continue,
                // Not a worker, or nothing to run: the job runs elsewhere.
                _ => return rx.recv().map_err(|_| gone()),
            },
        }
    }
}

impl<W: Write> Write for ParGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.total += n as u64;
        if self.chunk.len() == CHUNK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A gzip stream cannot be flushed mid-chunk without changing the
        // output; the bytes go out as chunks complete and in `finish`.
        Ok(())
    }
}

/// One chunk as raw deflate: primed with `dict`, ended by a sync flush, or
/// by the final block when `last`.
pub fn deflate_chunk(level: u32, dict: &[u8], input: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() / 2 + 4096);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = usize::try_from(c.total_in()).map_err(io::Error::other)?;
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = usize::try_from(c.total_in()).map_err(io::Error::other)? == input.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and the output
            // did not fill up (zlib's contract for Z_SYNC_FLUSH).
            _ if !last && all_in && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}
