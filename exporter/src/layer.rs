//! Writing an OCI layer blob from a directory tree: a snapshot's upper/diff
//! dir (overlayfs whiteouts become OCI ones) or a plain rootfs.
//!
//! One pass, no temp copy: the tar is generated from the tree, hashed for the
//! diff ID, compressed (parallel gzip, multithreaded zstd, or none) and
//! streamed straight into a [`BlobWriter`], which hashes the blob digest and
//! commits it verified. Call it from a blocking context (e.g. tokio's
//! `spawn_blocking`); gzip compression runs on rayon's pool.
//!
//! Determinism: the same tree (paths, types, modes, owners, xattrs, link
//! structure, contents, and mtimes — or only mtimes up to
//! `source_date_epoch` when that is set) gives byte-identical tar, blob and
//! digests, whatever the thread count:
//! - entries depth-first, each directory's entries sorted by the bytes of
//!   their archive names (GNU tar `--sort=name`, Go's `filepath.Walk`), so
//!   parents precede children; an opaque directory's `.wh..wh..opq` sorts
//!   among its entries by name like a whiteout's `.wh.NAME`;
//! - ustar headers, PAX records only for what ustar cannot hold (long names,
//!   big ids/sizes, xattrs as `SCHILY.xattr.*`); uname/gname empty; no
//!   atime/ctime; mtimes in whole seconds (clamped to `source_date_epoch`);
//!   whiteout and opaque entries: empty files, root, mode 0, mtime 0;
//! - gzip: fixed 1 MiB chunks compressed independently (see [`pgzip`]), one
//!   member with a fixed header; zstd: multithreaded mode (≥ 1 worker),
//!   whose output zstd guarantees independent of the worker count.
//!
//! Kept out of layers: sockets, overlayfs' own xattrs (`trusted.overlay.*`,
//! `user.overlay.*`) and `security.selinux`. Refused: files named `.wh.*`
//! (they would read as whiteouts), and in overlay mode renamed directories
//! (`redirect_dir`) and metadata-only copy-ups (`metacopy`), which an OCI
//! layer cannot express.

pub mod pgzip;
mod tarw;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compose::ManifestFormat;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, Result};
use crate::image::Layer;
use crate::media::Compression;
use crate::store::{BlobWriter, Store};

/// Where whiteouts come from in the source tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhiteoutSource {
    /// A plain tree: nothing is a whiteout.
    #[default]
    None,
    /// An overlayfs upper dir: char devices 0:0 are whiteouts, directories
    /// with `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`) opaque.
    Overlay,
}

/// How to write a layer. `Default` is gzip (level 6), OCI media type, plain
/// tree, real mtimes, rayon's global pool.
#[derive(Debug, Clone)]
pub struct LayerOptions {
    pub compression: Compression,
    /// gzip 0..=9 (default 6), zstd 1..=22 (default 3); ignored uncompressed.
    pub level: Option<u32>,
    pub whiteouts: WhiteoutSource,
    /// Clamp mtimes to this (BuildKit's `rewrite-timestamp`).
    pub source_date_epoch: Option<u64>,
    /// Media type flavour of the result.
    pub format: ManifestFormat,
    /// Compression threads; `None`: gzip on rayon's global pool, zstd with
    /// as many workers as that pool has threads. Never changes the output.
    pub threads: Option<usize>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Gzip,
            level: None,
            whiteouts: WhiteoutSource::None,
            source_date_epoch: None,
            format: ManifestFormat::Oci,
            threads: None,
        }
    }
}

/// A layer written into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the blob as stored (compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the blob as stored.
    pub size: u64,
    pub media_type: String,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
}

impl From<LayerBlob> for Layer {
    fn from(l: LayerBlob) -> Layer {
        Layer {
            digest: l.digest,
            size: l.size,
            media_type: l.media_type,
            diff_id: l.diff_id,
        }
    }
}

/// Writes the layer of `dir` into the store (see the module docs).
pub fn write_layer(store: &Store, dir: &Path, opts: &LayerOptions) -> Result<LayerBlob> {
    let writer = store.ingest(None, None)?;
    let sink = writer.temp_path().to_path_buf();
    let ioe = |e: io::Error| Error::io(&sink, e);
    let pool = match opts.threads {
        Some(n) if opts.compression == Compression::Gzip => Some(Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .thread_name(|i| format!("rbuild-gzip-{i}"))
                .build()
                .map_err(|e| ioe(io::Error::other(e)))?,
        )),
        _ => None,
    };
    let encoder = match opts.compression {
        Compression::None => Encoder::Plain(writer),
        Compression::Gzip => Encoder::Gzip(
            pgzip::ParGzWriter::new(writer, opts.level.unwrap_or(6), pool).map_err(ioe)?,
        ),
        Compression::Zstd => {
            let level = i32::try_from(opts.level.unwrap_or(3)).unwrap_or(3);
            let mut enc = zstd::stream::write::Encoder::new(writer, level).map_err(ioe)?;
            let workers = opts.threads.unwrap_or_else(rayon::current_num_threads);
            // Always multithreaded mode (≥ 1 worker): its output is the same
            // for any worker count, unlike single-threaded mode's.
            enc.multithread(u32::try_from(workers.max(1)).unwrap_or(1))
                .map_err(ioe)?;
            Encoder::Zstd(enc)
        }
    };
    let mut tee = DiffIdWriter {
        inner: encoder,
        hasher: Hasher::new(Algorithm::Sha256),
        written: 0,
    };
    tarw::write_tree(dir, tar_options(opts), &mut tee, &sink)?;
    let diff_id = tee.hasher.finish();
    let tar_size = tee.written;
    let writer = tee.inner.finish().map_err(ioe)?;
    let (digest, size) = writer.commit()?;
    let media_type = match opts.format {
        ManifestFormat::Oci => opts.compression.oci_layer_media_type(),
        ManifestFormat::Docker => opts.compression.docker_layer_media_type(),
    };
    Ok(LayerBlob {
        digest,
        diff_id,
        size,
        media_type: media_type.to_string(),
        tar_size,
    })
}

/// Writes just the (uncompressed) tar of `dir` to `out`, as [`write_layer`]
/// would; returns its diff ID and size. `opts.compression` is ignored.
pub fn write_tar(dir: &Path, opts: &LayerOptions, out: &mut dyn Write) -> Result<(Digest, u64)> {
    let mut tee = DiffIdWriter {
        inner: out,
        hasher: Hasher::new(Algorithm::Sha256),
        written: 0,
    };
    tarw::write_tree(
        dir,
        tar_options(opts),
        &mut tee,
        &PathBuf::from("<tar output>"),
    )?;
    tee.inner
        .flush()
        .map_err(|e| Error::io("<tar output>", e))?;
    Ok((tee.hasher.finish(), tee.written))
}

fn tar_options(opts: &LayerOptions) -> tarw::TarOptions {
    tarw::TarOptions {
        whiteouts: opts.whiteouts,
        source_date_epoch: opts.source_date_epoch,
    }
}

/// The compressor in front of the blob writer.
enum Encoder {
    Plain(BlobWriter),
    Gzip(pgzip::ParGzWriter<BlobWriter>),
    Zstd(zstd::stream::write::Encoder<'static, BlobWriter>),
}

impl Encoder {
    fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.write_all(buf),
            Encoder::Gzip(w) => w.write_all(buf),
            Encoder::Zstd(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

/// Hashes (for the diff ID) and counts the tar on its way to the compressor.
struct DiffIdWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> Write for DiffIdWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;
