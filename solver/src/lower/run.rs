//! RUN (BuildKit's `dispatchRun` and `dispatchRunMounts`): an exec op on the stage's
//! root with its mounts typed from `rbuild_parser::mount::Mount` after expansion.

use std::collections::BTreeMap;

use rbuild_parser::args::proxy_env;
use rbuild_parser::ast::{Instruction, Run};
use rbuild_parser::heredoc::parse_heredoc;
use rbuild_parser::mount::{CacheSharing as ParsedSharing, Mount, MountType};

use super::copy::MAIN_CONTEXT;
use super::util::{clean, normalize_path, summarize_heredoc};
use super::{Lowering, StageState, prefix_command};
use crate::error::Error;
use crate::graph::{Vertex, VertexId};
use crate::op::{
    CacheSharing, ContextSelection, ExecMount, ExecSpec, FileAction, FileSpec, MountKind, Network,
    Op, Security,
};

impl Lowering<'_> {
    pub(super) fn dispatch_run(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        run: &Run,
    ) -> Result<(), Error> {
        let loc = self.location(st, inst);
        let err = |msg: String| Error::at(Some(&loc), msg);
        let cmd = &run.command;
        let mut inputs: Vec<VertexId> = st.root.into_iter().collect();
        let mut mounts = Vec::new();
        let mut args = cmd.args.clone();
        let mut suffix = String::new();

        if !cmd.heredocs.is_empty() && cmd.shell_form {
            let single = args.len() == 1
                && parse_heredoc(args[0].trim())
                    .ok()
                    .flatten()
                    .is_some_and(|h| h.name == cmd.heredocs[0].name);
            if single {
                let doc = &cmd.heredocs[0];
                let data = doc.body();
                suffix = format!(" ({})", summarize_heredoc(&doc.content));
                if st.image.os != "windows" && data.starts_with("#!") {
                    // A script with a shebang: write it to a file and run that.
                    let file = Vertex {
                        op: Op::File(FileSpec {
                            base: None,
                            actions: vec![FileAction::Mkfile {
                                path: format!("/{}", doc.name),
                                mode: 0o755,
                                data,
                                owner: None,
                                created: None,
                            }],
                        }),
                        name: "[internal] preparing inline document".into(),
                        stage: None,
                        location: Some(loc.clone()),
                        platform: st.platform.clone(),
                        ignore_cache: false,
                        build_args: BTreeMap::new(),
                    };
                    inputs.push(self.graph.add(file, &[]));
                    mounts.push(ExecMount {
                        target: "/dev/pipes/".into(),
                        kind: MountKind::Bind {
                            input: inputs.len() - 1,
                            source: "/".into(),
                            read_only: true,
                        },
                    });
                    args = vec![format!("/dev/pipes/{}", doc.name)];
                } else {
                    args = vec![data];
                }
            } else {
                let mut b = args.join(" ");
                for doc in &cmd.heredocs {
                    b.push('\n');
                    b.push_str(&doc.content);
                    b.push_str(&doc.name);
                }
                args = vec![b];
            }
        }
        if cmd.shell_form {
            args = st.image.with_shell(&args);
        }

        for value in &run.mounts {
            let env = &st.env;
            let expander = |w: &str| -> Result<String, String> {
                env.expand(w)
                    .map(|e| e.result)
                    .map_err(|e| e.buildkit_message(w))
            };
            let m = Mount::parse(value, Some(&expander))
                .map_err(|e| err(format!("invalid --mount: {e}")))?;
            let ssh_index = mounts
                .iter()
                .filter(|x: &&ExecMount| matches!(x.kind, MountKind::Ssh { .. }))
                .count();
            mounts.push(self.lower_mount(st, inst, &m, ssh_index, &mut inputs)?);
        }

        let env: BTreeMap<String, String> = st.env.vars().clone();
        let spec = ExecSpec {
            args: args.clone(),
            env,
            cwd: st.workdir.clone(),
            user: st.user.clone(),
            hostname: self.opts.hostname.clone(),
            extra_hosts: self.opts.extra_hosts.clone(),
            network: match run.network {
                Some(rbuild_parser::mount::NetworkMode::None) => Network::None,
                Some(rbuild_parser::mount::NetworkMode::Host) => Network::Host,
                Some(rbuild_parser::mount::NetworkMode::Default) => Network::Default,
                None => self.opts.network,
            },
            security: match run.security {
                Some(rbuild_parser::mount::SecurityMode::Insecure) => Security::Insecure,
                _ => Security::Sandbox,
            },
            root: st.root.map(|_| 0),
            mounts,
            proxy_env: proxy_env(&self.opts.build_args),
        };
        let text = format!("{}{suffix}", self.step_text(st, inst, true));
        let name = prefix_command(st, &text);
        let v = self.vertex(st, Op::Exec(spec), name, inst);
        st.root = Some(self.graph.add(v, &inputs));
        let history = format!("RUN {} # buildkit", run_command_string(&args, st));
        self.commit(st, history, true);
        Ok(())
    }

    fn lower_mount(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        m: &Mount,
        index: usize,
        inputs: &mut Vec<VertexId>,
    ) -> Result<ExecMount, Error> {
        let loc = self.location(st, inst);
        let target = match (&m.target, m.kind) {
            (Some(t), _) if !t.is_empty() => {
                if t.starts_with('/') {
                    clean(t)
                } else {
                    normalize_path(&st.workdir, t, false)
                }
            }
            (_, MountType::Secret) => {
                format!("/run/secrets/{}", m.id.clone().unwrap_or_default())
            }
            (_, MountType::Ssh) => format!("/run/buildkit/ssh_agent.{index}"),
            // BuildKit joins an absent target onto the working directory.
            _ => st.workdir.clone(),
        };
        if target == "/" {
            return Err(Error::at(Some(&loc), "invalid mount target \"/\""));
        }
        let source = normalize_path("/", m.source.as_deref().unwrap_or(""), false);
        let mut input_of =
            |this: &mut Self, from: &Option<String>| -> Result<Option<usize>, Error> {
                let root = match from {
                    Some(f) => this.source_root(st, inst, f, false)?,
                    None => {
                        let include = if source == "/" {
                            Vec::new()
                        } else {
                            vec![source.trim_start_matches('/').to_string()]
                        };
                        let v = Vertex {
                            op: Op::Context(ContextSelection {
                                name: MAIN_CONTEXT.into(),
                                include,
                                exclude: Vec::new(),
                            }),
                            name: "[internal] load build context".into(),
                            stage: None,
                            location: None,
                            platform: st.platform.clone(),
                            ignore_cache: false,
                            build_args: BTreeMap::new(),
                        };
                        Some(this.graph.add(v, &[]))
                    }
                };
                Ok(root.map(|r| {
                    inputs.push(r);
                    inputs.len() - 1
                }))
            };
        let kind =
            match m.kind {
                MountType::Bind => {
                    let Some(input) = input_of(self, &m.from)? else {
                        return Err(Error::at(
                            Some(&loc),
                            format!(
                                "cannot bind-mount {:?}: it is an empty filesystem (scratch)",
                                m.from.clone().unwrap_or_default()
                            ),
                        ));
                    };
                    MountKind::Bind {
                        input,
                        source,
                        read_only: m.read_only,
                    }
                }
                MountType::Cache => {
                    let input = match &m.from {
                        Some(_) => input_of(self, &m.from)?,
                        None => None,
                    };
                    MountKind::Cache {
                        id: m
                            .id
                            .clone()
                            .filter(|i| !i.is_empty())
                            .unwrap_or_else(|| target.clone()),
                        sharing: match m.sharing {
                            ParsedSharing::Shared => CacheSharing::Shared,
                            ParsedSharing::Private => CacheSharing::Private,
                            ParsedSharing::Locked => CacheSharing::Locked,
                        },
                        input,
                        source,
                        read_only: m.read_only,
                        uid: m.uid,
                        gid: m.gid,
                        mode: m.mode,
                    }
                }
                MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
                MountType::Secret => MountKind::Secret {
                    id: m.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| {
                        target.rsplit('/').next().unwrap_or_default().to_string()
                    }),
                    required: m.required,
                    env: m.env.clone(),
                    file: m.target.is_some() || m.env.is_none(),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                    mode: m.mode.unwrap_or(0o400),
                },
                MountType::Ssh => MountKind::Ssh {
                    id: m
                        .id
                        .clone()
                        .filter(|i| !i.is_empty())
                        .unwrap_or_else(|| "default".into()),
                    required: m.required,
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                    mode: m.mode.unwrap_or(0o600),
                },
            };
        Ok(ExecMount { target, kind })
    }
}

/// BuildKit's `runCommandString`: `|N A=1 B=2 ` before the argv when ARGs are in scope.
fn run_command_string(args: &[String], st: &StageState) -> String {
    let mut parts: Vec<String> = st
        .args
        .iter()
        .map(|a| format!("{a}={}", st.env.vars().get(a).cloned().unwrap_or_default()))
        .collect();
    if !parts.is_empty() {
        parts.insert(0, format!("|{}", parts.len()));
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}
