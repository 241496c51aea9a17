//! The documentation a newcomer reads first points at files that exist and sets what its
//! commands use.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `docs/NAME.md` (or `contrib/...`) mentioned in `text`.
fn mentioned_files(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for prefix in ["docs/", "contrib/"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
                .unwrap_or(tail.len());
            let name = tail[..end].trim_end_matches('.');
            if name.len() > prefix.len() && name.contains('.') {
                found.push(name.to_string());
            }
            rest = &tail[end..];
        }
    }
    found
}

#[test]
fn files_named_in_the_readme_the_manifest_and_the_docs_exist() {
    let mut sources = vec!["README.md".to_string(), "Cargo.toml".to_string()];
    for entry in std::fs::read_dir(Path::new(ROOT).join("docs")).expect("docs/") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".md") {
            sources.push(format!("docs/{name}"));
        }
    }
    for source in sources {
        for file in mentioned_files(&read(&source)) {
            // docs/*.md link to each other relatively ("../contrib/..."), the README from the root.
            let exists = Path::new(ROOT).join(&file).exists();
            assert!(exists, "{source} mentions {file}, which does not exist");
        }
    }
}

#[test]
fn the_readme_sets_admin_token_before_its_curl_examples_use_it() {
    let readme = read("README.md");
    let used = readme
        .find("$ADMIN_TOKEN")
        .expect("the curl examples use $ADMIN_TOKEN");
    let set = readme
        .find("ADMIN_TOKEN=")
        .expect("the README says how to set ADMIN_TOKEN");
    assert!(set < used, "ADMIN_TOKEN is set after its first use");
    assert!(
        readme.contains(login_node::config::DEFAULT_ADMIN_TOKEN),
        "the README names the development default"
    );
}
