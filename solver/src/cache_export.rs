//! The build cache as it travels between machines (`--cache-to` / `--cache-from`): a
//! versioned, self-contained description of cache records and the layer chains their
//! results are made of. It is pure data; the CLI writes it as the config blob of an OCI
//! manifest whose layers are the step layers (a local OCI layout or a registry), or
//! inline in an image config, and reads it back.
//!
//! - `layers`: the layer blobs (digest, media type, size, diff_id), sorted by digest;
//! - `snapshots`: one per snapshot of a result chain, a parent index (always lower than
//!   its own), a layer index (`None`: the step changed nothing), its creation time and
//!   whether it is a base-image layer;
//! - `records`: cache key → the snapshot holding its result, sorted by key.
//!
//! Keys are the solver's content-only keys ([`crate::cache`]), so a record made from
//! one checkout hits for another checkout of the same sources anywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::cache::CacheKey;

/// Media type of the cache config blob.
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";
/// The image config field holding an inline cache (`--cache-to type=inline`).
pub const INLINE_CACHE_FIELD: &str = "rbuild.cache.v1";
/// The format version this code reads and writes.
pub const CACHE_FORMAT_VERSION: u32 = 1;

/// What to export: the final image's steps, or every step of every stage built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    #[default]
    Min,
    Max,
}

/// A layer blob.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CacheLayer {
    pub digest: String,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    #[serde(rename = "diffID")]
    pub diff_id: String,
}

/// One snapshot of a result chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheSnapshot {
    /// Index of the parent snapshot (lower than this one's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
    /// Index of its layer; `None` when the step changed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// RFC 3339: when the step finished (the image history's `created`).
    #[serde(default)]
    pub created: String,
    /// A base image's layer (not a step's).
    #[serde(default, rename = "imageLayer")]
    pub image_layer: bool,
}

/// A cache key and the snapshot holding its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    pub key: CacheKey,
    pub snapshot: usize,
    /// The step's name when exported (informational).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step: String,
}

/// The cache config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    pub layers: Vec<CacheLayer>,
    pub snapshots: Vec<CacheSnapshot>,
    pub records: Vec<CacheRecord>,
}

/// One snapshot of a chain handed to [`CacheBuilder::add`], bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    pub layer: Option<CacheLayer>,
    pub created: String,
    pub image_layer: bool,
}

/// Why a cache config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a cache config: {0}")]
    Json(String),
    #[error(
        "unsupported cache format version {0} (this rbuild reads version {CACHE_FORMAT_VERSION})"
    )]
    Version(u32),
    #[error("snapshot {index}: {reason}")]
    Snapshot { index: usize, reason: String },
    #[error("record {key}: snapshot {snapshot} does not exist")]
    Record { key: String, snapshot: usize },
    #[error("layer {digest}: {reason}")]
    Layer { digest: String, reason: String },
}

fn is_sha256(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl CacheConfig {
    /// Parses and validates a config blob.
    pub fn parse(bytes: &[u8]) -> Result<CacheConfig, FormatError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| FormatError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    /// Validates a config already parsed as JSON (an inline cache field).
    pub fn from_value(value: serde_json::Value) -> Result<CacheConfig, FormatError> {
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(CACHE_FORMAT_VERSION)) {
            return Err(FormatError::Version(
                version.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            ));
        }
        let mut cfg: CacheConfig =
            serde_json::from_value(value).map_err(|e| FormatError::Json(e.to_string()))?;
        // Lookups binary-search the records.
        cfg.records.sort_by(|a, b| a.key.cmp(&b.key));
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every index in range, parents before children (no cycles), digests well formed.
    pub fn validate(&self) -> Result<(), FormatError> {
        for l in &self.layers {
            for (what, d) in [("digest", &l.digest), ("diffID", &l.diff_id)] {
                if !is_sha256(d) {
                    return Err(FormatError::Layer {
                        digest: l.digest.clone(),
                        reason: format!("{what} {d:?} is not a sha256 digest"),
                    });
                }
            }
        }
        for (index, s) in self.snapshots.iter().enumerate() {
            if s.parent.is_some_and(|p| p >= index) {
                return Err(FormatError::Snapshot {
                    index,
                    reason: "its parent does not come before it".into(),
                });
            }
            if s.layer.is_some_and(|l| l >= self.layers.len()) {
                return Err(FormatError::Snapshot {
                    index,
                    reason: "its layer does not exist".into(),
                });
            }
        }
        for r in &self.records {
            if r.snapshot >= self.snapshots.len() {
                return Err(FormatError::Record {
                    key: r.key.0.clone(),
                    snapshot: r.snapshot,
                });
            }
        }
        Ok(())
    }

    /// The canonical bytes (sorted keys, no whitespace).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| crate::op::canonical_json(&v).ok())
            .unwrap_or_default()
            .into_bytes()
    }

    /// The snapshot of `key`'s result, if recorded.
    pub fn lookup(&self, key: &CacheKey) -> Option<usize> {
        self.records
            .binary_search_by(|r| r.key.cmp(key))
            .ok()
            .and_then(|i| self.records.get(i))
            .map(|r| r.snapshot)
    }

    /// The chain ending at `snapshot`, bottom first (empty for a bad index).
    pub fn chain(&self, snapshot: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut cur = Some(snapshot);
        while let Some(i) = cur {
            let Some(s) = self.snapshots.get(i) else {
                return Vec::new();
            };
            out.push(i);
            // Parents always come first (validated), so this ends.
            cur = s.parent.filter(|p| *p < i);
        }
        out.reverse();
        out
    }

    /// The layer of a snapshot.
    pub fn layer(&self, snapshot: usize) -> Option<&CacheLayer> {
        self.snapshots
            .get(snapshot)
            .and_then(|s| s.layer)
            .and_then(|l| self.layers.get(l))
    }
}

/// Builds a [`CacheConfig`] from result chains, sharing common snapshots and layers.
#[derive(Debug, Default)]
pub struct CacheBuilder {
    layers: BTreeSet<CacheLayer>,
    snapshots: Vec<(Option<usize>, Option<CacheLayer>, String, bool)>,
    index: HashMap<(Option<usize>, Option<CacheLayer>, String, bool), usize>,
    records: BTreeMap<CacheKey, (usize, String)>,
}

impl CacheBuilder {
    pub fn new() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// Records `key`'s result as the chain `chain` (bottom first); a key added twice
    /// keeps its first chain. An empty chain records nothing.
    pub fn add(&mut self, key: &CacheKey, step: &str, chain: &[ChainEntry]) {
        let mut parent = None;
        for e in chain {
            if let Some(l) = &e.layer {
                self.layers.insert(l.clone());
            }
            let id = (parent, e.layer.clone(), e.created.clone(), e.image_layer);
            let next = self.snapshots.len();
            let i = *self.index.entry(id.clone()).or_insert(next);
            if i == next {
                self.snapshots.push(id);
            }
            parent = Some(i);
        }
        if let Some(top) = parent {
            self.records
                .entry(key.clone())
                .or_insert((top, step.to_string()));
        }
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn build(self) -> CacheConfig {
        let layers: Vec<CacheLayer> = self.layers.into_iter().collect();
        let layer_index: HashMap<&CacheLayer, usize> =
            layers.iter().enumerate().map(|(i, l)| (l, i)).collect();
        let snapshots = self
            .snapshots
            .iter()
            .map(|(parent, layer, created, image_layer)| CacheSnapshot {
                parent: *parent,
                layer: layer.as_ref().and_then(|l| layer_index.get(l).copied()),
                created: created.clone(),
                image_layer: *image_layer,
            })
            .collect();
        let records = self
            .records
            .into_iter()
            .map(|(key, (snapshot, step))| CacheRecord {
                key,
                snapshot,
                step,
            })
            .collect();
        CacheConfig {
            version: CACHE_FORMAT_VERSION,
            layers,
            snapshots,
            records,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layer(n: u8) -> CacheLayer {
        CacheLayer {
            digest: format!("sha256:{}", hex::encode([n; 32])),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: u64::from(n),
            diff_id: format!("sha256:{}", hex::encode([n + 100; 32])),
        }
    }

    fn entry(l: Option<u8>, created: &str) -> ChainEntry {
        ChainEntry {
            layer: l.map(layer),
            created: created.into(),
            image_layer: false,
        }
    }

    fn key(s: &str) -> CacheKey {
        CacheKey(format!("sha256:{s}"))
    }

    #[test]
    fn chains_share_their_common_snapshots_and_round_trip() {
        let mut b = CacheBuilder::new();
        let base = ChainEntry {
            image_layer: true,
            ..entry(Some(1), "t0")
        };
        b.add(&key("bb"), "RUN b", &[base.clone(), entry(Some(2), "t1")]);
        b.add(
            &key("aa"),
            "RUN a",
            &[base.clone(), entry(Some(2), "t1"), entry(None, "t2")],
        );
        b.add(&key("cc"), "FROM", std::slice::from_ref(&base));
        let cfg = b.build();
        assert_eq!(cfg.layers.len(), 2);
        assert_eq!(cfg.snapshots.len(), 3, "{cfg:?}");
        assert_eq!(
            cfg.records
                .iter()
                .map(|r| r.key.0.as_str())
                .collect::<Vec<_>>(),
            ["sha256:aa", "sha256:bb", "sha256:cc"]
        );
        let a = cfg.lookup(&key("aa")).unwrap();
        let chain = cfg.chain(a);
        assert_eq!(chain.len(), 3);
        assert!(cfg.snapshots[chain[0]].image_layer);
        assert_eq!(cfg.layer(chain[1]), Some(&layer(2)));
        assert_eq!(cfg.layer(chain[2]), None, "an empty step has no layer");
        assert_eq!(cfg.lookup(&key("dd")), None);

        let bytes = cfg.to_bytes();
        assert_eq!(CacheConfig::parse(&bytes).unwrap(), cfg);
        // Canonical: the same input gives the same bytes.
        let mut again = CacheBuilder::new();
        again.add(&key("cc"), "FROM", std::slice::from_ref(&base));
        again.add(&key("bb"), "RUN b", &[base.clone(), entry(Some(2), "t1")]);
        again.add(
            &key("aa"),
            "RUN a",
            &[base, entry(Some(2), "t1"), entry(None, "t2")],
        );
        assert_eq!(again.build().records, cfg.records);
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut b = CacheBuilder::new();
        b.add(&key("aa"), "", &[entry(Some(1), "t"), entry(Some(2), "t")]);
        let cfg = b.build();

        let mut v = serde_json::to_value(&cfg).unwrap();
        v["version"] = 2.into();
        assert_eq!(
            CacheConfig::from_value(v).unwrap_err(),
            FormatError::Version(2)
        );

        let mut cyclic = cfg.clone();
        cyclic.snapshots[0].parent = Some(1);
        assert!(matches!(
            cyclic.validate(),
            Err(FormatError::Snapshot { index: 0, .. })
        ));

        let mut dangling = cfg.clone();
        dangling.records[0].snapshot = 9;
        assert!(matches!(
            dangling.validate(),
            Err(FormatError::Record { .. })
        ));

        let mut bad_digest = cfg.clone();
        bad_digest.layers[0].diff_id = "sha256:../../etc".into();
        assert!(matches!(
            bad_digest.validate(),
            Err(FormatError::Layer { .. })
        ));

        assert!(matches!(
            CacheConfig::parse(b"{\"version\":1,\"layers\":7}"),
            Err(FormatError::Json(_))
        ));
        assert!(CacheConfig::parse(&cfg.to_bytes()).is_ok());
    }
}
