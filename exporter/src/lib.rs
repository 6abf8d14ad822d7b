//! rbuild's image side: the content-addressed blob store and image index under
//! the rbuild root, layer unpacking into snapshots, the registry client (pull and
//! push), and the image formats (docker-archive, OCI layout, OCI archive).

pub mod digest;

pub use digest::Digest;
pub mod error;

pub use error::{Error, Result};

// Local image side: store, index, references, unpacking, formats.
pub mod archive;
pub mod compose;
pub mod gc;
pub mod image;
pub mod images;
pub mod layer;
pub mod lock;
pub mod media;
pub mod reference;
pub mod root;
pub mod snapshots;
pub mod store;
pub mod unpack;
pub mod xattrs;

pub use store::{BlobWriter, Lease, Store};

// Registry side: client, pull, push.
pub mod pull;
pub mod push;
pub mod registry;
