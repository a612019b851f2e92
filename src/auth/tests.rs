use super::*;

fn hash(token: &str) -> String {
    token_sha256(token)
}

fn file(body: &str) -> String {
    body.replace("HASH_A", &hash("token-a"))
        .replace("HASH_B", &hash("token-b"))
}

const GOOD: &str = r#"
[[principal]]
name = "crm-sync"
token_sha256 = "HASH_A"
tenants = ["acme", "globex"]
roles = ["importer", "reader"]

[[principal]]
name = "mta-eu"
client_cert_subject = "CN=mta-eu.internal"
tenants = ["*"]
roles = ["reporter"]

[[principal]]
name = "ops"
token_sha256 = "HASH_B"
client_cert_subject = "ops.internal"
tenants = ["*"]
roles = ["admin"]
"#;

#[test]
fn a_token_finds_its_principal_and_an_unknown_one_finds_none() {
    let p = Principals::parse(&file(GOOD)).unwrap();
    let crm = p.by_token("token-a").unwrap();
    assert_eq!(crm.name(), "crm-sync");
    assert!(crm.has_role(Role::Importer) && !crm.has_role(Role::Operator));
    assert!(crm.may_act_for(&Tenant::parse("globex").unwrap()));
    assert!(!crm.may_act_for(&Tenant::parse("initech").unwrap()));
    assert_eq!(p.by_token("token-b").unwrap().name(), "ops");
    assert!(p.by_token("token-c").is_none());
    assert!(p.by_token("").is_none());
    assert_eq!(
        p.by_subject(|s| s == "CN=mta-eu.internal").unwrap().name(),
        "mta-eu"
    );
    assert!(p.by_subject(|s| s == "CN=other").is_none());
}

#[test]
fn the_hash_is_the_lowercase_hex_sha256_of_the_token() {
    assert_eq!(
        token_sha256("test"),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    );
}

/// Each bad file, and the line and words its error must name.
#[test]
fn a_bad_file_is_refused_naming_the_line_and_the_fault() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"HASH_A\"\ntenants = [\"*\"]\nroles = [\"reader\"]\ncolour = \"red\"\n",
            "line 6",
            "colour",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"xyz\"\ntenants = [\"*\"]\nroles = [\"reader\"]\n",
            "line 3",
            "hex",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"abcd\"\ntenants = [\"*\"]\nroles = [\"reader\"]\n",
            "line 3",
            "64 hex",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"HASH_A\"\ntenants = [\"*\"]\nroles = [\"root\"]\n",
            "line 5",
            "unknown role \"root\"",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"HASH_A\"\ntenants = []\nroles = [\"reader\"]\n",
            "line 4",
            "tenants is empty",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"HASH_A\"\ntenants = [\"*\"]\nroles = [\"reader\"]\n\n[[principal]]\nname = \"a\"\ntoken_sha256 = \"HASH_B\"\ntenants = [\"*\"]\nroles = [\"reader\"]\n",
            "line 8",
            "defined twice",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"HASH_A\"\ntenants = [\"*\"]\nroles = [\"reader\"]\n\n[[principal]]\nname = \"b\"\ntoken_sha256 = \"HASH_A\"\ntenants = [\"*\"]\nroles = [\"reader\"]\n",
            "line 9",
            "same token",
        ),
        (
            "[[principal]]\nname = \"a\"\ntenants = [\"*\"]\nroles = [\"reader\"]\n",
            "line 1",
            "neither token_sha256 nor client_cert_subject",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"HASH_A\"\ntenants = [\"Not A Tenant\"]\nroles = [\"reader\"]\n",
            "line 4",
            "Not A Tenant",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"HASH_A\"\nroles = [\"reader\"]\n",
            "line 1",
            "tenants",
        ),
    ];
    for (body, line, words) in cases {
        let err = Principals::parse(&file(body)).map(|_| ()).unwrap_err();
        assert!(err.contains(line), "{err:?} should name {line}");
        assert!(err.contains(words), "{err:?} should say {words}");
    }
}

#[test]
fn a_failed_reload_keeps_the_principals_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, file(GOOD)).unwrap();
    let auth = Authenticator::load(&path).unwrap();
    assert!(auth.principals().by_token("token-a").is_some());

    std::fs::write(&path, "[[principal]]\nname = 1\n").unwrap();
    assert!(auth.reload().is_err());
    assert!(auth.principals().by_token("token-a").is_some(), "kept");

    std::fs::write(
        &path,
        file(&GOOD.replace("HASH_A", "HASH_B").replace(
            "name = \"ops\"\ntoken_sha256 = \"HASH_B\"\n",
            "name = \"ops\"\n",
        )),
    )
    .unwrap();
    auth.reload().unwrap();
    assert!(auth.principals().by_token("token-a").is_none(), "revoked");
    assert_eq!(
        auth.principals().by_token("token-b").unwrap().name(),
        "crm-sync"
    );
}
