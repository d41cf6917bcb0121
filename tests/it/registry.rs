//! The op registry, checked as a whole: adding an op to the list puts it under
//! every check here without editing this file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{DefaultPhysicalProtoConverter, PhysicalExtensionCodec};
use dsproc_exec::{DsprocLogicalCodec, DsprocPhysicalCodec};
use dsproc_job::ops::{op_names, OPS};
use dsproc_job::LoadedSpec;
use dsproc_runtime::{Engine, EngineOptions};

use crate::common::*;

/// The example jobs in jobs/, with the ops each uses.
fn example_jobs() -> Vec<(PathBuf, Vec<String>)> {
    let mut jobs = Vec::new();
    for e in std::fs::read_dir(repo().join("jobs")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let spec: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            let ops = spec
                .get("steps")
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .filter_map(|s| s.get("op")?.as_str().map(String::from))
                .collect();
            jobs.push((path, ops));
        }
    }
    jobs.sort();
    jobs
}

/// Loads an example job as `dsproc` run from the repository root would, writing to `out`.
fn load_example(job: &Path, out: &Path) -> LoadedSpec {
    let mut args = example_job_args(job).expect("prerequisites of the example jobs");
    let mut set: Vec<String> = args.drain(..).filter(|a| a != "--set").collect();
    set.push(format!("output.uri={}", out.display()));
    let mut loaded = LoadedSpec::load(job, &set).unwrap();
    loaded.base = repo();
    loaded
}

#[test]
fn names_are_unique_valid_and_versioned() {
    let names = op_names();
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len(), "duplicate op names: {names:?}");
    let versions = dsproc_job::manifest::op_versions();
    for o in OPS {
        assert!(
            o.name.starts_with(|c: char| c.is_ascii_lowercase())
                && o.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{:?} is not a valid spec name",
            o.name
        );
        assert!(o.version >= 1, "{}: version 0", o.name);
        assert!(versions.contains(&(o.name, o.version)), "{} is missing from the manifest's op versions", o.name);
        let schema = (o.schema)().to_value();
        assert_eq!(schema["additionalProperties"], false, "{}: options must deny unknown keys", o.name);
    }
}

#[test]
fn every_op_has_an_example_job_whose_steps_name_it() {
    let jobs = example_jobs();
    for name in op_names() {
        let users: Vec<_> = jobs.iter().filter(|(_, ops)| ops.iter().any(|o| o == name)).collect();
        assert!(!users.is_empty(), "op {name} has no example in jobs/");
        // the parsed step serializes back under its registry name
        let (path, ops) = users[0];
        let out = tempfile::tempdir().unwrap();
        let loaded = load_example(path, out.path());
        let i = ops.iter().position(|o| o == name).unwrap();
        let step = serde_json::to_value(&loaded.spec.steps[i]).unwrap();
        assert_eq!(step["op"], name, "{}", path.display());
        assert_eq!(loaded.spec.steps[i].name(), name);
    }
}

fn dsproc_in_repo(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dsproc")).current_dir(repo()).args(args).output().unwrap()
}

/// Every example validates and explains through the binary, and runs locally and
/// in Ballista standalone mode with byte-identical shards and balanced counts.
#[test]
fn every_example_job_validates_explains_and_runs_identically_local_and_ballista() {
    let rt = big_stack_runtime();
    for (job, _) in example_jobs() {
        let mut args: Vec<String> = example_job_args(&job).expect("prerequisites of the example jobs");
        let tmp = tempfile::tempdir().unwrap();
        args.push("--set".into());
        args.push(format!("output.uri={}", tmp.path().join("cli").display()));
        for cmd in ["validate", "explain"] {
            let mut a = vec![cmd, job.to_str().unwrap()];
            a.extend(args.iter().map(String::as_str));
            let o = dsproc_in_repo(&a);
            assert!(o.status.success(), "{cmd} {}: {}", job.display(), String::from_utf8_lossy(&o.stderr));
        }
        let (job2, dir) = (job.clone(), tmp.path().to_path_buf());
        rt.block_on(async move {
            let local = run(&load_example(&job2, &dir.join("local")), Engine::Local, 3).await.unwrap();
            let ballista = run(&load_example(&job2, &dir.join("ballista")), Engine::Standalone, 3).await.unwrap();
            assert!(local.rows.out > 0, "{}: no rows out", job2.display());
            assert!(local.rows.balanced(), "{}: {:?}", job2.display(), local.rows);
            assert_eq!(local.rows, ballista.rows, "{}", job2.display());
            assert_eq!(shard_digests(&local), shard_digests(&ballista), "{}: shards differ", job2.display());
        });
    }
}

/// Every dsproc node of every example job's logical and physical plan
/// round-trips through our codecs: encoded, decoded, equal.
#[test]
fn every_plan_node_round_trips_through_both_codecs() {
    let rt = big_stack_runtime();
    rt.block_on(async {
        let ctx = dsproc_runtime::make_context(&Engine::Local, &EngineOptions::default()).await.unwrap();
        let task = ctx.task_ctx();
        let (lc, pc) = (DsprocLogicalCodec::default(), DsprocPhysicalCodec::default());
        let mut seen = BTreeSet::new();
        for (job, _) in example_jobs() {
            let out = tempfile::tempdir().unwrap();
            let loaded = load_example(&job, out.path());
            let lowered = dsproc_job::lower(&ctx, &loaded, "codec-test").await.unwrap();
            let mut logical = Vec::new();
            collect_extensions(&lowered.plan, &mut logical);
            for ext in &logical {
                let mut buf = Vec::new();
                lc.try_encode(ext, &mut buf).unwrap();
                let inputs: Vec<LogicalPlan> = ext.node.inputs().into_iter().cloned().collect();
                let back = lc.try_decode(&buf, &inputs, &task).unwrap();
                assert!(back.node.dyn_eq(ext.node.as_ref()), "{}: {} changed", job.display(), ext.node.name());
                seen.insert(format!("logical {}", ext.node.name()));
            }
            let physical = ctx.state().create_physical_plan(&lowered.plan).await.unwrap();
            let mut execs = Vec::new();
            collect_execs(&physical, &mut execs);
            for exec in execs {
                let mut buf = Vec::new();
                let conv = DefaultPhysicalProtoConverter {};
                pc.try_encode(exec.clone(), &mut buf, &conv).unwrap();
                let back = pc
                    .try_decode(&buf, exec.children().into_iter().cloned().collect::<Vec<_>>().as_slice(), &task, &conv)
                    .unwrap();
                let show = |p: &dyn ExecutionPlan| datafusion::physical_plan::displayable(p).one_line().to_string();
                assert_eq!(show(back.as_ref()), show(exec.as_ref()), "{}", job.display());
                assert_eq!(back.schema(), exec.schema(), "{}", job.display());
                seen.insert(format!("physical {}", exec.name()));
            }
        }
        for want in ["logical ReadInput", "logical StepStats", "logical WriteShards", "logical Shared"] {
            assert!(seen.iter().any(|s| s.starts_with(want)), "{want} never seen: {seen:?}");
        }
        for want in ["physical ReadInputExec", "physical StepStatsExec", "physical WriteShardsExec"] {
            assert!(seen.contains(want), "{want} never seen: {seen:?}");
        }
    });
}

fn collect_extensions(plan: &LogicalPlan, out: &mut Vec<datafusion::logical_expr::Extension>) {
    if let LogicalPlan::Extension(e) = plan {
        out.push(e.clone());
    }
    for i in plan.inputs() {
        collect_extensions(i, out);
    }
}

fn collect_execs(plan: &std::sync::Arc<dyn ExecutionPlan>, out: &mut Vec<std::sync::Arc<dyn ExecutionPlan>>) {
    let name = plan.name();
    if matches!(name, "ReadInputExec" | "StepStatsExec" | "WriteShardsExec") {
        out.push(plan.clone());
    }
    // A shared subplan is the inside of a leaf (it runs in one process only).
    if let Some(s) = plan.downcast_ref::<dsproc_exec::SharedExec>() {
        if s.is_first() {
            collect_execs(s.shared().input(), out);
        }
    }
    for c in plan.children() {
        collect_execs(c, out);
    }
}

/// The README's spec reference is the generated one (`dsproc ops --markdown`).
#[test]
fn readme_spec_reference_is_the_generated_one() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let (begin, end) = ("<!-- spec-reference:begin -->", "<!-- spec-reference:end -->");
    let i = readme.find(begin).expect("README has the spec-reference:begin marker") + begin.len();
    let j = readme.find(end).expect("README has the spec-reference:end marker");
    assert_eq!(
        readme[i..j].trim(),
        dsproc_job::reference::markdown().trim(),
        "README.md's spec reference is stale: run `bash scripts/update-reference.sh`"
    );
    // and the binary prints the same
    let o = dsproc_in_repo(&["ops", "--markdown"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), dsproc_job::reference::markdown().trim());
    let o = dsproc_in_repo(&["ops", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["ops"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, op_names());
}
