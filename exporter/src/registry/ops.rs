//! Manifest and blob operations on one repository: GET/PUT manifests with
//! their exact bytes, HEAD/GET blobs (streamed into the store's verifying
//! writer), and blob uploads (cross-repository mount, monolithic PUT or
//! chunked PATCH).

use std::io::{Read, Seek, SeekFrom, Write};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

use super::client::{Repository, error_chain, error_from_response, read_limited};
use super::media;
use super::progress::{Progress, ProgressEvent};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::Store;

/// Manifests and indexes larger than this are refused (as containerd does).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// A manifest or index exactly as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The registry had the blob already (HEAD said so).
    Exists,
    /// Mounted from another repository of the same registry.
    Mounted { from: String },
    /// Uploaded.
    Pushed,
}

/// The media type a manifest document declares in its `mediaType` field.
pub fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    if let Some(m) = p.media_type.filter(|m| !m.is_empty()) {
        return Some(m);
    }
    // OCI allows leaving mediaType out: tell by the shape.
    if p.manifests.is_some() {
        Some(media::OCI_INDEX.to_string())
    } else if p.layers.is_some() {
        Some(media::OCI_MANIFEST.to_string())
    } else {
        None
    }
}

impl Repository {
    fn scopes(&self) -> Vec<String> {
        vec![super::auth::repository_scope(&self.name, self.push)]
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.registry.base_url(), self.name)
    }

    fn err<T>(&self, reason: impl Into<String>) -> Result<T> {
        Err(Error::RegistryProtocol {
            op: self.op.clone(),
            reason: reason.into(),
        })
    }

    fn transport(&self, what: &str, reason: impl std::fmt::Display) -> Error {
        Error::RegistryTransport {
            op: self.op.clone(),
            reason: format!("{what}: {reason}"),
        }
    }

    /// The repository path (`library/busybox`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `GET /v2/<name>/manifests/<reference>` with every manifest type in
    /// `Accept`. Verifies the bytes against a digest reference (and against
    /// `Docker-Content-Digest` when the registry sends one).
    pub async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self
            .registry
            .send(&self.op, &self.scopes(), &|c| {
                c.get(&url).header("accept", media::MANIFEST_ACCEPT)
            })
            .await?;
        if !resp.status().is_success() {
            return Err(error_from_response(&self.op, resp).await);
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE)
            .await
            .map_err(|r| self.transport("manifest", r))?;
        let wanted: Option<Digest> = reference.parse().ok();
        let check = wanted.clone().or(header_digest);
        let digest = match &check {
            Some(d) => {
                let mut h = d.hasher();
                h.update(&bytes);
                let actual = h.finish();
                if &actual != d {
                    return Err(Error::Context {
                        context: format!("{}: manifest {reference}", self.op),
                        source: Box::new(Error::DigestMismatch {
                            expected: d.clone(),
                            actual,
                        }),
                    });
                }
                if wanted.is_some() {
                    actual
                } else {
                    Digest::sha256(&bytes)
                }
            }
            None => Digest::sha256(&bytes),
        };
        let declared = declared_media_type(&bytes);
        let media_type = match (header_type, declared) {
            (Some(h), _) if media::is_index(&h) || media::is_manifest(&h) => h,
            (_, Some(d)) => d,
            (Some(h), None) => h,
            (None, None) => return self.err(format!("manifest {reference}: unknown media type")),
        };
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `PUT /v2/<name>/manifests/<reference>` with the exact bytes.
    pub async fn put_manifest(&self, reference: &str, m: &RawManifest) -> Result<Digest> {
        let url = self.url(&format!("manifests/{reference}"));
        let body = Bytes::from(m.bytes.clone());
        let resp = self
            .registry
            .send(&self.op, &self.scopes(), &|c| {
                c.put(&url)
                    .header(CONTENT_TYPE, m.media_type.as_str())
                    .body(body.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(error_from_response(&self.op, resp).await);
        }
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
        {
            if d != m.digest {
                return self.err(format!(
                    "registry stored manifest as {d}, expected {}",
                    m.digest
                ));
            }
        }
        Ok(m.digest.clone())
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: the blob's size when the registry has it.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self
            .registry
            .send(&self.op, &self.scopes(), &|c| c.head(&url))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_from_response(&self.op, resp).await),
        }
    }

    /// Downloads blob `digest` of `size` bytes into `store`, verified by the
    /// store's writer before it becomes visible. A broken connection restarts
    /// the download (up to the retry limit); wrong content is an error.
    pub async fn fetch_blob(
        &self,
        store: &Store,
        digest: &Digest,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let max = self.registry.options().max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.fetch_blob_once(store, digest, size, progress).await {
                Err(Error::RegistryTransport { reason, .. }) if attempt < max => {
                    progress.event(ProgressEvent::Retry {
                        digest: digest.clone(),
                        attempt,
                        reason,
                    });
                    tokio::time::sleep(self.registry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(self.blob_error(digest, e)),
                Ok(()) => return Ok(()),
            }
        }
    }

    async fn fetch_blob_once(
        &self,
        store: &Store,
        digest: &Digest,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut resp = self
            .registry
            .send(&self.op, &self.scopes(), &|c| c.get(&url))
            .await?;
        if !resp.status().is_success() {
            return Err(error_from_response(&self.op, resp).await);
        }
        if let Some(len) = resp.content_length() {
            if len != size {
                return Err(Error::SizeMismatch {
                    digest: digest.to_string(),
                    expected: size,
                    actual: len,
                });
            }
        }
        let mut w = store.ingest(Some(digest), Some(size))?;
        let mut done = 0u64;
        let mut last_report = 0u64;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(Error::RegistryTransport {
                        op: self.op.clone(),
                        reason: format!(
                            "transfer broke off after {done} of {size} bytes: {}",
                            error_chain(&e)
                        ),
                    });
                }
            };
            w.write_all(&chunk).map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    Error::SizeMismatch {
                        digest: digest.to_string(),
                        expected: size,
                        actual: done + chunk.len() as u64,
                    }
                } else {
                    Error::io(w.temp_path().to_path_buf(), e)
                }
            })?;
            done += chunk.len() as u64;
            if done - last_report >= 256 * 1024 || done == size {
                last_report = done;
                progress.event(ProgressEvent::Bytes {
                    digest: digest.clone(),
                    done,
                    size,
                });
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Uploads blob `digest` (`size` bytes) from `store` unless the registry
    /// has it; tries a cross-repository mount from `mount_from` (a repository
    /// of the same registry) first.
    pub async fn upload_blob(
        &self,
        store: &Store,
        digest: &Digest,
        size: u64,
        mount_from: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<UploadOutcome> {
        let ctx = |e: Error| self.blob_error(digest, e);
        if self.blob_exists(digest).await.map_err(ctx)?.is_some() {
            return Ok(UploadOutcome::Exists);
        }
        let mut location = None;
        if let Some(from) = mount_from.filter(|f| *f != self.name) {
            match self.start_upload(Some((digest, from))).await.map_err(ctx)? {
                None => {
                    return Ok(UploadOutcome::Mounted {
                        from: from.to_string(),
                    });
                }
                Some(loc) => location = Some(loc),
            }
        }
        let location = match location {
            Some(l) => l,
            None => self
                .start_upload(None)
                .await
                .map_err(ctx)?
                .ok_or_else(|| ctx(self.protocol("upload start did not give a location")))?,
        };
        self.send_blob(store, digest, size, location, progress)
            .await
            .map_err(ctx)?;
        Ok(UploadOutcome::Pushed)
    }

    /// `e` as an error of blob `digest` in this operation: errors that
    /// already name the operation get the blob added to it.
    fn blob_error(&self, digest: &Digest, e: Error) -> Error {
        let op = format!("{}: blob {digest}", self.op);
        match e {
            Error::Registry {
                op: o,
                status,
                code,
                detail,
            } if o == self.op => Error::Registry {
                op,
                status,
                code,
                detail,
            },
            Error::RegistryTransport { op: o, reason } if o == self.op => {
                Error::RegistryTransport { op, reason }
            }
            Error::RegistryProtocol { op: o, reason } if o == self.op => {
                Error::RegistryProtocol { op, reason }
            }
            other => Error::Context {
                context: op,
                source: Box::new(other),
            },
        }
    }

    fn protocol(&self, reason: &str) -> Error {
        Error::RegistryProtocol {
            op: self.op.clone(),
            reason: reason.to_string(),
        }
    }

    /// `POST /v2/<name>/blobs/uploads/` (with `?mount=&from=` to mount):
    /// `None` when the mount succeeded, else the upload session's URL.
    async fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<Option<url::Url>> {
        let mut url = self.url("blobs/uploads/");
        let mut scopes = self.scopes();
        if let Some((d, from)) = mount {
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("mount", &d.to_string())
                .append_pair("from", from)
                .finish();
            url = format!("{url}?{q}");
            scopes.push(super::auth::repository_scope(from, false));
        }
        let resp = self
            .registry
            .send(&self.op, &scopes, &|c| {
                c.post(&url).header(CONTENT_LENGTH, 0)
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED | StatusCode::CREATED => Ok(Some(self.location(&resp)?)),
            _ => Err(error_from_response(&self.op, resp).await),
        }
    }

    fn location(&self, resp: &reqwest::Response) -> Result<url::Url> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.protocol("upload response without Location"))?;
        let base = url::Url::parse(self.registry.base_url())
            .map_err(|e| self.protocol(&format!("bad base URL: {e}")))?;
        base.join(loc)
            .map_err(|e| self.protocol(&format!("bad Location {loc:?}: {e}")))
    }

    /// Sends the content: one PUT when it fits in a chunk, else PATCHes of
    /// `chunk_size` and a closing PUT.
    async fn send_blob(
        &self,
        store: &Store,
        digest: &Digest,
        size: u64,
        mut location: url::Url,
        progress: &dyn Progress,
    ) -> Result<()> {
        let chunk_size = self.registry.options().chunk_size.max(1);
        let path = store.blob_path(digest);
        let mut file = store.open_blob(digest)?;
        let actual = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if actual != size {
            return Err(Error::SizeMismatch {
                digest: digest.to_string(),
                expected: size,
                actual,
            });
        }
        let mut sent = 0u64;
        let scopes = self.scopes();
        if size > chunk_size {
            while sent < size {
                let n = chunk_size.min(size - sent);
                let data = read_range(&mut file, sent, n).map_err(|e| Error::io(&path, e))?;
                let range = format!("{sent}-{}", sent + n - 1);
                let body = data.clone();
                let url = location.clone();
                let resp = self
                    .registry
                    .send(&self.op, &scopes, &|c| {
                        c.patch(url.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header("content-range", range.as_str())
                            .header(CONTENT_LENGTH, body.len())
                            .body(body.clone())
                    })
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(error_from_response(&self.op, resp).await);
                }
                location = self.location(&resp)?;
                sent += n;
                progress.event(ProgressEvent::Bytes {
                    digest: digest.clone(),
                    done: sent,
                    size,
                });
            }
            location
                .query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let url = location.clone();
            let resp = self
                .registry
                .send(&self.op, &scopes, &|c| {
                    c.put(url.clone()).header(CONTENT_LENGTH, 0)
                })
                .await?;
            if resp.status() != StatusCode::CREATED {
                return Err(error_from_response(&self.op, resp).await);
            }
            return Ok(());
        }
        let data = read_range(&mut file, 0, size).map_err(|e| Error::io(&path, e))?;
        location
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let url = location.clone();
        let resp = self
            .registry
            .send(&self.op, &scopes, &|c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, data.len())
                    .body(data.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(error_from_response(&self.op, resp).await);
        }
        progress.event(ProgressEvent::Bytes {
            digest: digest.clone(),
            done: size,
            size,
        });
        Ok(())
    }
}

fn read_range(file: &mut std::fs::File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    file.seek(SeekFrom::Start(offset))?;
    let cap = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(cap);
    file.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("blob shorter than expected ({} of {len} bytes)", buf.len()),
        ));
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn declared_types() {
        assert_eq!(
            declared_media_type(br#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#)
                .as_deref(),
            Some(media::DOCKER_LIST)
        );
        assert_eq!(
            declared_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(media::OCI_INDEX)
        );
        assert_eq!(
            declared_media_type(br#"{"schemaVersion":2,"config":{},"layers":[]}"#).as_deref(),
            Some(media::OCI_MANIFEST)
        );
        assert_eq!(declared_media_type(b"{}"), None);
        assert_eq!(declared_media_type(b"nope"), None);
    }
}
