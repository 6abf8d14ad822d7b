//! Media types of image content, and layer compression.

use std::io::{self, BufRead, BufReader, Read};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_ND_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_ND_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_ND_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// Is this the media type of a single-platform image manifest?
pub fn is_manifest(media_type: &str) -> bool {
    media_type == DOCKER_MANIFEST || media_type == OCI_MANIFEST
}

/// Is this the media type of an index / manifest list?
pub fn is_index(media_type: &str) -> bool {
    media_type == DOCKER_MANIFEST_LIST || media_type == OCI_INDEX
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer media type; `None` when the type says nothing (unknown type).
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            OCI_LAYER_TAR | OCI_LAYER_ND_TAR | DOCKER_LAYER_TAR => Some(Compression::None),
            OCI_LAYER_GZIP | OCI_LAYER_ND_GZIP | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN => {
                Some(Compression::Gzip)
            }
            OCI_LAYER_ZSTD | OCI_LAYER_ND_ZSTD | DOCKER_LAYER_ZSTD => Some(Compression::Zstd),
            _ if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") => {
                Some(Compression::Gzip)
            }
            _ if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") => {
                Some(Compression::Zstd)
            }
            _ if media_type.ends_with(".tar") => Some(Compression::None),
            _ => None,
        }
    }

    /// From the first bytes of the blob.
    pub fn from_magic(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }

    /// The Docker schema2 layer media type for this compression.
    pub fn docker_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => DOCKER_LAYER_TAR,
            Compression::Gzip => DOCKER_LAYER_GZIP,
            Compression::Zstd => DOCKER_LAYER_ZSTD,
        }
    }
}

/// Wraps `reader` in the decompressor its magic bytes call for (the magic
/// wins over `hint`, since media types in the wild are sometimes wrong).
pub fn decompress<'a>(
    reader: impl Read + 'a,
    hint: Option<Compression>,
) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(128 * 1024, reader);
    let head = buf.fill_buf()?;
    let compression = if head.is_empty() {
        hint.unwrap_or(Compression::None)
    } else {
        Compression::from_magic(head)
    };
    Ok(match compression {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_and_decompresses() {
        let data = b"hello layer".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        for (blob, c) in [
            (data.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zs, Compression::Zstd),
        ] {
            assert_eq!(Compression::from_magic(&blob), c);
            let mut out = Vec::new();
            decompress(&blob[..], None)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
        assert_eq!(
            Compression::from_media_type(OCI_LAYER_ZSTD),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_media_type(DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_media_type("text/plain"), None);
    }
}
