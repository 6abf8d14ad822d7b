//! The image model: a manifest (Docker schema2 or OCI) with its config and
//! layers, read from the store with the raw bytes kept (digests are over
//! those bytes); indexes / manifest lists and platform selection.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{self, Compression};
use crate::store::Store;

/// `os/arch[/variant]`, as `--platform` spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// The platform of this machine, in Go's GOOS/GOARCH spelling.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        let variant = match arch {
            "arm" => Some("v7"),
            _ => None,
        };
        Platform::new(std::env::consts::OS, arch, variant).normalized()
    }

    /// Canonical spelling (containerd's `platforms.Normalize`): `x86_64` is
    /// `amd64`, `aarch64` is `arm64`, arm64's variant `v8` is implied, etc.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_lowercase();
        let (arch, variant) = match (
            self.architecture.to_lowercase().as_str(),
            self.variant.as_deref(),
        ) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_string(), v.filter(|v| *v != "v1")),
            ("i386" | "386", _) => ("386".to_string(), None),
            ("aarch64" | "arm64", v) => {
                ("arm64".to_string(), v.filter(|v| *v != "v8" && *v != "8"))
            }
            ("armhf", _) => ("arm".to_string(), Some("v7")),
            ("armel", _) => ("arm".to_string(), Some("v6")),
            ("arm", None) => ("arm".to_string(), Some("v7")),
            ("arm", Some(v)) => ("arm".to_string(), Some(v)),
            (a, v) => (a.to_string(), v),
        };
        let variant = variant.map(|v| {
            if arch == "arm" && !v.starts_with('v') {
                format!("v{v}")
            } else {
                v.to_string()
            }
        });
        Platform {
            os,
            architecture: arch,
            variant,
        }
    }

    /// Does an image of platform `candidate` satisfy a request for `self`?
    /// A request without variant accepts any variant of the architecture.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let (want, have) = (self.normalized(), candidate.normalized());
        want.os == have.os
            && want.architecture == have.architecture
            && (self.variant.is_none() || want.variant == have.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || Error::InvalidImage {
            what: format!("platform {s:?}"),
            reason: "expected os/arch[/variant], e.g. linux/amd64 or linux/arm/v7".into(),
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(bad()),
        }
    }
}

impl From<&oci_spec::image::Platform> for Platform {
    fn from(p: &oci_spec::image::Platform) -> Platform {
        Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        )
    }
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Digest of the blob as stored (usually compressed).
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// Digest of the uncompressed tar (from the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

impl Layer {
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_media_type(&self.media_type)
    }
}

/// A single-platform image read from the store.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// The manifest exactly as stored.
    pub manifest_bytes: Vec<u8>,
    pub manifest: ImageManifest,
    /// The image ID (`docker images` "IMAGE ID").
    pub config_digest: Digest,
    pub config_media_type: String,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfiguration,
    pub layers: Vec<Layer>,
}

/// A parsed manifest or index blob.
#[derive(Debug, Clone)]
pub enum Parsed {
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// The media type a manifest-ish blob declares, else what its shape says.
pub fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    match (p.media_type, p.manifests, p.config) {
        (Some(mt), _, _) => Some(mt),
        (None, Some(_), _) => Some(media::OCI_INDEX.to_string()),
        (None, None, Some(_)) => Some(media::OCI_MANIFEST.to_string()),
        _ => None,
    }
}

/// Parses a manifest or index; `media_type` from the descriptor or registry,
/// else sniffed from the bytes.
pub fn parse(bytes: &[u8], media_type: Option<&str>, what: &str) -> Result<(String, Parsed)> {
    let mt = match media_type {
        Some(mt) if media::is_manifest(mt) || media::is_index(mt) => mt.to_string(),
        _ => sniff_media_type(bytes).ok_or_else(|| Error::InvalidImage {
            what: what.to_string(),
            reason: "not an image manifest or index".into(),
        })?,
    };
    let json_err = |source| Error::Json {
        what: what.to_string(),
        source,
    };
    if media::is_index(&mt) {
        let idx: ImageIndex = serde_json::from_slice(bytes).map_err(json_err)?;
        Ok((mt, Parsed::Index(Box::new(idx))))
    } else if media::is_manifest(&mt) {
        let m: ImageManifest = serde_json::from_slice(bytes).map_err(json_err)?;
        Ok((mt, Parsed::Manifest(Box::new(m))))
    } else {
        Err(Error::InvalidImage {
            what: what.to_string(),
            reason: format!("unsupported manifest media type {mt}"),
        })
    }
}

/// Our digest type from oci-spec's.
pub fn digest_of(d: &oci_spec::image::Digest) -> Result<Digest> {
    Ok(d.to_string().parse::<Digest>()?)
}

impl Image {
    /// Reads the image whose manifest is `manifest_digest` from the store.
    pub fn load(store: &Store, manifest_digest: &Digest) -> Result<Image> {
        let bytes = store.read_blob(manifest_digest)?;
        let what = format!("manifest {manifest_digest}");
        let (mt, parsed) = parse(&bytes, None, &what)?;
        let Parsed::Manifest(manifest) = parsed else {
            return Err(Error::InvalidImage {
                what,
                reason: "is an index, not a single-platform manifest".into(),
            });
        };
        Self::from_parts(store, manifest_digest.clone(), mt, bytes, *manifest)
    }

    fn from_parts(
        store: &Store,
        manifest_digest: Digest,
        manifest_media_type: String,
        manifest_bytes: Vec<u8>,
        manifest: ImageManifest,
    ) -> Result<Image> {
        let config_digest = digest_of(manifest.config().digest())?;
        let config_bytes = store.read_blob(&config_digest)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|source| Error::Json {
                what: format!("image config {config_digest}"),
                source,
            })?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::InvalidImage {
                what: format!("image {manifest_digest}"),
                reason: format!(
                    "manifest has {} layers but config lists {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
            layers.push(Layer {
                digest: digest_of(desc.digest())?,
                size: desc.size(),
                media_type: desc.media_type().to_string(),
                diff_id: diff_id.parse()?,
            });
        }
        Ok(Image {
            config_media_type: manifest.config().media_type().to_string(),
            manifest_digest,
            manifest_media_type,
            manifest_bytes,
            manifest,
            config_digest,
            config_bytes,
            config,
            layers,
        })
    }

    pub fn platform(&self) -> Platform {
        Platform::new(
            &self.config.os().to_string(),
            &self.config.architecture().to_string(),
            self.config.variant().as_deref(),
        )
    }

    /// Manifest + config + layer blobs, in bytes.
    pub fn content_size(&self) -> u64 {
        self.manifest_bytes.len() as u64
            + self.config_bytes.len() as u64
            + self.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// The config's `created`, if any.
    pub fn created(&self) -> Option<&str> {
        self.config.created().as_deref()
    }

    /// Chain IDs of the layer stack (the last is the whole image's).
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(self.layers.iter().map(|l| &l.diff_id))
    }

    /// Every blob this image needs: manifest, config, layers.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut v = vec![self.manifest_digest.clone(), self.config_digest.clone()];
        v.extend(self.layers.iter().map(|l| l.digest.clone()));
        v
    }
}

/// `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`.
pub fn chain_ids<'a>(diff_ids: impl IntoIterator<Item = &'a Digest>) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Resolves `digest` (a manifest, or an index to select from) to the
/// manifest for `wanted`. `reference` names the image in error messages.
/// Returns the manifest digest and its media type.
pub fn select_manifest(
    store: &Store,
    digest: &Digest,
    wanted: &Platform,
    reference: &str,
) -> Result<(Digest, String)> {
    let mut current = digest.clone();
    // Indexes may nest; a few levels are plenty.
    for _ in 0..4 {
        let bytes = store.read_blob(&current)?;
        let (mt, parsed) = parse(&bytes, None, &format!("{reference} ({current})"))?;
        match parsed {
            Parsed::Manifest(_) => return Ok((current, mt)),
            Parsed::Index(idx) => {
                let d = choose_from_index(&idx, wanted, reference)?;
                current = d;
            }
        }
    }
    Err(Error::InvalidImage {
        what: reference.to_string(),
        reason: "indexes nested too deep".into(),
    })
}

/// Picks the descriptor of an index for `wanted` (exact variant first).
pub fn choose_from_index(idx: &ImageIndex, wanted: &Platform, reference: &str) -> Result<Digest> {
    let mut available = Vec::new();
    let mut best: Option<(u8, Digest)> = None;
    for desc in idx.manifests() {
        let mt = desc.media_type().to_string();
        if !(media::is_manifest(&mt) || media::is_index(&mt)) {
            continue;
        }
        let Some(p) = desc.platform().as_ref().map(Platform::from) else {
            continue;
        };
        // Attestation manifests (buildx) are listed as unknown/unknown.
        if p.os == "unknown" {
            continue;
        }
        available.push(p.to_string());
        if wanted.matches(&p) {
            let score = if wanted.normalized().variant == p.normalized().variant {
                2
            } else {
                1
            };
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, digest_of(desc.digest())?));
            }
        }
    }
    match best {
        Some((_, d)) => Ok(d),
        None => {
            available.sort();
            available.dedup();
            Err(Error::NoMatchingPlatform {
                reference: reference.to_string(),
                wanted: wanted.to_string(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(p.matches(&Platform::new("linux", "arm64", None)));
        assert!(Platform::new("linux", "arm64", None).matches(&p));
        assert!(
            Platform::new("linux", "amd64", None).matches(&Platform::new("linux", "x86_64", None))
        );
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(!v7.matches(&"linux/arm/v6".parse().unwrap()));
        assert!(v7.matches(&Platform::new("linux", "arm", Some("7"))));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn index_selection_lists_available() {
        let idx: ImageIndex = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
              {{"mediaType":"{}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
              {{"mediaType":"{}","digest":"{}","size":1,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#,
            media::OCI_INDEX,
            media::OCI_MANIFEST,
            Digest::sha256(b"a"),
            media::OCI_MANIFEST,
            Digest::sha256(b"b"),
            media::OCI_MANIFEST,
            Digest::sha256(b"c"),
        ))
        .unwrap();
        let got = choose_from_index(&idx, &"linux/amd64".parse().unwrap(), "x").unwrap();
        assert_eq!(got, Digest::sha256(b"a"));
        let got = choose_from_index(&idx, &"linux/arm".parse().unwrap(), "x").unwrap();
        assert_eq!(got, Digest::sha256(b"b"));
        let err = choose_from_index(&idx, &"linux/s390x".parse().unwrap(), "x").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("linux/amd64, linux/arm/v7"), "{msg}");
        assert!(!msg.contains("unknown"), "{msg}");
    }

    #[test]
    fn chain_id_rule() {
        let a = Digest::sha256(b"a");
        let b = Digest::sha256(b"b");
        let ids = chain_ids([&a, &b]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::sha256(format!("{a} {b}").as_bytes()));
    }
}
