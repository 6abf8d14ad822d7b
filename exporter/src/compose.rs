//! Writing new images into the store: layer blobs from tar streams (hashed
//! for the diff ID while compressed into the store), then config and
//! manifest. Used by `load`/import paths, the tests, and later the build engine.

use std::io::{self, Read, Write};

use serde_json::{Value, json};

use crate::digest::{Algorithm, Hasher};
use crate::error::{Error, Result};
use crate::image::{Image, Layer, Platform};
use crate::media::{self, Compression};
use crate::store::Store;

/// Which manifest flavour to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    Oci,
    Docker,
}

/// Passes writes on to `inner` while hashing them.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streams an uncompressed layer tar into the store, compressed as asked.
/// Returns the layer with its blob digest and diff ID.
pub fn add_layer(
    store: &Store,
    tar: &mut dyn Read,
    compression: Compression,
    format: ManifestFormat,
) -> Result<Layer> {
    let writer = store.ingest(None, None)?;
    let tmp = writer.temp_path().to_path_buf();
    let ioe = |e| Error::io(&tmp, e);
    let (writer, diff_id) = match compression {
        Compression::None => {
            let mut w = HashingWriter {
                inner: writer,
                hasher: Hasher::new(Algorithm::Sha256),
            };
            io::copy(tar, &mut w).map_err(ioe)?;
            (w.inner, w.hasher.finish())
        }
        Compression::Gzip => {
            let enc = flate2::GzBuilder::new().write(writer, flate2::Compression::default());
            let mut w = HashingWriter {
                inner: enc,
                hasher: Hasher::new(Algorithm::Sha256),
            };
            io::copy(tar, &mut w).map_err(ioe)?;
            let diff = w.hasher.finish();
            (w.inner.finish().map_err(ioe)?, diff)
        }
        Compression::Zstd => {
            let enc = zstd::stream::write::Encoder::new(writer, 3).map_err(ioe)?;
            let mut w = HashingWriter {
                inner: enc,
                hasher: Hasher::new(Algorithm::Sha256),
            };
            io::copy(tar, &mut w).map_err(ioe)?;
            let diff = w.hasher.finish();
            (w.inner.finish().map_err(ioe)?, diff)
        }
    };
    let (digest, size) = writer.commit()?;
    let media_type = match format {
        ManifestFormat::Oci => compression.oci_layer_media_type(),
        ManifestFormat::Docker => compression.docker_layer_media_type(),
    };
    Ok(Layer {
        digest,
        size,
        media_type: media_type.to_string(),
        diff_id,
    })
}

/// What goes into a new image's config besides its layers.
#[derive(Debug, Clone)]
pub struct ImageConfigInput {
    pub platform: Platform,
    /// RFC 3339; fixed values give reproducible image IDs.
    pub created: String,
    /// The Docker-style `config` object (`Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `Labels`…).
    pub config: Value,
    /// One `created_by` per layer (or fewer; missing ones are empty).
    pub history: Vec<String>,
}

/// Writes config and manifest for `layers` (already in the store) and
/// returns the new image. Nothing is tagged.
pub fn write_image(
    store: &Store,
    layers: &[Layer],
    input: &ImageConfigInput,
    format: ManifestFormat,
) -> Result<Image> {
    let history: Vec<Value> = layers
        .iter()
        .enumerate()
        .map(|(i, _)| {
            json!({
                "created": input.created,
                "created_by": input.history.get(i).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let mut config = json!({
        "architecture": input.platform.architecture,
        "config": input.config,
        "created": input.created,
        "history": history,
        "os": input.platform.os,
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        },
    });
    if let (Some(v), Some(obj)) = (&input.platform.variant, config.as_object_mut()) {
        obj.insert("variant".into(), Value::String(v.clone()));
    }
    let config_bytes = to_json(&config, "image config")?;
    write_image_with_config(store, layers, &config_bytes, format)
}

/// Writes `config_bytes` (a complete image config, its `rootfs.diff_ids` matching `layers`)
/// and a manifest for `layers` (already in the store); returns the new image. Nothing is
/// tagged. For callers that build the whole config themselves (the build engine).
pub fn write_image_with_config(
    store: &Store,
    layers: &[Layer],
    config_bytes: &[u8],
    format: ManifestFormat,
) -> Result<Image> {
    let config_digest = store.put_bytes(config_bytes, None)?;
    let (manifest_mt, config_mt) = match format {
        ManifestFormat::Oci => (media::OCI_MANIFEST, media::OCI_CONFIG),
        ManifestFormat::Docker => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG),
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_mt,
        "config": {
            "mediaType": config_mt,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.digest.to_string(),
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = to_json(&manifest, "image manifest")?;
    let manifest_digest = store.put_bytes(&manifest_bytes, None)?;
    Image::load(store, &manifest_digest)
}

/// Compact JSON, as registries and docker write it.
pub fn to_json(v: &impl serde::Serialize, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| Error::Json {
        what: what.to_string(),
        source,
    })
}
