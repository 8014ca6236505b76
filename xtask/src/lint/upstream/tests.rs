//! Tests of the catalogue and of the download of upstream files.
use super::*;

#[test]
fn every_catalogue_entry_names_its_files_by_tag_and_hash() {
    let catalogue: Catalogue = toml::from_str(CATALOGUE).expect("the catalogue parses");
    for source in &catalogue.source {
        assert!(!source.tag().contains('{'), "{}: tag", source.label());
        for (path, sha256) in &source.files {
            assert!(
                sha256.is_empty()
                    || (sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit())),
                "{} {path}: `{sha256}` is not a sha256",
                source.label()
            );
        }
    }
}

#[test]
fn a_file_whose_hash_differs_is_refused() {
    let catalogue: Catalogue = toml::from_str(CATALOGUE).expect("the catalogue parses");
    let source = &catalogue.source[0];
    let (path, sha256) = source.files.iter().next().expect("a file");
    let wanted = Wanted {
        source,
        path,
        sha256,
        rel: PathBuf::new(),
        url: String::new(),
    };
    let problem = verified(&wanted, b"not the file").expect_err("hash differs");
    assert!(problem.starts_with("sha256 is "), "{problem}");
    assert!(problem.contains(sha256.as_str()), "{problem}");
}

#[test]
fn fetched_files_are_verified_before_they_are_cached() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(MockServer::start());
    for (at, body) in [("/good", "the file"), ("/tampered", "another file")] {
        runtime.block_on(
            Mock::given(path(at))
                .respond_with(ResponseTemplate::new(200).set_body_string(body))
                .mount(&server),
        );
    }
    let catalogue: Catalogue = toml::from_str(CATALOGUE).expect("the catalogue parses");
    let sha = format!("{:x}", Sha256::digest(b"the file"));
    let wanted: Vec<Wanted> = ["good", "tampered", "absent"]
        .into_iter()
        .map(|name| Wanted {
            source: &catalogue.source[0],
            path: name,
            sha256: &sha,
            rel: Path::new("owner/repo@tag").join(name),
            url: format!("{}/{name}", server.uri()),
        })
        .collect();
    let cache = tempfile::tempdir().expect("temp dir");
    let fetched = fetch(&wanted, cache.path()).expect("fetch runs");
    assert!(matches!(&fetched[0], Fetched::Text(t) if t == "the file"));
    assert!(matches!(&fetched[1], Fetched::WrongHash(p) if p.contains(&sha)));
    assert!(matches!(&fetched[2], Fetched::Unreachable(why) if why.contains("404")));
    let cached = |name: &str| cache.path().join("owner/repo@tag").join(name);
    assert_eq!(
        std::fs::read_to_string(cached("good")).expect("cached"),
        "the file"
    );
    assert!(
        !cached("tampered").exists(),
        "a file with the wrong hash is not cached"
    );
}
