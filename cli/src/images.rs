//! Local image commands, spelled and printed as Docker does: `images`,
//! `tag`, `rmi`, `inspect`, `history`, `save`, `load`, `system df|prune`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use miette::{IntoDiagnostic, miette};
use rbuild_exporter::archive::{self, ExportImage};
use rbuild_exporter::digest::Digest;
use rbuild_exporter::image::{Image, Platform};
use rbuild_exporter::images::{ImageRecord, Images, Removed, short_id};
use rbuild_exporter::reference::Reference;
use rbuild_exporter::{Store, gc};
use serde_json::{Value, json};

pub(crate) mod format;
use format::{ListFormat, ellipsis, human_size, json_pretty, render_list, table, time_ago};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    Images(ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag {
        #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
        source: String,
        #[arg(value_name = "TARGET_IMAGE[:TAG]")]
        target: String,
    },
    /// Remove one or more images
    Rmi {
        /// Remove the image even if it has several names
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Display detailed information on one or more images or containers
    Inspect {
        /// Format each object with a Go template (`{{.State.ExitCode}}`, `{{json .Config}}`,
        /// `{{index .Config.Labels "k"}}`)
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true, value_name = "IMAGE|CONTAINER")]
        images: Vec<String>,
    },
    /// Show the history of an image
    History {
        /// Don't truncate output
        #[arg(long)]
        no_trunc: bool,
        /// Only show image IDs
        #[arg(short, long)]
        quiet: bool,
        image: String,
    },
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save {
        /// Write to a file (a directory for --format oci-dir), instead of STDOUT
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Archive format
        #[arg(long, value_enum, default_value_t = SaveFormat::Docker)]
        format: SaveFormat,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Load an image from a tar archive or STDIN (docker-archive or OCI archive)
    Load {
        /// Read from tar archive file, instead of STDIN
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Suppress the load output
        #[arg(short, long)]
        quiet: bool,
        /// Platform to load from a multi-platform archive [default: this machine's]
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },
    /// Manage rbuild's store
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Output format: `table`, `table TEMPLATE`, `json` (one object per line) or a Go
    /// template (`{{.Repository}}:{{.Tag}}`)
    #[arg(long, default_value = "table")]
    format: String,
    /// Only images of this repository[:tag]
    #[arg(value_name = "REPOSITORY[:TAG]")]
    filter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// docker-archive (`docker save`), loadable by `docker load`
    Docker,
    /// OCI archive: a tar of an OCI image layout
    Oci,
    /// OCI image layout directory (needs -o DIR)
    OciDir,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show rbuild disk usage
    Df {
        /// Also list the build cache's records (size, last use)
        #[arg(short, long)]
        verbose: bool,
    },
    /// Remove unused data (dangling images, unreferenced blobs and snapshots)
    Prune {
        /// Remove all images, not just dangling ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Also remove anonymous volumes no container uses (as Docker 23+; named ones go
        /// only with `volume prune -a`)
        #[arg(long)]
        volumes: bool,
    },
}

pub(crate) fn open_store(global: &crate::GlobalOpts) -> miette::Result<Store> {
    let root = rbuild_exporter::root::resolve_root(global.root.as_deref()).map_err(err)?;
    Store::open(&root).map_err(err)
}

pub(crate) fn err(e: rbuild_exporter::Error) -> miette::Report {
    miette!("{e}")
}

pub fn run(cmd: ImageCommand, global: &crate::GlobalOpts) -> miette::Result<ExitCode> {
    let store = open_store(global)?;
    let images = Images::open(&store);
    match cmd {
        ImageCommand::Images(args) => list(&images, &args),
        ImageCommand::Tag { source, target } => {
            let dst = Reference::parse_docker(&target).map_err(err)?;
            if dst.digest().is_some() {
                return Err(miette!("refusing to create a tag with a digest reference"));
            }
            images.tag(&source, &dst).map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Rmi {
            force,
            images: refs,
        } => rmi(&store, &images, &refs, force),
        ImageCommand::Inspect {
            format,
            images: refs,
        } => inspect(&store, &images, &refs, format.as_deref()),
        ImageCommand::History {
            no_trunc,
            quiet,
            image,
        } => history(&store, &images, &image, no_trunc, quiet),
        ImageCommand::Save {
            output,
            format,
            images: refs,
        } => save(&store, &images, &refs, output, format),
        ImageCommand::Load {
            input,
            quiet,
            platform,
        } => load(&store, input, quiet, platform),
        ImageCommand::System(SystemCommand::Df { verbose }) => {
            let code = df(&store)?;
            if verbose {
                crate::builder::df_verbose(&store)?;
            }
            Ok(code)
        }
        ImageCommand::System(SystemCommand::Prune {
            all,
            force,
            volumes,
        }) => prune(&store, all, force, volumes),
    }
}

/// REPOSITORY and TAG columns of a record.
fn repo_tag(r: &ImageRecord) -> (String, String) {
    match r.reference() {
        Some(n) => (n.familiar_name(), n.tag().unwrap_or("<none>").to_string()),
        None => ("<none>".into(), "<none>".into()),
    }
}

fn digest_col(r: &ImageRecord) -> String {
    r.reference()
        .and_then(|n| n.digest().cloned())
        .or_else(|| r.repo_digest.clone())
        .map_or_else(|| "<none>".into(), |d| d.to_string())
}

fn list(images: &Images, args: &ImagesArgs) -> miette::Result<ExitCode> {
    let mut records = images.list().map_err(err)?;
    if let Some(f) = &args.filter {
        let want = Reference::parse_normalized(f).map_err(err)?;
        records.retain(|r| {
            r.reference().is_some_and(|n| {
                n.repository() == want.repository() && want.tag().is_none_or(|t| n.tag() == Some(t))
            })
        });
    }
    // Newest first, as Docker lists them.
    records.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
    let id = |r: &ImageRecord| {
        if args.no_trunc {
            r.config.to_string()
        } else {
            short_id(&r.config)
        }
    };
    let mut out = String::new();
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &records {
            if seen.insert(r.config.clone()) {
                out.push_str(&id(r));
                out.push('\n');
            }
        }
    } else {
        let rows: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                let (repo, tag) = repo_tag(r);
                json!({
                    "Containers": "N/A",
                    "CreatedAt": r.created.clone().unwrap_or_default(),
                    "CreatedSince": time_ago(r.created.as_deref()),
                    "Digest": digest_col(r),
                    "ID": id(r),
                    "Repository": repo,
                    "SharedSize": "N/A",
                    "Size": human_size(r.size),
                    "Tag": tag,
                    "UniqueSize": "N/A",
                    "VirtualSize": human_size(r.size),
                })
            })
            .collect();
        let mut columns = vec![("Repository", "REPOSITORY"), ("Tag", "TAG")];
        if args.digests {
            columns.push(("Digest", "DIGEST"));
        }
        columns.extend([
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
        ]);
        let headers = [
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Digest", "DIGEST"),
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("Size", "SIZE"),
            ("VirtualSize", "VIRTUAL SIZE"),
            ("SharedSize", "SHARED SIZE"),
            ("UniqueSize", "UNIQUE SIZE"),
            ("Containers", "CONTAINERS"),
        ];
        let format = ListFormat::parse(&args.format);
        out = render_list(&format, &columns, &headers, &rows).map_err(|e| miette!("{e}"))?;
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// The images (manifest digests) containers use, each with one such container's ID; Docker
/// neither prunes them nor removes them without `-f`.
fn images_in_use(store: &Store) -> BTreeMap<Digest, String> {
    let mut used = BTreeMap::new();
    let Ok(containers) = crate::container::state::Containers::open(store.root()) else {
        return used;
    };
    for id in containers.ids() {
        if let Ok(cfg) = containers.config(&id)
            && let Ok(d) = cfg.image_digest.parse::<Digest>()
        {
            used.entry(d).or_insert(id);
        }
    }
    used
}

fn rmi(store: &Store, images: &Images, refs: &[String], force: bool) -> miette::Result<ExitCode> {
    let mut failed = false;
    let in_use = images_in_use(store);
    for r in refs {
        // As Docker: the last name of an image a container uses goes only with -f.
        if !force
            && let Ok(rec) = images.resolve(r)
            && let Some(ctr) = in_use.get(&rec.config).or_else(|| in_use.get(&rec.target))
            && images
                .list()
                .map(|all| all.iter().filter(|o| o.config == rec.config).count() <= 1)
                .unwrap_or(true)
        {
            eprintln!(
                "Error: conflict: unable to remove repository reference {r:?} (must force) - container {} is using its referenced image {}",
                &ctr[..ctr.len().min(12)],
                short_id(&rec.config)
            );
            failed = true;
            continue;
        }
        match images.remove(r, force) {
            Ok(events) => {
                for e in events {
                    match e {
                        Removed::Untagged(n) => {
                            let shown = Reference::parse_normalized(&n)
                                .map_or(n.clone(), |r| r.familiar_string());
                            println!("Untagged: {shown}");
                        }
                        Removed::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    // Free the content now if no pull/load/build is running; prune does it otherwise.
    gc::try_collect(store).map_err(err)?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn inspect_json(store: &Store, images: &Images, rec: &ImageRecord) -> miette::Result<Value> {
    let img = Image::load(store, &rec.target).map_err(err)?;
    let config: Value = serde_json::from_slice(&img.config_bytes).into_diagnostic()?;
    let all = images.list().map_err(err)?;
    let mine: Vec<&ImageRecord> = all.iter().filter(|r| r.config == rec.config).collect();
    let mut tags = Vec::new();
    let mut digests = Vec::new();
    for r in &mine {
        let Some(n) = r.reference() else { continue };
        if n.tag().is_some() {
            tags.push(n.familiar_string());
        }
        let d = n.digest().cloned().or_else(|| r.repo_digest.clone());
        if let Some(d) = d {
            let rd = n.repository().with_digest(d).familiar_string();
            if !digests.contains(&rd) {
                digests.push(rd);
            }
        }
    }
    let updated = mine
        .iter()
        .map(|r| r.updated.clone())
        .max()
        .unwrap_or_default();
    let get = |k: &str| {
        config
            .get(k)
            .cloned()
            .unwrap_or(Value::String(String::new()))
    };
    let mut obj = json!({
        "Id": rec.config.to_string(),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Parent": "",
        "Comment": get("comment"),
        "Created": get("created"),
        "DockerVersion": get("docker_version"),
        "Author": get("author"),
        "Config": config.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": get("architecture"),
        "Os": get("os"),
        "Size": img.content_size(),
        "RootFS": {
            "Type": "layers",
            "Layers": img.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        },
        "Metadata": { "LastTagTime": updated },
        "Descriptor": {
            "mediaType": img.manifest_media_type,
            "digest": img.manifest_digest.to_string(),
            "size": img.manifest_bytes.len(),
        },
    });
    if let (Some(v), Some(o)) = (config.get("variant"), obj.as_object_mut()) {
        o.insert("Variant".into(), v.clone());
    }
    Ok(obj)
}

fn inspect(
    store: &Store,
    images: &Images,
    refs: &[String],
    format: Option<&str>,
) -> miette::Result<ExitCode> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in refs {
        match images.resolve(r) {
            Ok(rec) => out.push(inspect_json(store, images, &rec)?),
            // Like `docker inspect`: a name that is no image may be a container.
            Err(e) => match crate::container::inspect_json(store.root(), r) {
                Some(v) => out.push(v),
                None => errors.push(e.to_string()),
            },
        }
    }
    match format {
        // `docker inspect -f json` is the plain JSON too.
        Some(tpl) if tpl != "json" => {
            for v in &out {
                println!(
                    "{}",
                    format::render_template(tpl, v).map_err(|e| miette!("{e}"))?
                );
            }
        }
        _ => println!("{}", json_pretty(&Value::Array(out))),
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(miette!("{}", errors.join("\n")))
    }
}

fn history(
    store: &Store,
    images: &Images,
    r: &str,
    no_trunc: bool,
    quiet: bool,
) -> miette::Result<ExitCode> {
    let rec = images.resolve(r).map_err(err)?;
    let img = Image::load(store, &rec.target).map_err(err)?;
    let hist = img.config.history().clone().unwrap_or_default();
    let mut layer_sizes = img.layers.iter().map(|l| l.size);
    let mut rows = Vec::new();
    for h in &hist {
        let empty = h.empty_layer().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layer_sizes.next().unwrap_or(0)
        };
        let by = h.created_by().clone().unwrap_or_default();
        rows.push(vec![
            "<missing>".to_string(),
            time_ago(h.created().as_deref()),
            if no_trunc { by } else { ellipsis(&by, 45) },
            human_size(size),
            h.comment().clone().unwrap_or_default(),
        ]);
    }
    rows.reverse();
    let id = if no_trunc {
        rec.config.to_string()
    } else {
        short_id(&rec.config)
    };
    if let Some(top) = rows.first_mut() {
        top[0] = id.clone();
    }
    if quiet {
        for row in &rows {
            println!("{}", row[0]);
        }
    } else {
        print!(
            "{}",
            table(
                &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                &rows
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The images to export for the given references, each with the names asked for.
fn export_list(images: &Images, refs: &[String]) -> miette::Result<Vec<ExportImage>> {
    let mut by_manifest: BTreeMap<String, ExportImage> = BTreeMap::new();
    let mut order = Vec::new();
    for r in refs {
        let hits = images.lookup(r).map_err(err)?;
        let Some(first) = hits.first() else {
            return Err(miette!("No such image: {r}"));
        };
        // A name exports that name; an ID exports the image with all its names.
        let as_name = Reference::parse_docker(r).ok().map(|n| n.to_string());
        let by_name: Vec<ImageRecord> = hits
            .iter()
            .filter(|h| h.name.is_some() && h.name == as_name)
            .cloned()
            .collect();
        let named: Vec<ImageRecord> = if by_name.is_empty() {
            let id = first.config.clone();
            images
                .list()
                .map_err(err)?
                .into_iter()
                .filter(|h| h.config == id)
                .collect()
        } else {
            by_name
        };
        for h in named {
            let key = h.target.to_string();
            let entry = by_manifest.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                ExportImage {
                    manifest: h.target.clone(),
                    names: Vec::new(),
                }
            });
            if let Some(n) = h.reference() {
                if !entry.names.contains(&n) {
                    entry.names.push(n);
                }
            }
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|k| by_manifest.remove(&k))
        .collect())
}

fn save(
    store: &Store,
    images: &Images,
    refs: &[String],
    output: Option<PathBuf>,
    format: SaveFormat,
) -> miette::Result<ExitCode> {
    let list = export_list(images, refs)?;
    if format == SaveFormat::OciDir {
        let dir = output.ok_or_else(|| miette!("--format oci-dir needs -o DIR"))?;
        archive::save_oci_dir(store, &list, &dir).map_err(err)?;
        return Ok(ExitCode::SUCCESS);
    }
    let write = |w: &mut dyn Write| -> miette::Result<()> {
        match format {
            SaveFormat::Docker => archive::save_docker_archive(store, &list, w).map_err(err),
            _ => archive::save_oci_archive(store, &list, w).map_err(err),
        }
    };
    match output {
        Some(path) => {
            archive::write_to_path(&path, |w| match format {
                SaveFormat::Docker => archive::save_docker_archive(store, &list, w),
                _ => archive::save_oci_archive(store, &list, w),
            })
            .map_err(err)?;
        }
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                return Err(miette!(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                ));
            }
            let mut w = BufWriter::new(stdout.lock());
            write(&mut w)?;
            w.flush().into_diagnostic()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load(
    store: &Store,
    input: Option<PathBuf>,
    quiet: bool,
    platform: Option<String>,
) -> miette::Result<ExitCode> {
    let platform: Platform = match platform {
        Some(p) => p.parse().map_err(err)?,
        None => Platform::host(),
    };
    let loaded = match input {
        Some(path) => {
            if path.is_dir() {
                archive::load_oci_dir(store, &path, &platform).map_err(err)?
            } else {
                let f = File::open(&path).map_err(|e| miette!("{}: {e}", path.display()))?;
                archive::load_archive(store, BufReader::new(f), &platform).map_err(err)?
            }
        }
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                return Err(miette!("requested load from stdin, but stdin is empty"));
            }
            archive::load_archive(store, stdin.lock(), &platform).map_err(err)?
        }
    };
    if !quiet {
        for l in &loaded {
            if l.names.is_empty() {
                println!("Loaded image ID: {}", l.id);
            }
            for n in &l.names {
                println!("Loaded image: {}", n.familiar_string());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn df(store: &Store) -> miette::Result<ExitCode> {
    let du = gc::disk_usage(store).map_err(err)?;
    let pct = |part: u64, total: u64| {
        let p = (part * 100).checked_div(total).unwrap_or(0);
        format!("{} ({p}%)", human_size(part))
    };
    let (containers, volumes) = container_and_volume_usage(store)?;
    let images = Usage {
        total: du.images,
        active: du.images_named,
        size: du.blobs_size,
        reclaimable: du.blobs_reclaimable,
    };
    let snapshots = Usage {
        total: du.snapshots,
        active: du.snapshots,
        size: du.snapshots_size,
        reclaimable: du.snapshots_reclaimable,
    };
    let rows: Vec<Vec<String>> = [
        ("Images", images),
        ("Containers", containers),
        ("Local Volumes", volumes),
        ("Snapshots", snapshots),
    ]
    .into_iter()
    .map(|(kind, u)| {
        vec![
            kind.to_string(),
            u.total.to_string(),
            u.active.to_string(),
            human_size(u.size),
            pct(u.reclaimable, u.size),
        ]
    })
    .collect();
    print!(
        "{}",
        table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

/// Counts and sizes of one `system df` row.
#[derive(Default)]
struct Usage {
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
}

/// The Containers row (a container's size is its writable layer; a stopped one's is
/// reclaimable) and the Local Volumes row (a volume is active while a container uses it).
fn container_and_volume_usage(store: &Store) -> miette::Result<(Usage, Usage)> {
    use crate::container::{
        state::{Containers, Status},
        volumes::Volumes,
    };
    let containers = Containers::open(store.root()).map_err(|e| miette!("{e}"))?;
    let sn = crate::container::runtime::snapshotter(store.root()).map_err(|e| miette!("{e}"))?;
    let mut c = Usage::default();
    for id in containers.ids() {
        let Ok(cfg) = containers.config(&id) else {
            continue;
        };
        let size = sn.usage(&cfg.snapshot).map_or(0, |u| u.size_bytes);
        c.total += 1;
        c.size += size;
        if containers.state(&id).status == Status::Running {
            c.active += 1;
        } else {
            c.reclaimable += size;
        }
    }
    let vols = Volumes::open(store.root()).map_err(|e| miette!("{e}"))?;
    let users = vols.users(&containers);
    let mut v = Usage::default();
    for m in vols.list() {
        let size = vols.size(&m.name);
        v.total += 1;
        v.size += size;
        if users.contains_key(&m.name) {
            v.active += 1;
        } else {
            v.reclaimable += size;
        }
    }
    Ok((c, v))
}

/// Removes the containers that are not running (`docker system prune` does); returns their IDs.
fn prune_stopped_containers(store: &Store) -> miette::Result<Vec<String>> {
    use crate::container::state::{Containers, Status};
    let containers = Containers::open(store.root()).map_err(|e| miette!("{e}"))?;
    let mut removed = Vec::new();
    for id in containers.ids() {
        if containers.state(&id).status == Status::Running {
            continue;
        }
        crate::container::runtime::remove_container(store.root(), &id)
            .map_err(|e| miette!("removing container {id}: {e}"))?;
        removed.push(id);
    }
    Ok(removed)
}

fn prune(store: &Store, all: bool, force: bool, volumes: bool) -> miette::Result<ExitCode> {
    if !force {
        println!("WARNING! This will remove:");
        println!("  - all stopped containers");
        if volumes {
            println!("  - all anonymous volumes not used by at least one container");
        }
        if all {
            println!("  - all images");
        } else {
            println!("  - all dangling images");
        }
        println!("  - all unreferenced content and unpacked snapshots\n");
        print!("Are you sure you want to continue? [y/N] ");
        io::stdout().flush().into_diagnostic()?;
        let mut answer = String::new();
        io::stdin()
            .lock()
            .read_line(&mut answer)
            .into_diagnostic()?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let removed = prune_stopped_containers(store)?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    let mut volumes_freed = 0;
    if volumes {
        use crate::container::{state::Containers, volumes::Volumes};
        let containers = Containers::open(store.root()).map_err(|e| miette!("{e}"))?;
        let vols = Volumes::open(store.root()).map_err(|e| miette!("{e}"))?;
        let removed = vols
            .prune(&containers, false, &[])
            .map_err(|e| miette!("{e}"))?;
        crate::container::volumes::print_pruned(&removed);
        volumes_freed = removed.iter().map(|(_, n)| n).sum();
    }
    let in_use = images_in_use(store).into_keys().collect();
    let report = gc::prune(store, all, &in_use).map_err(err)?;
    if !report.images_removed.is_empty() {
        println!("Deleted Images:");
        let mut deleted = std::collections::BTreeSet::new();
        for r in &report.images_removed {
            if let Some(n) = r.reference() {
                println!("untagged: {}", n.familiar_string());
            }
            deleted.insert(r.config.clone());
        }
        for d in deleted {
            println!("deleted: {d}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(report.bytes_freed + volumes_freed)
    );
    Ok(ExitCode::SUCCESS)
}
