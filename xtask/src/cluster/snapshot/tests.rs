//! The snapshot commit against real git repositories in temporary directories.

use std::fs;
use std::path::Path;

use xshell::{Shell, cmd};

use super::*;

/// A repository with one commit: a Deployment of ours, an Application, a README.
pub fn repository() -> (tempfile::TempDir, Shell) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sh = Shell::new().expect("a shell");
    sh.change_dir(dir.path());
    // The user's global git configuration (signing, hooks, templates) stays out.
    sh.set_var("GIT_CONFIG_GLOBAL", "/dev/null");
    sh.set_var("GIT_CONFIG_NOSYSTEM", "1");
    write(
        dir.path(),
        "infrastructure/k8s/flightdeck/processor.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: processor\n          image: flightdeck/processor  # tagged by up\n          imagePullPolicy: IfNotPresent\n",
    );
    write(
        dir.path(),
        "infrastructure/k8s/apps/airflow.yaml",
        "env:\n  - name: FLIGHTDECK_PRODUCER_IMAGE\n    value: \"flightdeck/producer\"\n  - name: OTHER\n    value: flightdeck/producer-notes\n",
    );
    write(dir.path(), "README.md", "flightdeck\n");
    write(dir.path(), ".gitignore", "target/\n");
    for line in ["git init --quiet --initial-branch=main", "git add --all"] {
        let args: Vec<&str> = line.split(' ').collect();
        let (git, rest) = args.split_first().expect("a command");
        cmd!(sh, "{git} {rest...}").quiet().run().expect(line);
    }
    commit(&sh, "first commit", 1_700_000_000);
    (dir, sh)
}

pub fn write(root: &Path, file: &str, text: &str) {
    let path = root.join(file);
    fs::create_dir_all(path.parent().expect("a parent")).expect("create directories");
    fs::write(path, text).expect("write a file");
}

fn commit(sh: &Shell, message: &str, time: i64) {
    let date = format!("{time} +0000");
    cmd!(
        sh,
        "git -c user.name=dev -c user.email=dev@example.org commit --quiet --no-gpg-sign -m {message}"
    )
    .env("GIT_AUTHOR_DATE", &date)
    .env("GIT_COMMITTER_DATE", &date)
    .quiet()
    .run()
    .expect("commit");
}

fn images() -> Vec<ImageTag> {
    vec![
        ImageTag {
            name: "flightdeck/processor".into(),
            tag: "0.1.0-0123456789ab".into(),
        },
        ImageTag {
            name: "flightdeck/producer".into(),
            tag: "0.1.0-ba9876543210".into(),
        },
    ]
}

fn show(sh: &Shell, commit: &str, file: &str) -> String {
    let spec = format!("{commit}:{file}");
    cmd!(sh, "git show {spec}")
        .quiet()
        .read()
        .expect("git show")
}

fn files_of(sh: &Shell, commit: &str) -> Vec<String> {
    cmd!(sh, "git ls-tree -r --name-only {commit}")
        .quiet()
        .read()
        .expect("git ls-tree")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_same_tree_gives_the_same_commit_and_an_edit_a_new_one() {
    let (dir, sh) = repository();
    write(dir.path(), "README.md", "flightdeck, edited\n");
    let checkout = Checkout::inspect(&sh).expect("a checkout");
    let first = create(&sh, &checkout, &images()).expect("a snapshot");
    let again =
        create(&sh, &Checkout::inspect(&sh).expect("a checkout"), &images()).expect("a snapshot");
    assert_eq!(first, again, "nothing changed: the same commit");

    write(dir.path(), "README.md", "flightdeck, edited twice\n");
    let edited =
        create(&sh, &Checkout::inspect(&sh).expect("a checkout"), &images()).expect("a snapshot");
    assert_ne!(edited.commit, first.commit, "an edit is a new revision");
    assert_eq!(
        show(&sh, &edited.commit, "README.md"),
        "flightdeck, edited twice"
    );

    let rebuilt = vec![
        ImageTag {
            tag: "0.1.0-ffffffffffff".into(),
            ..images()[0].clone()
        },
        images()[1].clone(),
    ];
    let with_new_image =
        create(&sh, &Checkout::inspect(&sh).expect("a checkout"), &rebuilt).expect("a snapshot");
    assert_ne!(
        with_new_image.commit, edited.commit,
        "a rebuilt image is a new revision"
    );
}

#[test]
fn the_user_s_index_head_and_branch_are_untouched() {
    let (dir, sh) = repository();
    write(dir.path(), "README.md", "staged\n");
    cmd!(sh, "git add README.md").quiet().run().expect("stage");
    write(dir.path(), "README.md", "staged, then edited\n");
    write(dir.path(), "notes.txt", "untracked\n");
    let before = (
        cmd!(sh, "git rev-parse HEAD").read().expect("HEAD"),
        cmd!(sh, "git diff --cached").read().expect("the index"),
        cmd!(sh, "git status --porcelain").read().expect("status"),
        cmd!(sh, "git branch --list").read().expect("branches"),
    );
    let snapshot =
        create(&sh, &Checkout::inspect(&sh).expect("a checkout"), &images()).expect("a snapshot");
    let after = (
        cmd!(sh, "git rev-parse HEAD").read().expect("HEAD"),
        cmd!(sh, "git diff --cached").read().expect("the index"),
        cmd!(sh, "git status --porcelain").read().expect("status"),
        cmd!(sh, "git branch --list").read().expect("branches"),
    );
    assert_eq!(before, after);
    assert_eq!(
        show(&sh, &snapshot.commit, "README.md"),
        "staged, then edited",
        "the working tree, not the index, is deployed"
    );
}

#[test]
fn untracked_files_are_deployed_and_ignored_and_deleted_ones_are_not() {
    let (dir, sh) = repository();
    write(dir.path(), "dags/new_dag.py", "# new\n");
    write(dir.path(), "target/build.log", "ignored\n");
    fs::remove_file(dir.path().join("README.md")).expect("delete a tracked file");
    let checkout = Checkout::inspect(&sh).expect("a checkout");
    let snapshot = create(&sh, &checkout, &images()).expect("a snapshot");
    let files = files_of(&sh, &snapshot.commit);
    assert!(files.contains(&"dags/new_dag.py".to_owned()), "{files:?}");
    assert!(!files.iter().any(|f| f.starts_with("target/")), "{files:?}");
    assert!(!files.contains(&"README.md".to_owned()), "{files:?}");
    assert_eq!(checkout.changed, ["README.md", "dags/new_dag.py"]);
    assert!(
        checkout
            .describe()
            .starts_with("the checkout: branch main at "),
        "{}",
        checkout.describe()
    );
    assert!(
        checkout.describe().ends_with(
            "plus 2 uncommitted file(s), deployed as they are: README.md, dags/new_dag.py"
        ),
        "{}",
        checkout.describe()
    );
}

#[test]
fn the_manifests_get_the_build_s_tags_only_in_the_snapshot() {
    let (dir, sh) = repository();
    let snapshot =
        create(&sh, &Checkout::inspect(&sh).expect("a checkout"), &images()).expect("a snapshot");
    assert_eq!(
        snapshot.retagged,
        [
            "infrastructure/k8s/apps/airflow.yaml",
            "infrastructure/k8s/flightdeck/processor.yaml"
        ]
    );
    let processor = show(
        &sh,
        &snapshot.commit,
        "infrastructure/k8s/flightdeck/processor.yaml",
    );
    assert!(
        processor
            .contains("          image: flightdeck/processor:0.1.0-0123456789ab  # tagged by up\n"),
        "{processor}"
    );
    let airflow = show(
        &sh,
        &snapshot.commit,
        "infrastructure/k8s/apps/airflow.yaml",
    );
    assert!(
        airflow.contains("    value: \"flightdeck/producer:0.1.0-ba9876543210\"\n"),
        "{airflow}"
    );
    assert!(
        airflow.contains("value: flightdeck/producer-notes"),
        "only exact references: {airflow}"
    );
    let committed = fs::read_to_string(
        dir.path()
            .join("infrastructure/k8s/flightdeck/processor.yaml"),
    )
    .expect("the file");
    assert!(
        committed.contains("image: flightdeck/processor  # tagged by up"),
        "the working tree keeps the untagged name"
    );
}

#[test]
fn a_reference_to_an_image_that_was_not_built_is_refused() {
    let (dir, sh) = repository();
    write(
        dir.path(),
        "infrastructure/k8s/flightdeck/typo.yaml",
        "spec:\n  containers:\n    - image: flightdeck/procesor\n",
    );
    let error = create(&sh, &Checkout::inspect(&sh).expect("a checkout"), &images())
        .expect_err("no image flightdeck/procesor was built");
    let message = format!("{error:#}");
    assert!(
        message.contains("infrastructure/k8s/flightdeck/typo.yaml:3: flightdeck/procesor"),
        "{message}"
    );
    assert!(
        message.contains("built flightdeck/processor, flightdeck/producer"),
        "{message}"
    );
}

#[test]
fn a_checkout_without_a_commit_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sh = Shell::new().expect("a shell");
    sh.change_dir(dir.path());
    sh.set_var("GIT_CONFIG_GLOBAL", "/dev/null");
    let error = Checkout::inspect(&sh).expect_err("not a repository");
    assert!(
        error.to_string().contains("is not a git checkout"),
        "{error}"
    );
    cmd!(sh, "git init --quiet").run().expect("git init");
    let error = Checkout::inspect(&sh).expect_err("no commit");
    assert!(
        error
            .to_string()
            .contains("Fix: `git add -A && git commit -m 'first commit'`"),
        "{error}"
    );
}

#[test]
fn a_detached_head_is_deployed_and_said() {
    let (_dir, sh) = repository();
    cmd!(sh, "git checkout --quiet --detach")
        .run()
        .expect("detach");
    let checkout = Checkout::inspect(&sh).expect("a checkout");
    assert_eq!(checkout.branch, None);
    assert!(
        checkout.describe().contains("a detached HEAD at"),
        "{}",
        checkout.describe()
    );
    create(&sh, &checkout, &images()).expect("deployed all the same");
}

#[test]
fn only_whole_scalars_are_retagged() {
    let images = images();
    let text = "image: flightdeck/processor\n- flightdeck/processor\nimage: 'flightdeck/processor'\nimage: flightdeck/processor:1.0\nimage: other/flightdeck/processor\nname: flightdeck/processor-x\nimage: flightdeck/processor # c\nno newline: flightdeck/producer";
    assert_eq!(
        retag(text, &images),
        "image: flightdeck/processor:0.1.0-0123456789ab\n- flightdeck/processor:0.1.0-0123456789ab\nimage: 'flightdeck/processor:0.1.0-0123456789ab'\nimage: flightdeck/processor:1.0\nimage: other/flightdeck/processor\nname: flightdeck/processor-x\nimage: flightdeck/processor:0.1.0-0123456789ab # c\nno newline: flightdeck/producer:0.1.0-ba9876543210"
    );
    assert!(is_our_untagged_image("flightdeck/processor"));
    assert!(!is_our_untagged_image("flightdeck/processor:1"));
    assert!(!is_our_untagged_image("flightdeck/"));
    assert!(!is_our_untagged_image("quay.io/flightdeck/x"));
}

fn superset() -> ImageTag {
    ImageTag {
        name: "flightdeck/superset".into(),
        tag: "6.0.0-psycopg2-2.9.10-5e7a0c9d2b41".into(),
    }
}

#[test]
fn a_helm_chart_s_image_gets_the_tag_in_its_sibling_tag_key() {
    let images = [superset()];
    // The chart renders `repository:tag`: the repository stays, the tag is set or added.
    let values = [
        "image:",
        "  repository: flightdeck/superset  # tagged by up",
        "  pullPolicy: IfNotPresent",
        "initContainers:",
        "  - name: wait-for-postgres",
        "    image: flightdeck/superset",
        "before:",
        "  tag: old",
        "  repository: flightdeck/superset",
        "other:",
        "  nested:",
        "    tag: keep",
        "  repository: \"flightdeck/superset\"",
        "",
        "  # a comment between siblings",
        "  tag: \"\"  # set by up",
        "items:",
        "  - repository: flightdeck/superset",
        "    tag: stale",
        "  - repository: flightdeck/superset",
        "  - tag: first",
        "    repository: flightdeck/superset",
        "last:",
        "  repository: flightdeck/superset",
    ]
    .join("\n");
    let tag = "\"6.0.0-psycopg2-2.9.10-5e7a0c9d2b41\"";
    assert_eq!(
        retag(&values, &images),
        [
            "image:",
            "  repository: flightdeck/superset  # tagged by up",
            &format!("  tag: {tag}"),
            "  pullPolicy: IfNotPresent",
            "initContainers:",
            "  - name: wait-for-postgres",
            "    image: flightdeck/superset:6.0.0-psycopg2-2.9.10-5e7a0c9d2b41",
            "before:",
            &format!("  tag: {tag}"),
            "  repository: flightdeck/superset",
            "other:",
            "  nested:",
            "    tag: keep",
            "  repository: \"flightdeck/superset\"",
            "",
            "  # a comment between siblings",
            &format!("  tag: {tag}  # set by up"),
            "items:",
            "  - repository: flightdeck/superset",
            &format!("    tag: {tag}"),
            "  - repository: flightdeck/superset",
            &format!("    tag: {tag}"),
            &format!("  - tag: {tag}"),
            "    repository: flightdeck/superset",
            "last:",
            "  repository: flightdeck/superset",
            &format!("  tag: {tag}"),
        ]
        .join("\n")
    );
    let parsed: serde_yaml::Value =
        serde_yaml::from_str(&retag(&values, &images)).expect("still YAML, no duplicate key");
    assert_eq!(
        parsed["image"]["tag"].as_str(),
        Some("6.0.0-psycopg2-2.9.10-5e7a0c9d2b41")
    );
}

#[test]
fn a_helm_repository_of_ours_without_a_tag_after_retagging_is_refused() {
    let (dir, sh) = repository();
    write(
        dir.path(),
        "infrastructure/k8s/apps/superset.yaml",
        "spec:\n  source:\n    helm:\n      valuesObject:\n        image:\n          repository: flightdeck/superset\n          pullPolicy: IfNotPresent\n",
    );
    // Not built: the chart would render `flightdeck/superset:<its appVersion>`.
    let error = create(&sh, &Checkout::inspect(&sh).expect("a checkout"), &images())
        .expect_err("flightdeck/superset was not built");
    assert!(
        format!("{error:#}")
            .contains("infrastructure/k8s/apps/superset.yaml:6: flightdeck/superset"),
        "{error:#}"
    );

    let mut built = images();
    built.push(superset());
    let snapshot =
        create(&sh, &Checkout::inspect(&sh).expect("a checkout"), &built).expect("built: tagged");
    assert!(
        snapshot
            .retagged
            .contains(&"infrastructure/k8s/apps/superset.yaml".to_owned())
    );
    assert_eq!(
        show(
            &sh,
            &snapshot.commit,
            "infrastructure/k8s/apps/superset.yaml"
        ),
        "spec:\n  source:\n    helm:\n      valuesObject:\n        image:\n          repository: flightdeck/superset\n          tag: \"6.0.0-psycopg2-2.9.10-5e7a0c9d2b41\"\n          pullPolicy: IfNotPresent"
    );
}

#[test]
fn the_repository_s_superset_manifests_get_the_build_s_tag_everywhere() {
    let root = crate::project_root();
    let tag = superset().tag;
    let reference = format!("flightdeck/superset:{tag}");

    let app = fs::read_to_string(root.join("infrastructure/k8s/apps/superset.yaml"))
        .expect("the Superset Application");
    assert!(!app.contains("flightdeck/superset:"), "untagged in git");
    let tagged = retag(&app, &[superset()]);
    assert_eq!(untagged_references(&tagged), []);
    let app: serde_yaml::Value = serde_yaml::from_str(&tagged).expect("YAML");
    let values = &app["spec"]["source"]["helm"]["valuesObject"];
    // The chart renders `repository:tag` for the web pods and the init Job.
    assert_eq!(
        values["image"]["repository"].as_str(),
        Some("flightdeck/superset")
    );
    assert_eq!(values["image"]["tag"].as_str(), Some(tag.as_str()));
    for init in ["supersetNode", "init"] {
        assert_eq!(
            values[init]["initContainers"][0]["image"].as_str(),
            Some(reference.as_str()),
            "{init}"
        );
    }

    let job = fs::read_to_string(root.join("infrastructure/k8s/superset/import-job.yaml"))
        .expect("the import Job");
    let tagged = retag(&job, &[superset()]);
    assert_eq!(untagged_references(&tagged), []);
    let job: serde_yaml::Value = serde_yaml::from_str(&tagged).expect("YAML");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"].as_str(),
        Some(reference.as_str())
    );
    // Without the build, both are refused rather than deployed with the chart's default.
    assert_eq!(
        untagged_references(&app_text_untouched(&root)).len(),
        3,
        "image.repository and the two init containers"
    );
}

fn app_text_untouched(root: &Path) -> String {
    fs::read_to_string(root.join("infrastructure/k8s/apps/superset.yaml")).expect("read")
}
