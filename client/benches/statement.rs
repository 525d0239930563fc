//! `Statement::parse` per second on a statement of the shape the builder
//! writes (buildType v2: one subject, a repository build definition, a
//! ref), the parse every submission pays before its verification.

use std::hint::black_box;

use attestlog::claim::{
    BuildDefinition, SourceDependency, SourceRef, Statement, StatementParams, Subject,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let (_, bytes) = Statement::build(&StatementParams {
        subjects: vec![Subject {
            name: "target/release/hello".into(),
            sha256: [7; 32],
        }],
        source: SourceDependency {
            uri: "git+https://github.com/example/hello.git".into(),
            git_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        },
        source_ref: SourceRef::Ref("refs/heads/main".into()),
        build_definition: BuildDefinition::Repository {
            path: "attestlog-build.toml".into(),
            sha256: [9; 32],
        },
        builder_id: "https://attestlog.dev/enclave-builder".into(),
        builder_version: "0.1.0".into(),
        command: vec!["cargo".into(), "build".into(), "--release".into()],
        started_on: "2026-11-19T00:00:00Z".into(),
        finished_on: "2026-11-19T00:01:00Z".into(),
        internal_parameters: serde_json::json!({"network": "none", "cpus": 2, "memory_mib": 4096}),
        submodules: Vec::new(),
    })
    .expect("statement");
    let mut group = c.benchmark_group("statement");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse", |b| {
        b.iter(|| Statement::parse(black_box(&bytes)).expect("parses"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
