//! Image formats: docker-archive (`docker save`/`docker load`), OCI image
//! layout directories, and OCI archives (a tar of a layout).
//!
//! What we write is deterministic: entries sorted, mtime 0, uid/gid 0.
//! A docker-archive is written in the layout Docker 25+ uses, which older
//! `docker load` reads too: the OCI layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`, blobs exactly as stored so digests survive) plus
//! `manifest.json` and `repositories` pointing into `blobs/`. Docker before
//! 25 decompresses only gzip layers on load (checked against 20.10), so a
//! zstd layer also goes in uncompressed, at its diff_id, and `manifest.json`
//! names that one.
//!
//! Import reads a tar stream once (no seeking: stdin works), storing every
//! blob as it goes, then decides: `index.json` + `oci-layout` means an OCI
//! layout (digests kept byte for byte), else `manifest.json` means a
//! classic docker-archive (a Docker schema2 manifest is made for it).

mod load;
mod save;

pub use load::{LoadedImage, load_archive, load_oci_dir};
pub use save::{
    ExportImage, save_docker_archive, save_oci_archive, save_oci_dir, save_oci_index_archive,
    write_to_path,
};

/// `org.opencontainers.image.ref.name`
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The full image name containerd and Docker put beside the ref name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Which archive format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` format (with the OCI layout inside).
    Docker,
    /// A tar of an OCI image layout.
    Oci,
}
