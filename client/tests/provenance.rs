//! Where the build definition came from and which ref contains the commit
//! (buildType v2): the statement records both as typed fields, and the
//! verifier's policy refuses an override, an unrecorded origin (v1), an
//! unreferenced commit and a ref outside `required_refs` unless it opts in.

mod fixtures;

use attestlog::claim::{
    canonical_json, BuildDefinition, SourceRef, Statement, BUILD_TYPE, BUILD_TYPE_V1,
};
use attestlog::nitro::sim::SimulatedNsm;
use attestlog::policy::Policy;
use attestlog::verify::BundleVerifier;
use fixtures::*;

const ARTIFACT: &[u8] = b"\x7fELF provenance";

fn repository_definition() -> BuildDefinition {
    BuildDefinition::Repository {
        path: "attestlog-build.toml".into(),
        sha256: sha256(BUILD_TOML),
    }
}

/// The v2 statement bytes rewritten as a v1 one: the v1 buildType and
/// neither the build definition's origin nor the ref.
fn as_v1(bytes: &[u8]) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    let def = &mut json["predicate"]["buildDefinition"];
    def["buildType"] = BUILD_TYPE_V1.into();
    let external = def["externalParameters"].as_object_mut().unwrap();
    external.remove("buildDefinition");
    external.remove("sourceRef");
    canonical_json(&json).unwrap()
}

struct Case {
    nsm: SimulatedNsm,
    log: TestLog,
    dir: tempfile::TempDir,
}

/// One log holding, in order: a repository definition on refs/heads/main,
/// an override, an unreferenced commit, a tag ref, and a v1 statement.
fn case() -> Case {
    let nsm = SimulatedNsm::generate(NOW_MS / 1000 - 3600).expect("nsm");
    let c = commit(7);
    let statements = [
        statement_with(
            ARTIFACT,
            &c,
            repository_definition(),
            SourceRef::Ref("refs/heads/main".into()),
        )
        .1,
        statement_with(
            ARTIFACT,
            &c,
            BuildDefinition::Override,
            SourceRef::Ref("refs/heads/main".into()),
        )
        .1,
        statement_with(
            ARTIFACT,
            &c,
            repository_definition(),
            SourceRef::Unreferenced,
        )
        .1,
        statement_with(
            ARTIFACT,
            &c,
            repository_definition(),
            SourceRef::Ref("refs/tags/v1.2".into()),
        )
        .1,
    ];
    let mut entries: Vec<Vec<u8>> = statements
        .iter()
        .map(|s| attest_entry(&nsm, s, &pcrs(10)))
        .collect();
    entries.push(attest_entry(&nsm, &as_v1(&statements[0]), &pcrs(10)));
    let log = TestLog::new(entries, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("root.pem"), nsm.root_pem()).expect("root");
    Case { nsm, log, dir }
}

impl Case {
    /// Verifies entry `index` under the fixture policy with `top` (top-level
    /// keys) in front of it.
    fn verify(&self, index: usize, top: &str) -> Result<String, String> {
        let text = format!("{top}\n{}", self.log.policy_toml("root.pem", &pcrs(10), 0));
        let policy = Policy::from_toml(&text, self.dir.path()).expect("policy");
        BundleVerifier::new(policy)
            .verify(&self.log.bundle(index, 0), &sha256(ARTIFACT))
            .map(|v| v.statement.source.git_commit)
            .map_err(|e| e.code().to_string())
    }
}

#[test]
fn v2_statement_records_typed_definition_and_ref() {
    let (s, bytes) = statement(ARTIFACT, &commit(1));
    assert_eq!(s.build_definition, Some(repository_definition()));
    assert_eq!(s.source_ref, Some(SourceRef::Ref("refs/heads/main".into())));
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains(BUILD_TYPE), "{text}");
    assert!(
        text.contains(&format!(
            "\"buildDefinition\":{{\"digest\":{{\"sha256\":\"{}\"}},\"path\":\"attestlog-build.toml\",\"source\":\"repository\"}}",
            hex::encode(sha256(BUILD_TOML))
        )),
        "{text}"
    );
    assert!(text.contains("\"sourceRef\":{\"name\":\"refs/heads/main\"}"));
    let (o, _) = statement_with(
        ARTIFACT,
        &commit(1),
        BuildDefinition::Override,
        SourceRef::Unreferenced,
    );
    assert_eq!(o.build_definition, Some(BuildDefinition::Override));
    assert_eq!(o.source_ref, Some(SourceRef::Unreferenced));
    // A v1 statement still parses, with neither recorded.
    let v1 = Statement::parse(&as_v1(&bytes)).expect("v1 parses");
    assert_eq!((v1.build_definition, v1.source_ref), (None, None));
}

#[test]
fn v2_statement_with_a_malformed_record_is_refused() {
    let (_, bytes) = statement(ARTIFACT, &commit(1));
    let text = String::from_utf8(bytes).unwrap();
    let bad = [
        ("\"source\":\"repository\"", "\"source\":\"override\""),
        ("\"source\":\"repository\"", "\"source\":\"host\""),
        ("\"path\":\"attestlog-build.toml\"", "\"path\":\"\""),
        ("refs/heads/main", "main"),
        ("refs/heads/main", "refs/pull/1/head"),
        ("refs/heads/main", "refs/heads/"),
        ("\"sourceRef\":{\"name\":", "\"sourceRef\":{\"nam\":"),
        (
            "\"sourceRef\":{\"name\":\"refs/heads/main\"}",
            "\"sourceRef\":{\"unreferenced\":false}",
        ),
    ];
    for (from, to) in bad {
        let changed = text.replacen(from, to, 1);
        assert_ne!(changed, text, "{from}");
        // Re-encode canonically so only the record is wrong.
        let json: serde_json::Value = serde_json::from_str(&changed).unwrap();
        let err = Statement::parse(&canonical_json(&json).unwrap()).unwrap_err();
        assert_eq!(err.code(), "bad_statement", "{from} -> {to}");
    }
    // Dropping either record from a v2 statement is refused, not read as v1.
    for key in ["buildDefinition", "sourceRef"] {
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["predicate"]["buildDefinition"]["externalParameters"]
            .as_object_mut()
            .unwrap()
            .remove(key);
        assert!(Statement::parse(&canonical_json(&json).unwrap()).is_err());
    }
}

#[test]
fn repository_definition_on_a_branch_verifies() {
    let c = case();
    assert_eq!(c.verify(0, ""), Ok(commit(7)));
    assert_eq!(c.verify(3, ""), Ok(commit(7)));
    drop(c.nsm);
}

#[test]
fn override_is_refused_unless_the_policy_allows_it() {
    let c = case();
    assert_eq!(c.verify(1, ""), Err("build_definition_override".into()));
    assert_eq!(c.verify(1, "allow_build_override = true"), Ok(commit(7)));
}

#[test]
fn v1_statement_is_refused_unless_the_policy_allows_it() {
    let c = case();
    assert_eq!(c.verify(4, ""), Err("build_definition_unrecorded".into()));
    assert_eq!(
        c.verify(4, "allow_build_override = true"),
        Err("build_definition_unrecorded".into())
    );
    assert_eq!(
        c.verify(4, "allow_unrecorded_build_definition = true"),
        Ok(commit(7))
    );
    // No ref is recorded, so it never satisfies required_refs.
    assert_eq!(
        c.verify(
            4,
            "allow_unrecorded_build_definition = true\nrequired_refs = [\"refs/*\"]"
        ),
        Err("ref_not_allowed".into())
    );
}

#[test]
fn unreferenced_commit_is_refused_unless_the_policy_allows_it() {
    let c = case();
    assert_eq!(c.verify(2, ""), Err("unreferenced_commit".into()));
    assert_eq!(
        c.verify(2, "allow_unreferenced_commits = true"),
        Ok(commit(7))
    );
    // The opt-in marker never satisfies required_refs.
    assert_eq!(
        c.verify(
            2,
            "allow_unreferenced_commits = true\nrequired_refs = [\"refs/*\"]"
        ),
        Err("ref_not_allowed".into())
    );
}

#[test]
fn required_refs_match_exactly_or_by_trailing_star() {
    let c = case();
    let main_or_tags = "required_refs = [\"refs/heads/main\", \"refs/tags/v*\"]";
    assert_eq!(c.verify(0, main_or_tags), Ok(commit(7)));
    assert_eq!(c.verify(3, main_or_tags), Ok(commit(7)));
    let release = "required_refs = [\"refs/heads/release\", \"refs/tags/v2*\"]";
    assert_eq!(c.verify(0, release), Err("ref_not_allowed".into()));
    assert_eq!(c.verify(3, release), Err("ref_not_allowed".into()));
    // An exact pattern is not a prefix.
    assert_eq!(
        c.verify(0, "required_refs = [\"refs/heads/mai\"]"),
        Err("ref_not_allowed".into())
    );
}

#[test]
fn policy_refuses_malformed_required_refs() {
    let c = case();
    for bad in ["main", "refs/*/main", "refs/heads/**"] {
        let text = format!(
            "required_refs = [{bad:?}]\n{}",
            c.log.policy_toml("root.pem", &pcrs(10), 0)
        );
        let err = Policy::from_toml(&text, c.dir.path()).err().expect(bad);
        assert_eq!(err.code(), "bad_policy");
    }
}
