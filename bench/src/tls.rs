//! The TLS phase's credentials: a throw-away CA, a server certificate it signed for 127.0.0.1
//! and localhost, a random bearer token and the auth file that grants it every tenant and role.
//! Generated at every run, so nothing that expires is checked in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::TryRngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

/// The CA certificate clients trust.
pub const CA_FILE: &str = "ca.pem";
/// The server's certificate (`--tls-cert`) and key (`--tls-key`).
pub const CERT_FILE: &str = "server.pem";
pub const KEY_FILE: &str = "server.key";
/// The bearer token, one line.
pub const TOKEN_FILE: &str = "token";
/// The auth file (`--auth-file`).
pub const AUTH_FILE: &str = "auth.toml";
/// The principal's name, recorded as the actor of what it does.
const PRINCIPAL: &str = "bench";

/// Options of `tls-setup`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetupArgs {
    /// Directory to write ca.pem, server.pem, server.key, token and auth.toml into (created if
    /// missing; existing files are replaced).
    #[arg(long)]
    pub dir: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Lowercase hex SHA-256 of the token's bytes, as `token_sha256` in the auth file.
pub fn token_sha256(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The auth file granting `token` every tenant and role.
fn auth_file(token: &str) -> String {
    format!(
        "# suppressd-bench tls-setup: the TLS phase's caller (its token is in ./{TOKEN_FILE}).\n\
         [[principal]]\n\
         name = \"{PRINCIPAL}\"\n\
         token_sha256 = \"{}\"\n\
         tenants = [\"*\"]\n\
         roles = [\"admin\"]\n",
        token_sha256(token)
    )
}

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it:
/// (CA certificate, server certificate, server key), PEM.
fn certificates() -> anyhow::Result<(String, String, String)> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "suppressd-bench throw-away CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "suppressd-bench server");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok((ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem()))
}

/// A fresh token: 256 bits from the OS RNG, hex.
fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the OS RNG failed: {e}"))?;
    Ok(hex(&bytes))
}

fn write(dir: &Path, name: &str, text: &str, private: bool) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `tls-setup`: writes the files into `--dir`.
pub fn setup(args: SetupArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let (ca, cert, key) = certificates()?;
    let token = new_token()?;
    write(&args.dir, CA_FILE, &ca, false)?;
    write(&args.dir, CERT_FILE, &cert, false)?;
    write(&args.dir, KEY_FILE, &key, true)?;
    write(&args.dir, TOKEN_FILE, &format!("{token}\n"), true)?;
    write(&args.dir, AUTH_FILE, &auth_file(&token), true)?;
    eprintln!(
        "TLS credentials in {}: {CA_FILE}, {CERT_FILE}, {KEY_FILE}, {TOKEN_FILE}, {AUTH_FILE}",
        args.dir.display()
    );
    Ok(())
}

/// Reads the token written by [`setup`].
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_lowercase_hex_sha256_of_the_bytes() {
        // SHA-256("test"), as `printf test | sha256sum` prints it.
        assert_eq!(
            token_sha256("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn auth_file_names_one_admin_principal_for_every_tenant() {
        let text = auth_file("t0k3n");
        assert!(text.contains("[[principal]]\n"));
        assert!(text.contains(&format!("token_sha256 = \"{}\"\n", token_sha256("t0k3n"))));
        assert!(text.contains("tenants = [\"*\"]\n"));
        assert!(text.contains("roles = [\"admin\"]\n"));
        assert!(
            !text.contains("t0k3n\""),
            "the token itself is not in the file"
        );
    }

    /// The echo over TLS, end to end: a client that trusts the CA and sends the token is
    /// answered (unary and the lines stream); a client that does not trust the CA, and a
    /// plaintext client, are not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_echo_answers_over_tls_a_client_that_trusts_the_ca() {
        use crate::echo::{self, proto};
        use crate::svc;

        let dir = std::env::temp_dir().join(format!("suppressd-bench-tls-{}", std::process::id()));
        setup(SetupArgs { dir: dir.clone() }).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        let server = tokio::spawn(async move {
            echo::serve(listen, Some((cert.as_path(), key.as_path()))).await
        });

        let ca = std::fs::read(dir.join(CA_FILE)).unwrap();
        let tls = svc::tls_config(&ca);
        let bearer = svc::Bearer::new(&read_token(&dir.join(TOKEN_FILE)).unwrap()).unwrap();
        for host in ["127.0.0.1", "localhost"] {
            let addr = format!("https://{host}:{port}");
            let ch = svc::channel_with(&addr, Some(&tls)).await.unwrap();
            let mut c = echo::authed_client(&ch, &bearer);
            let r = c
                .echo(proto::EchoRequest {
                    tenant: "bench".into(),
                    address: "a@example.com".into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.address, "a@example.com");
            let requests = vec![
                proto::EchoLinesRequest {
                    tenant: "bench".into(),
                    address_lines: "a@example.com\nb@example.com\n".into(),
                };
                3
            ];
            let (lines, _) = echo::echo_lines_with(echo::sized(c), requests)
                .await
                .unwrap();
            assert_eq!(lines, 6);
        }

        // Another CA's client: the handshake fails.
        let (other_ca, _, _) = certificates().unwrap();
        let other = svc::tls_config(other_ca.as_bytes());
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(other)
            .unwrap();
        let refused = match endpoint.connect().await {
            Err(_) => true,
            Ok(ch) => echo::client(&ch)
                .echo(proto::EchoRequest::default())
                .await
                .is_err(),
        };
        assert!(refused, "a client that does not trust the CA was answered");

        // A plaintext client: no answer.
        let plain = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .timeout(std::time::Duration::from_secs(2));
        let refused = match plain.connect().await {
            Err(_) => true,
            Ok(ch) => echo::client(&ch)
                .echo(proto::EchoRequest::default())
                .await
                .is_err(),
        };
        assert!(refused, "a plaintext client was answered by the TLS echo");

        server.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_are_256_bits_of_hex_and_differ() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
