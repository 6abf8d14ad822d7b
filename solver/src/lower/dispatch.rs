//! Dispatch of one instruction: config-only instructions fold into the stage's image
//! config and history (BuildKit's `dispatchEnv`, `dispatchLabel`, ...); WORKDIR adds a
//! mkdir file op; RUN and COPY/ADD are in `run` and `copy`.

use std::collections::BTreeMap;

use rbuild_parser::ast::{Healthcheck, Instruction, InstructionKind};
use rbuild_parser::shell::Lexer;

use super::util::{normalize_path, parse_port_specs, valid_signal};
use super::{Lowering, Source, StageState, pinned, prefix_command};
use crate::config::{Empty, HealthConfig, go_list, go_quote_list};
use crate::error::Error;
use crate::graph::{Vertex, VertexId};
use crate::op::{FileAction, FileSpec, Op};

impl Lowering<'_> {
    pub(super) fn dispatch(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
    ) -> Result<(), Error> {
        match &inst.kind {
            InstructionKind::Run(run) => self.dispatch_run(st, inst, run),
            InstructionKind::Copy(c) => self.dispatch_copy(st, inst, c, false),
            InstructionKind::Add(c) => self.dispatch_copy(st, inst, c, true),
            InstructionKind::Workdir { path } => self.dispatch_workdir(st, inst, path),
            InstructionKind::Env { vars } => {
                let mut pairs = Vec::with_capacity(vars.len());
                for kv in vars {
                    pairs.push((
                        self.expand(st, inst, &kv.key)?,
                        self.expand(st, inst, &kv.value)?,
                    ));
                }
                let mut msg = String::from("ENV");
                for (k, v) in &pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    st.env.set_env(k, v);
                    st.image.env_set(k, v);
                }
                self.commit(st, msg, false);
                Ok(())
            }
            InstructionKind::Label { labels } => {
                let mut msg = String::from("LABEL");
                for kv in labels {
                    let k = self.expand(st, inst, &kv.key)?;
                    let v = self.expand(st, inst, &kv.value)?;
                    msg.push_str(&format!(" {k}={v}"));
                    st.image.config.labels.insert(k, v);
                }
                self.commit(st, msg, false);
                Ok(())
            }
            InstructionKind::Maintainer { name } => {
                st.image.author = Some(name.clone());
                self.commit(st, format!("MAINTAINER {name}"), false);
                Ok(())
            }
            InstructionKind::Expose { ports } => {
                let mut words = Vec::new();
                for p in ports {
                    words.extend(st.env.expand_words(p).map_err(|e| {
                        Error::at(Some(&self.location(st, inst)), e.buildkit_message(p))
                    })?);
                }
                let specs = parse_port_specs(&words)
                    .map_err(|e| Error::at(Some(&self.location(st, inst)), e))?;
                for p in &specs {
                    st.image.config.exposed_ports.insert(p.clone(), Empty {});
                }
                self.commit(st, format!("EXPOSE {}", go_list(&specs)), false);
                Ok(())
            }
            InstructionKind::Volume { paths } => {
                let mut vols = Vec::with_capacity(paths.len());
                for p in paths {
                    let v = self.expand(st, inst, p)?;
                    if v.is_empty() {
                        return Err(Error::at(
                            Some(&self.location(st, inst)),
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    st.image.config.volumes.insert(v.clone(), Empty {});
                    vols.push(v);
                }
                self.commit(st, format!("VOLUME {}", go_list(&vols)), false);
                Ok(())
            }
            InstructionKind::User { user } => {
                let user = self.expand(st, inst, user)?;
                st.user = user.clone();
                st.image.config.user = user.clone();
                self.commit(st, format!("USER {user}"), false);
                Ok(())
            }
            InstructionKind::Stopsignal { signal } => {
                let signal = self.expand(st, inst, signal)?;
                if !valid_signal(&signal) {
                    return Err(Error::at(
                        Some(&self.location(st, inst)),
                        format!("Invalid signal: {signal}"),
                    )
                    .with_hint("use a signal name like SIGTERM or a number"));
                }
                st.image.config.stop_signal = signal.clone();
                self.commit(st, format!("STOPSIGNAL {signal}"), false);
                Ok(())
            }
            InstructionKind::Shell { shell } => {
                st.image.config.shell = shell.clone();
                self.commit(st, format!("SHELL {}", go_list(shell)), false);
                Ok(())
            }
            InstructionKind::Arg { args } => self.dispatch_arg(st, inst, args),
            InstructionKind::Cmd(cmd) => {
                let args = if cmd.shell_form {
                    st.image.with_shell(&cmd.args)
                } else {
                    cmd.args.clone()
                };
                let msg = format!("CMD {}", go_quote_list(&args));
                st.image.config.cmd = Some(args);
                st.image.config.args_escaped = true;
                st.cmd_set = true;
                self.commit(st, msg, false);
                Ok(())
            }
            InstructionKind::Entrypoint(cmd) => {
                let args = if cmd.shell_form {
                    st.image.with_shell(&cmd.args)
                } else {
                    cmd.args.clone()
                };
                let msg = format!("ENTRYPOINT {}", go_quote_list(&args));
                st.image.config.entrypoint = Some(args);
                if !st.cmd_set {
                    st.image.config.cmd = None;
                }
                self.commit(st, msg, false);
                Ok(())
            }
            InstructionKind::Healthcheck(h) => {
                let hc = match h {
                    Healthcheck::None => HealthConfig {
                        test: vec!["NONE".into()],
                        ..HealthConfig::default()
                    },
                    Healthcheck::Cmd {
                        test,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let nanos = |d: &Option<std::time::Duration>| {
                            d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                        };
                        let mut t = Vec::with_capacity(test.args.len() + 1);
                        if test.shell_form {
                            t.push("CMD-SHELL".to_string());
                            t.push(test.args.join(" "));
                        } else {
                            t.push("CMD".to_string());
                            t.extend(test.args.iter().cloned());
                        }
                        HealthConfig {
                            test: t,
                            interval: nanos(interval),
                            timeout: nanos(timeout),
                            start_period: nanos(start_period),
                            start_interval: nanos(start_interval),
                            retries: u64::from(retries.unwrap_or(0)),
                        }
                    }
                };
                let msg = format!("HEALTHCHECK {}", hc.go_format());
                st.image.config.healthcheck = Some(hc);
                self.commit(st, msg, false);
                Ok(())
            }
            InstructionKind::Onbuild { expression, .. } => {
                st.image.config.on_build.push(expression.clone());
                Ok(())
            }
        }
    }

    /// Expands one word in the stage's scope; errors point at the instruction.
    pub(super) fn expand(
        &self,
        st: &StageState,
        inst: &Instruction,
        word: &str,
    ) -> Result<String, Error> {
        st.env
            .expand(word)
            .map(|e| e.result)
            .map_err(|e| Error::at(Some(&self.location(st, inst)), e.buildkit_message(word)))
    }

    /// Appends a history entry.
    pub(super) fn commit(&self, st: &mut StageState, created_by: String, with_layer: bool) {
        let created = self.epoch.as_ref().map(|(_, s)| s.as_str());
        st.image.commit(created_by, with_layer, created);
    }

    /// BuildKit's progress text of an instruction: its line with variables expanded
    /// (leniently) and the keyword upper-cased.
    pub(super) fn step_text(
        &self,
        st: &StageState,
        inst: &Instruction,
        raw_quotes: bool,
    ) -> String {
        let mut lexer = Lexer::new(self.escape);
        if raw_quotes {
            lexer.raw_quotes = true;
            lexer.skip_unset_env = true;
        }
        let original = inst.original.trim();
        let text = lexer
            .process_word(original, st.env.vars())
            .unwrap_or_else(|_| original.to_string());
        match text.split_once(' ') {
            Some((kw, rest)) => format!("{} {rest}", kw.to_uppercase()),
            None => text.to_uppercase(),
        }
    }

    fn dispatch_arg(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        args: &[rbuild_parser::ast::ArgDecl],
    ) -> Result<(), Error> {
        let mut parts = Vec::with_capacity(args.len());
        for decl in args {
            let value = if let Some(v) = self.opts.build_args.get(&decl.name) {
                Some(v.clone())
            } else if let Some(d) = &decl.default {
                Some(self.expand(st, inst, d)?)
            } else {
                self.meta.get(&decl.name).cloned()
            };
            st.env.declare_arg(decl).map_err(|e| {
                Error::at(
                    Some(&self.location(st, inst)),
                    e.buildkit_message(decl.default.as_deref().unwrap_or("")),
                )
            })?;
            if !st.args.contains(&decl.name) {
                st.args.push(decl.name.clone());
            }
            parts.push(match value {
                Some(v) => format!("{}={v}", decl.name),
                None => decl.name.clone(),
            });
        }
        self.commit(st, format!("ARG {}", parts.join(" ")), false);
        Ok(())
    }

    fn dispatch_workdir(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        path: &str,
    ) -> Result<(), Error> {
        let path = self.expand(st, inst, path)?;
        let current = if st.image.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            st.image.config.working_dir.clone()
        };
        let wd = normalize_path(&current, &path, false);
        st.image.config.working_dir = wd.clone();
        st.workdir = wd.clone();
        let with_layer = wd != "/";
        if with_layer {
            let text = self.step_text(st, inst, false);
            let name = prefix_command(st, &text);
            let op = Op::File(FileSpec {
                base: st.root.map(|_| 0),
                actions: vec![FileAction::Mkdir {
                    path: wd.clone(),
                    mode: 0o755,
                    make_parents: true,
                    owner: Some(st.image.config.user.clone()).filter(|u| !u.is_empty()),
                    created: self.epoch.as_ref().map(|(s, _)| *s),
                }],
            });
            let v = self.vertex(st, op, name, inst);
            let inputs: Vec<VertexId> = st.root.into_iter().collect();
            st.root = Some(self.graph.add(v, &inputs));
        }
        self.commit(st, format!("WORKDIR {wd}"), with_layer);
        Ok(())
    }

    /// The root vertex of a `--from` source: a dispatched stage, or an image vertex.
    /// `Ok(None)` is an empty filesystem (`scratch`, or a stage with no layers).
    pub(super) fn source_root(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        from: &str,
        by_index: bool,
    ) -> Result<Option<VertexId>, Error> {
        let loc = self.location(st, inst);
        if from.contains('$') {
            return Err(Error::at(
                Some(&loc),
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
            ));
        }
        if from.eq_ignore_ascii_case("scratch") {
            return Ok(None);
        }
        if by_index
            && let Ok(n) = from.parse::<usize>()
            && n >= self.plans.len()
        {
            return Err(Error::at(Some(&loc), format!("invalid stage index {n}")));
        }
        match self.source_for(from, by_index) {
            Some(Source::Stage(j)) => match &self.done[j] {
                Some(s) if j != st.index => Ok(s.root),
                _ => Err(Error::at(
                    Some(&loc),
                    format!(
                        "cannot copy from stage {from:?}, it needs to be defined before current stage {:?}",
                        self.plans[st.index].name
                    ),
                )),
            },
            Some(Source::Image(reference)) => {
                let platform = self.opts.target_platform.clone();
                let resolved = self
                    .images
                    .get(&(reference.clone(), platform.clone()))
                    .cloned()
                    .ok_or_else(|| {
                        Error::at(Some(&loc), format!("image {reference} was not resolved"))
                    })?;
                let v = Vertex {
                    op: Op::Image {
                        reference: reference.clone(),
                        digest: resolved.manifest_digest.clone(),
                        platform: platform.clone(),
                    },
                    name: format!("FROM {}", pinned(&reference, &resolved.manifest_digest)),
                    stage: None,
                    location: Some(loc),
                    platform,
                    ignore_cache: false,
                    build_args: BTreeMap::new(),
                };
                Ok(Some(self.graph.add(v, &[])))
            }
            Some(Source::Local(key)) => Ok(Some(self.local_context(&key, &st.platform))),
            None => Err(Error::at(
                Some(&loc),
                format!("invalid --from value {from:?}: not a stage name or image reference"),
            )),
        }
    }
}
