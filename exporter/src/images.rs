//! The image index: which names point at which image manifests.
//!
//! Stored as one JSON file, `<root>/images-v1/index.json`, replaced atomically
//! (temp file, fsync, rename) under an exclusive flock on
//! `<root>/locks/images.lock`; readers need no lock. Each record is one name
//! (a full docker reference: `docker.io/library/busybox:latest`, or
//! `repo@sha256:…`) → manifest digest, with the config digest (the image ID),
//! platform, media type and created time. An image that lost its last name
//! stays as a *dangling* record (no name, `<none>:<none>` in `images`) until
//! pruned, as Docker does.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::lock::FileLock;
use crate::reference::{ImageRef, Reference};
use crate::store::{Store, write_atomic};

/// Directory of the index under the root.
pub const IMAGES_DIR: &str = "images-v1";

/// One name → image entry (or a dangling image when `name` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Full docker reference, tagged or digested; `None` for a dangling image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The single-platform manifest's digest.
    pub target: Digest,
    /// The manifest's media type (Docker schema2 or OCI).
    pub media_type: String,
    /// The config digest: the image ID.
    pub config: Digest,
    /// `os/arch[/variant]` of the image.
    pub platform: String,
    /// The config's `created` time (RFC 3339), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Manifest + config + layer blob sizes.
    pub size: u64,
    /// The digest a registry knows this image by (the index or manifest
    /// pulled), for `RepoDigests`; `None` when never pulled or pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_digest: Option<Digest>,
    /// When this record was written (RFC 3339).
    pub updated: String,
}

impl ImageRecord {
    /// The parsed name, if the record has one.
    pub fn reference(&self) -> Option<Reference> {
        self.name
            .as_deref()
            .and_then(|n| Reference::parse_normalized(n).ok())
    }

    /// The image ID (config digest).
    pub fn id(&self) -> &Digest {
        &self.config
    }

    /// A record for the image with manifest `manifest` in `store` (no name yet).
    pub fn from_store(
        store: &Store,
        manifest: &Digest,
        repo_digest: Option<Digest>,
    ) -> Result<ImageRecord> {
        let image = Image::load(store, manifest)?;
        Ok(ImageRecord::from_image(&image, repo_digest))
    }

    pub fn from_image(image: &Image, repo_digest: Option<Digest>) -> ImageRecord {
        ImageRecord {
            name: None,
            target: image.manifest_digest.clone(),
            media_type: image.manifest_media_type.clone(),
            config: image.config_digest.clone(),
            platform: image.platform().to_string(),
            created: image.created().map(str::to_string),
            size: image.content_size(),
            repo_digest,
            updated: now_rfc3339(),
        }
    }
}

/// Now, as RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<ImageRecord>,
}

/// What `remove` did, in order, for messages like Docker's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A name was removed (full reference string).
    Untagged(String),
    /// The image itself is gone from the index (its ID).
    Deleted(Digest),
}

/// The image index of one root.
#[derive(Debug, Clone)]
pub struct Images {
    store: Store,
    path: PathBuf,
}

impl Images {
    pub fn open(store: &Store) -> Images {
        Images {
            store: store.clone(),
            path: store.root().join(IMAGES_DIR).join("index.json"),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// All records, sorted by name (dangling last).
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.load()?.images)
    }

    /// Points `name` at the image with manifest `manifest` (already in the
    /// store), or records it as dangling when `name` is `None`. The previous
    /// target of `name` becomes dangling if nothing else names it. Call this
    /// while still holding the [`crate::store::Lease`] the content was written under.
    pub fn record(
        &self,
        name: Option<&Reference>,
        manifest: &Digest,
        repo_digest: Option<Digest>,
    ) -> Result<ImageRecord> {
        let rec = ImageRecord::from_store(&self.store, manifest, repo_digest)?;
        self.put(name, rec)
    }

    /// Like [`Images::record`] with a record built by the caller.
    pub fn put(&self, name: Option<&Reference>, mut rec: ImageRecord) -> Result<ImageRecord> {
        rec.name = name.map(|n| n.to_string());
        self.update(|images| {
            let mut displaced = None;
            if let Some(n) = &rec.name {
                if let Some(pos) = images.iter().position(|r| r.name.as_ref() == Some(n)) {
                    displaced = Some(images.remove(pos));
                }
                // A named image is no longer dangling.
                images.retain(|r| !(r.name.is_none() && r.target == rec.target));
                // Keep what we know of the registry digest.
                if rec.repo_digest.is_none() {
                    if let Some(d) = displaced.as_ref().filter(|d| d.target == rec.target) {
                        rec.repo_digest = d.repo_digest.clone();
                    }
                }
                images.push(rec.clone());
            } else if !images.iter().any(|r| r.target == rec.target) {
                images.push(rec.clone());
            }
            if let Some(mut old) = displaced {
                if !images.iter().any(|r| r.target == old.target) {
                    old.name = None;
                    images.push(old);
                }
            }
            Ok(rec.clone())
        })
    }

    /// Every record `s` names: by name (`busybox`, `busybox:1`,
    /// `busybox@sha256:…`), by image ID or manifest digest (`sha256:…` or
    /// 64 hex), or by an image ID prefix (`3f57d9401f8d`).
    pub fn lookup(&self, s: &str) -> Result<Vec<ImageRecord>> {
        let images = self.list()?;
        match ImageRef::parse(s) {
            Ok(ImageRef::Digest(d)) => Ok(images
                .into_iter()
                .filter(|r| r.config == d || r.target == d)
                .collect()),
            Ok(ImageRef::Named(r)) => {
                let full = r.to_string();
                let by_name: Vec<ImageRecord> = images
                    .iter()
                    .filter(|rec| rec.name.as_deref() == Some(full.as_str()))
                    .cloned()
                    .collect();
                if !by_name.is_empty() {
                    return Ok(by_name);
                }
                if let Some(d) = r.digest() {
                    // `repo@digest` also finds a tagged image of that repo by digest.
                    let repo = r.repository();
                    let hits: Vec<ImageRecord> = images
                        .iter()
                        .filter(|rec| {
                            rec.reference().is_some_and(|n| n.repository() == repo)
                                && (rec.target == *d || rec.repo_digest.as_ref() == Some(d))
                        })
                        .cloned()
                        .collect();
                    return Ok(hits);
                }
                Ok(by_id_prefix(&images, s))
            }
            Err(e) => {
                let hits = by_id_prefix(&images, s);
                if hits.is_empty() { Err(e) } else { Ok(hits) }
            }
        }
    }

    /// The one image `s` names; an error when none or when an ID prefix is ambiguous.
    pub fn resolve(&self, s: &str) -> Result<ImageRecord> {
        let hits = self.lookup(s)?;
        let ids: BTreeSet<&Digest> = hits.iter().map(|r| &r.config).collect();
        match (hits.first(), ids.len()) {
            (None, _) => Err(Error::ImageNotFound {
                reference: s.to_string(),
            }),
            (Some(first), 1) => Ok(first.clone()),
            _ => Err(Error::Conflict(format!(
                "{s:?} is ambiguous: it matches {} images",
                ids.len()
            ))),
        }
    }

    /// All names of the image with manifest `target`.
    pub fn names_of(&self, target: &Digest) -> Result<Vec<String>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.target == *target)
            .filter_map(|r| r.name)
            .collect())
    }

    /// `docker tag SRC DST`.
    pub fn tag(&self, src: &str, dst: &Reference) -> Result<ImageRecord> {
        let rec = self.resolve(src)?;
        self.put(Some(dst), rec)
    }

    /// `docker rmi`: a name removes that name (and the image with its last
    /// name); an ID removes the image with all its names, which needs `force`
    /// when it has more than one.
    pub fn remove(&self, s: &str, force: bool) -> Result<Vec<Removed>> {
        let hits = self.lookup(s)?;
        if hits.is_empty() {
            return Err(Error::ImageNotFound {
                reference: s.to_string(),
            });
        }
        let by_name = matches!(ImageRef::parse(s), Ok(ImageRef::Named(ref r)) if hits.iter().any(|h| h.name.as_deref() == Some(r.to_string().as_str())));
        let ids: BTreeSet<Digest> = hits.iter().map(|r| r.config.clone()).collect();
        if ids.len() > 1 {
            return Err(Error::Conflict(format!(
                "{s:?} is ambiguous: it matches {} images",
                ids.len()
            )));
        }
        self.update(|images| {
            let mut events = Vec::new();
            let targets: BTreeSet<Digest> = if by_name {
                let names: BTreeSet<Option<String>> = hits.iter().map(|h| h.name.clone()).collect();
                let targets = hits.iter().map(|h| h.target.clone()).collect();
                images.retain(|r| {
                    if names.contains(&r.name) {
                        if let Some(n) = &r.name {
                            events.push(Removed::Untagged(n.clone()));
                        }
                        false
                    } else {
                        true
                    }
                });
                targets
            } else {
                let id = hits[0].config.clone();
                let named: Vec<&ImageRecord> = images.iter().filter(|r| r.config == id && r.name.is_some()).collect();
                if named.len() > 1 && !force {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        short_id(&id)
                    )));
                }
                let targets = images.iter().filter(|r| r.config == id).map(|r| r.target.clone()).collect();
                images.retain(|r| {
                    if r.config == id {
                        if let Some(n) = &r.name {
                            events.push(Removed::Untagged(n.clone()));
                        }
                        false
                    } else {
                        true
                    }
                });
                targets
            };
            let mut deleted = BTreeSet::new();
            for t in targets {
                if !images.iter().any(|r| r.target == t) {
                    if let Some(h) = hits.iter().find(|h| h.target == t) {
                        deleted.insert(h.config.clone());
                    }
                }
            }
            for id in deleted {
                if !images.iter().any(|r| r.config == id) {
                    events.push(Removed::Deleted(id));
                }
            }
            Ok(events)
        })
    }

    /// Removes dangling records (`prune`) or, with `all`, every record, except the records
    /// of the images in `in_use` (config or manifest digests: used by containers, as Docker
    /// keeps them); returns the removed records.
    pub fn prune(
        &self,
        all: bool,
        in_use: &std::collections::BTreeSet<Digest>,
    ) -> Result<Vec<ImageRecord>> {
        self.update(|images| {
            let (gone, keep): (Vec<ImageRecord>, Vec<ImageRecord>) =
                std::mem::take(images).into_iter().partition(|r| {
                    (all || r.name.is_none())
                        && !in_use.contains(&r.config)
                        && !in_use.contains(&r.target)
                });
            *images = keep;
            Ok(gone)
        })
    }

    /// Runs `f` on the records under the exclusive index lock and saves the result.
    pub fn update<T>(&self, f: impl FnOnce(&mut Vec<ImageRecord>) -> Result<T>) -> Result<T> {
        let _lock = FileLock::exclusive(self.store.lock_path("images.lock"))?;
        let mut file = self.load()?;
        let out = f(&mut file.images)?;
        file.version = 1;
        file.images.sort_by(|a, b| {
            (a.name.is_none(), &a.name, &a.target).cmp(&(b.name.is_none(), &b.name, &b.target))
        });
        let bytes = serde_json::to_vec_pretty(&file).map_err(|source| Error::Json {
            what: self.path.display().to_string(),
            source,
        })?;
        write_atomic(&self.path, &bytes)?;
        Ok(out)
    }

    fn load(&self) -> Result<IndexFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                what: self.path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }
}

/// The 12-hex-digit short form Docker prints for IDs.
pub fn short_id(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

fn by_id_prefix(images: &[ImageRecord], s: &str) -> Vec<ImageRecord> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.is_empty()
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Vec::new();
    }
    images
        .iter()
        .filter(|r| r.config.hex().starts_with(hex))
        .cloned()
        .collect()
}
